"""`mlci data validate|profile|diff|infer`: the validation half of the `data` command group."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import add_command, command_group

FORMATS = ("text", "json")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data = command_group(sub, "data", "version and validate datasets")

    p = add_command(
        data,
        "validate",
        "validate.commands:validate",
        "check datasets against their schema in mlci.yaml and their previous version (exit 1 on failure)",
        "mlci data validate data/customers.csv --rev HEAD",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="dataset paths or names (default: every declared dataset)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--rev", help="validate the version a commit holds (default: the working tree)")
    where.add_argument("--staged", action="store_true", help="validate what is staged (what pre-commit checks)")
    p.add_argument(
        "--base", metavar="REV", help="the previous version to compare with (default HEAD, or REV^ with --rev)"
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    p.add_argument("--no-cache", action="store_true", help="ignore cached results and read the data again")
    p.add_argument("--no-record", action="store_true", help="do not record validation/profile events in the ledger")
    p.add_argument("-v", "--verbose", action="store_true", help="list passing checks too")

    p = add_command(
        data,
        "profile",
        "validate.commands:profile",
        "profile a dataset version: rows, nulls, min, max, mean, std, distinct, histogram",
        "mlci data profile data/customers.csv",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--rev", help="the version a commit holds (default: the working tree)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")

    p = add_command(
        data,
        "diff",
        "validate.commands:diff",
        "compare two versions of a dataset: rows, schema, drift per column (from their profiles)",
        "mlci data diff data/customers.csv HEAD~1 HEAD",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("a", nargs="?", default="HEAD", help="the old version (default HEAD)")
    p.add_argument("b", nargs="?", default=None, help="the new version (default: the working tree)")
    p.add_argument("--method", choices=("psi", "ks", "chi2"), default="psi", help="drift statistic (default psi)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")

    p = add_command(
        data,
        "infer",
        "validate.commands:infer",
        "print a starter `datasets:` schema inferred from the data (strings quoted)",
        "mlci data infer data/customers.csv --name customers >> schema.yaml",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--name", help="the dataset's name (default: the file's stem)")
    p.add_argument("--write", action="store_true", help="add it to mlci.yaml (refused if the name exists)")
