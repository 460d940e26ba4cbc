"""`mlci import dvc|mlflow`: bring a DVC project's history or an MLflow store into the ledger."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mlci_tui.cli.console import notice, say
from mlci_tui.cli.options import SubParsers, add_command, command_group
from mlci_tui.gitio import Repo

if TYPE_CHECKING:
    from mlci_tui.importers.common import ImportReport

MAX_WARNINGS_SHOWN = 20


def import_dvc(args: argparse.Namespace) -> int:
    """import a DVC project's git history (one run per commit with params or metrics), read from git objects

    Example: mlci import dvc --all-branches --exps
    """
    from mlci_tui.importers.dvc import import_history

    repo = Repo.find()
    if args.all_branches:
        rev_args = ["--branches"]
    elif args.range_spec:
        rev_args = [args.range_spec]
    else:
        rev_args = [args.rev or "HEAD"]
    if rev_args == ["HEAD"] and repo.rev_parse("HEAD") is None:
        rev_args = []  # an empty repository: nothing but experiments, if any
    report = import_history(repo, rev_args, experiments=args.exps, dry_run=args.dry_run)
    _print(report, "commit", args.dry_run)
    return 0


def import_mlflow(args: argparse.Namespace) -> int:
    """import an MLflow store (an mlruns/ folder or a SQLite mlflow.db, opened read-only)

    Example: mlci import mlflow mlruns/
    """
    from collections import Counter

    from mlci_tui.importers.mlflow import import_store

    report = import_store(Repo.find(), args.path, dry_run=args.dry_run)
    _print(report, "run", args.dry_run)
    skipped = report.not_imported
    runs_skipped = sum(1 for s in skipped if s.kind == "run")
    verb = "to import" if args.dry_run else "imported"
    say(
        f"MLflow {report.store_kind} store: {report.store_runs} run(s): {report.runs} {verb}, "
        f"{report.present_runs} already in the ledger, {runs_skipped} skipped"
    )
    reasons: dict[str, Counter[str]] = {}
    for thing in skipped:
        reasons.setdefault(thing.kind, Counter())[thing.reason] += 1
    if reasons:
        say(
            "skipped "
            + " and ".join(
                f"{counts.total()} {kind}(s) ({', '.join(f'{n} {why}' for why, n in sorted(counts.items()))})"
                for kind, counts in reasons.items()
            )
        )
    for thing in skipped[:MAX_WARNINGS_SHOWN]:
        say(f"  skipped {thing.label}: {thing.reason}")
    if len(skipped) > MAX_WARNINGS_SHOWN:
        say(f"  ... and {len(skipped) - MAX_WARNINGS_SHOWN} more skipped")
    return 0


def _print(report: ImportReport, unit: str, dry_run: bool) -> None:
    """The first warnings (a long history can have thousands), then what was imported and what was not."""
    for message in report.warnings[:MAX_WARNINGS_SHOWN]:
        notice(f"warning: {message}")
    if len(report.warnings) > MAX_WARNINGS_SHOWN:
        notice(f"... and {len(report.warnings) - MAX_WARNINGS_SHOWN} more warning(s)")
    verb = "would import" if dry_run else "imported"
    others = len(report.added) - report.runs
    extra = f" and {others} promotion(s)" if others else ""
    say(f"{verb} {report.runs} run(s){extra} in {report.ledger_commits} ledger commit(s)")
    if report.present:
        say(f"{report.present} already in the ledger (nothing added for them)")
    if report.skipped:
        say(f"{report.skipped} {unit}(s) with no params or metrics: no run")


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    group = command_group(sub, "import", "bring a DVC project's history or an MLflow store into the ledger")
    p = add_command(group, "dvc", import_dvc)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--rev", metavar="REV", help="history reachable from REV, or a range A..B (default HEAD)")
    where.add_argument("--range", dest="range_spec", metavar="A..B", help="only the commits of this range")
    where.add_argument("--all-branches", action="store_true", help="every local branch's history")
    p.add_argument("--exps", action="store_true", help="also DVC experiments (refs/exps/*) as `experiment` runs")
    p.add_argument("--dry-run", action="store_true", help="read and report, write nothing")

    p = add_command(group, "mlflow", import_mlflow)
    p.add_argument("path", help="the store: an mlruns/ folder, a .db file, or sqlite:///path/to/mlflow.db")
    p.add_argument("--dry-run", action="store_true", help="read and report, write nothing")
