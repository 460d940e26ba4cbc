"""Handlers of `mlci import dvc` and `mlci import mlflow`: thin wrappers over the importers."""

from __future__ import annotations

import argparse
import sys

from mlci_tui.gitio import Repo
from mlci_tui.importers.common import ImportReport
from mlci_tui.sanitize import display

MAX_WARNINGS_SHOWN = 20


def import_dvc(args: argparse.Namespace) -> int:
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
    from mlci_tui.importers.mlflow import import_store

    repo = Repo.find()
    report = import_store(repo, args.path, dry_run=args.dry_run)
    _print(report, "run", args.dry_run)
    return 0


def _print(report: ImportReport, unit: str, dry_run: bool) -> None:
    for message in report.warnings[:MAX_WARNINGS_SHOWN]:
        print(f"mlci: warning: {display(message)}", file=sys.stderr)
    if len(report.warnings) > MAX_WARNINGS_SHOWN:
        print(f"mlci: ... and {len(report.warnings) - MAX_WARNINGS_SHOWN} more warning(s)", file=sys.stderr)
    verb = "would import" if dry_run else "imported"
    others = len(report.added) - report.runs
    extra = f" and {others} promotion(s)" if others else ""
    print(f"{verb} {report.runs} run(s){extra} in {report.ledger_commits} ledger commit(s)")
    if report.present:
        print(f"{report.present} already in the ledger (nothing added for them)")
    if report.skipped:
        print(f"{report.skipped} {unit}(s) with no params or metrics: no run")
