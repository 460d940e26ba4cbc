"""Commands that bring history in and take it out: `mlci import dvc|mlflow`, `mlci export`."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import add_command, command_group


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = command_group(sub, "import", "bring a DVC project's history or an MLflow store into the ledger")
    p = add_command(
        group,
        "dvc",
        "importers.commands:import_dvc",
        "import a DVC project's git history (one run per commit with params or metrics), read from git objects",
        "mlci import dvc --all-branches --exps",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--rev", metavar="REV", help="history reachable from REV, or a range A..B (default HEAD)")
    where.add_argument("--range", dest="range_spec", metavar="A..B", help="only the commits of this range")
    where.add_argument("--all-branches", action="store_true", help="every local branch's history")
    p.add_argument("--exps", action="store_true", help="also DVC experiments (refs/exps/*) as `experiment` runs")
    p.add_argument("--dry-run", action="store_true", help="read and report, write nothing")

    p = add_command(
        group,
        "mlflow",
        "importers.commands:import_mlflow",
        "import an MLflow store (an mlruns/ folder or a SQLite mlflow.db, opened read-only)",
        "mlci import mlflow mlruns/",
    )
    p.add_argument("path", help="the store: an mlruns/ folder, a .db file, or sqlite:///path/to/mlflow.db")
    p.add_argument("--dry-run", action="store_true", help="read and report, write nothing")

    p = add_command(
        sub,
        "export",
        "export:main",
        "export runs, params, metrics and steps to Parquet, CSV or JSON (chosen by the file's extension)",
        "mlci export runs.parquet",
    )
    p.add_argument(
        "file",
        help="FILE.parquet or FILE.json (one row per run, params/metrics/steps nested), "
        "or FILE.csv (flat: FILE.runs.csv, FILE.params.csv, FILE.metrics.csv, FILE.steps.csv)",
    )
    p.add_argument(
        "--table", choices=("runs", "params", "metrics", "steps"), help="write only this flat table, to FILE itself"
    )
    p.add_argument("--where", help="only runs matching this SQL predicate over the runs view")
    p.add_argument("--force", action="store_true", help="replace existing files")
