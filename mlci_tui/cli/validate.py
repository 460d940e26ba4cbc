"""`mlci data validate|profile|diff|infer`: the validation half of the `data` command group.

`cli.data` owns the group and calls `add_data_commands` with it. The handlers parse
arguments, call the core in `mlci_tui.validate` (imported when a handler runs: it is what
reads data) and print. `validate` is a typed command function that its handler and the CI
step (ci/steps.py) both call, so its output is written once.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlci_tui.cli.console import say
from mlci_tui.cli.options import SubParsers, add_command
from mlci_tui.errors import EXIT_FAILED, EXIT_OK
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

FORMATS = ("text", "json")


def add_data_commands(data: SubParsers[argparse.ArgumentParser]) -> None:
    """Declare validate, profile, diff and infer in the `data` group `data`."""
    p = add_command(data, "validate", validate_handler)
    p.add_argument("paths", nargs="*", metavar="PATH", help="dataset paths or names (default: every declared dataset)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--rev", help="validate the version a commit holds (default: the working tree)")
    where.add_argument("--staged", action="store_true", help="validate what is staged (what pre-commit checks)")
    p.add_argument(
        "--base", metavar="REV", help="the previous version to compare with (default HEAD, or REV^ with --rev)"
    )
    _format_options(p)
    p.add_argument("--no-cache", action="store_true", help="ignore cached results and read the data again")
    p.add_argument("--no-record", action="store_true", help="do not record validation/profile events in the ledger")
    p.add_argument("-v", "--verbose", action="store_true", help="list passing checks too")

    p = add_command(data, "profile", profile)
    p.add_argument("path", metavar="PATH")
    p.add_argument("--rev", help="the version a commit holds (default: the working tree)")
    _format_options(p)

    p = add_command(data, "diff", diff)
    p.add_argument("path", metavar="PATH")
    p.add_argument("a", nargs="?", default="HEAD", help="the old version (default HEAD)")
    p.add_argument("b", nargs="?", default=None, help="the new version (default: the working tree)")
    p.add_argument("--method", choices=("psi", "ks", "chi2"), default="psi", help="drift statistic (default psi)")
    _format_options(p)

    p = add_command(data, "infer", infer)
    p.add_argument("path", metavar="PATH")
    p.add_argument("--name", help="the dataset's name (default: the file's stem)")
    p.add_argument("--write", action="store_true", help="add it to mlci.yaml (refused if the name exists)")
    p.add_argument("--replace", action="store_true", help="with --write: replace an existing entry of that name")


def _format_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return display(str(value))[:24]


def validate_handler(args: argparse.Namespace) -> int:
    """check datasets against their schema in mlci.yaml and their previous version (exit 1 on failure)

    Example: mlci data validate data/customers.csv --rev HEAD
    """
    return validate(
        Repo.find(),
        args.paths,
        rev=args.rev,
        staged=args.staged,
        base=args.base,
        record=not args.no_record,
        use_cache=not args.no_cache,
        fmt=args.format,
        verbose=args.verbose,
    )


def validate(
    repo: Repo,
    paths: list[str] | None = None,
    *,
    rev: str | None = None,
    staged: bool = False,
    base: str | None = None,
    record: bool = True,
    use_cache: bool = True,
    fmt: str = "text",
    verbose: bool = False,
) -> int:
    """`mlci data validate`: the datasets `paths` name (None: every declared one) at the working tree,
    `rev` or the index (`staged`); EXIT_FAILED when any check fails."""
    from mlci_tui.validate import source
    from mlci_tui.validate.report import print_json, print_text
    from mlci_tui.validate.run import validate_datasets

    where = source.INDEX if staged else source.version_at(repo, rev)
    results = validate_datasets(repo, paths or [], where, base=base, record=record, use_cache=use_cache)
    if fmt == "json":
        print_json(results, sys.stdout)
    else:
        print_text(results, sys.stdout, verbose=verbose)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK


def profile(args: argparse.Namespace) -> int:
    """profile a dataset version: rows, nulls, min, max, mean, std, distinct, histogram

    Example: mlci data profile data/customers.csv
    """
    from mlci_tui.output import write
    from mlci_tui.validate import source
    from mlci_tui.validate.run import profile_at

    repo = Repo.find()
    spec, content, prof = profile_at(repo, args.path, source.version_at(repo, args.rev))
    if args.format == "json":
        doc = {"dataset": spec.name, "path": spec.path, "content_hash": content.content_hash, **prof}
        say(json.dumps(doc, indent=2, ensure_ascii=True))
        return EXIT_OK
    rev = content.rev if content.rev in (source.WORKTREE, source.INDEX) else content.rev[:12]
    say(
        f"{display(spec.path)} @ {display(rev)}, {display(content.content_hash[:24])}: "
        f"{prof['rows']:,} rows, {prof['columns_total']} column(s)"
    )
    names = ["column", "type", "nulls", "min", "max", "mean", "std", "distinct~"]
    rows = [
        [
            name,
            c.get("type"),
            c.get("nulls"),
            _cell(c.get("min")),
            _cell(c.get("max")),
            _cell(c.get("mean")),
            _cell(c.get("std")),
            c.get("distinct"),
        ]
        for name, c in prof["columns"].items()
    ]
    write([dict(zip(names, r)) for r in rows], names, "table", sys.stdout)
    if prof["columns_total"] > len(prof["columns"]):
        say(f"(profiled the first {len(prof['columns'])} of {prof['columns_total']} columns)")
    return EXIT_OK


def diff(args: argparse.Namespace) -> int:
    """compare two versions of a dataset: rows, schema, drift per column (from their profiles)

    Example: mlci data diff data/customers.csv HEAD~1 HEAD
    """
    from mlci_tui.output import write
    from mlci_tui.validate import source
    from mlci_tui.validate.drift import diff_profiles
    from mlci_tui.validate.run import profile_at

    repo = Repo.find()
    where_a = source.version_at(repo, args.a)
    where_b = source.version_at(repo, args.b)
    spec, ca, pa = profile_at(repo, args.path, where_a)
    _spec, cb, pb = profile_at(repo, args.path, where_b)
    compared = diff_profiles(pa, pb, args.method)
    if args.format == "json":
        doc = {
            "path": spec.path,
            "a": {"rev": args.a, "content_hash": ca.content_hash, "rows": pa["rows"]},
            "b": {"rev": args.b or source.WORKTREE, "content_hash": cb.content_hash, "rows": pb["rows"]},
            "schema": compared.schema(),
            "drift": compared.drift,
            "threshold": compared.threshold,
        }
        say(json.dumps(doc, indent=2, ensure_ascii=True, default=str))
        return EXIT_OK
    say(
        f"{display(spec.path)}: {display(args.a)} ({display(ca.content_hash[:20])}) -> "
        f"{display(args.b or source.WORKTREE)} ({display(cb.content_hash[:20])})"
    )
    change = (pb["rows"] - pa["rows"]) / pa["rows"] * 100 if pa["rows"] else 0.0
    say(f"rows: {pa['rows']:,} -> {pb['rows']:,} ({change:+.1f}%)")
    for kind, columns in (("added", compared.added), ("removed", compared.removed)):
        if columns:
            say(f"columns {kind}: {', '.join(display(c) for c in columns)}")
    for c, (t1, t2) in compared.retyped.items():
        say(f"column {display(c)} retyped: {t1} -> {t2}")
    names = ["column", "nulls", "mean", "method", "statistic", f"> {compared.threshold}"]
    rows = [
        [
            d["column"],
            f"{_cell(d['nulls'][0])} -> {_cell(d['nulls'][1])}",
            f"{_cell(d['mean'][0])} -> {_cell(d['mean'][1])}",
            d["method"] or "",
            "" if d["statistic"] is None else f"{d['statistic']:.4f}",
            "DRIFT" if d["drifted"] else "",
        ]
        for d in compared.drift
    ]
    write([dict(zip(names, r)) for r in rows], names, "table", sys.stdout)
    return EXIT_OK


def infer(args: argparse.Namespace) -> int:
    """print a starter `datasets:` schema inferred from the data (strings quoted)

    Example: mlci data infer data/customers.csv --name customers >> schema.yaml
    """
    from mlci_tui.validate.infer import infer_schema, write_into_config
    from mlci_tui.validate.run import dataset_at

    repo = Repo.find()
    datasets, spec = dataset_at(repo, args.path, text_as_csv=True)
    name = args.name or spec.name
    text = infer_schema(repo, spec, name, sniff=not (datasets or {}).get(spec.name, {}).get("csv"))
    if args.write:
        write_into_config(repo.root, name, text, replace=args.replace)
        say(f"{'wrote' if args.replace else 'added'} dataset {display(name)} to mlci.yaml")
    else:
        sys.stdout.write(text)
    return EXIT_OK
