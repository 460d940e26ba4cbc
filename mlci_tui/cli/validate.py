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
from mlci_tui.errors import EXIT_FAILED, EXIT_OK, InputError
from mlci_tui.gitio import Repo
from mlci_tui.output import json_value
from mlci_tui.sanitize import display, markdown_cell

FORMATS = ("text", "json")
DIFF_FORMATS = ("text", "table", "json", "csv", "md")


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
    p.add_argument("path", metavar="DATASET", help="a dataset's path or its name in mlci.yaml")
    p.add_argument(
        "a", nargs="?", default="HEAD", metavar="BASE", help="the old version: a rev, stage or run id (default HEAD)"
    )
    p.add_argument("b", nargs="?", default=None, metavar="HEAD", help="the new version (default: the working tree)")
    p.add_argument("--key", help="match rows on these columns (comma-separated; default the schema's primary_key)")
    p.add_argument(
        "--abs", type=float, default=None, metavar="A", help="numeric tolerance: a change when |new-old| > A + R*|old|"
    )
    p.add_argument("--rel", type=float, default=None, metavar="R", help="relative part of that tolerance")
    p.add_argument(
        "--rows", type=int, default=3, metavar="N", help="examples per column and of added/removed rows (default 3)"
    )
    p.add_argument(
        "--output", "-o", metavar="FILE.parquet", help="write the full row-level diff (key, change, column, old, new)"
    )
    p.add_argument("--method", choices=("psi", "ks", "chi2"), default="psi", help="drift statistic (default psi)")
    p.add_argument("--no-drift", action="store_true", help="skip the drift figures (they profile both versions)")
    p.add_argument("--format", choices=DIFF_FORMATS, default="text", help="output format (default text)")
    for name in ("json", "csv", "md"):
        p.add_argument(f"--{name}", dest="format", action="store_const", const=name, help=f"same as --format {name}")

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
    """compare two versions of a dataset: rows added, removed and changed (by key), per-column changes with examples, schema changes, drift

    Example: mlci data diff customers HEAD~1 --key customer_id --rows 5
    """
    from pathlib import Path

    from mlci_tui.validate import rowdiff
    from mlci_tui.validate.run import dataset_at

    repo = Repo.find()
    if args.rows < 0:
        raise InputError(f"--rows {args.rows}: must be 0 or more")
    if any(v is not None and not v >= 0 for v in (args.abs, args.rel)):
        raise InputError("--abs and --rel must be numbers of 0 or more")
    output = Path(args.output) if args.output else None
    if output is not None and (output.suffix.lower() != ".parquet" or output.is_dir()):
        raise InputError(f"--output {args.output}: write the row-level diff to a FILE.parquet")
    _datasets, spec = dataset_at(repo, args.path)
    key = [k.strip() for k in args.key.split(",") if k.strip()] if args.key is not None else None
    tolerance = None
    if args.abs is not None or args.rel is not None:
        tolerance = rowdiff.Tolerance(args.abs or 0.0, args.rel or 0.0)
    base_label, head_label = args.a, args.b or "working tree"
    where_a, where_b = rowdiff.version_of(repo, args.a), rowdiff.version_of(repo, args.b)
    result = rowdiff.diff_versions(
        repo,
        spec,
        where_a,
        where_b,
        key=key,
        tolerance=tolerance,
        examples=args.rows,
        output=output,
        labels=(f"base version ({base_label})", f"head version ({head_label})"),
        fetch=True,
    )
    drift = None if args.no_drift else _drift(repo, spec.path, where_a, where_b, args.method)
    _print_diff(spec.path, (base_label, head_label), result, drift, args.format)
    return EXIT_OK


def _drift(repo: Repo, path: str, where_a: str, where_b: str, method: str) -> Any:
    """The profiles' comparison (`drift.diff_profiles`): drift per shared column."""
    from mlci_tui.validate.drift import diff_profiles
    from mlci_tui.validate.run import profile_at

    _spec, _ca, pa = profile_at(repo, path, where_a)
    _spec, _cb, pb = profile_at(repo, path, where_b)
    return diff_profiles(pa, pb, method)


def _print_diff(path: str, labels: tuple[str, str], d: Any, drift: Any, fmt: str) -> None:
    from mlci_tui.output import write
    from mlci_tui.validate import rowdiff

    if fmt == "json":
        doc = {
            "path": path,
            "a": {"rev": labels[0], "content_hash": d.old_hash, "rows": d.rows_old},
            "b": {"rev": labels[1], "content_hash": d.new_hash, "rows": d.rows_new},
            **d.to_dict(),
            "drift": None if drift is None else drift.drift,
            "threshold": None if drift is None else drift.threshold,
        }
        say(json.dumps(json_value(doc), indent=2, ensure_ascii=True, default=str))
        return
    if fmt == "csv":  # the sampled row-level diff; --output FILE.parquet holds all of it
        names = [*d.key, "change", "column", "old", "new"]
        rows = [
            {**e["key"], "change": "changed", "column": c.column, "old": e["old"], "new": e["new"]}
            for c in d.columns
            for e in c.examples
        ]
        rows += [
            {**k, "change": kind}
            for kind, keys in (("added", d.added_examples), ("removed", d.removed_examples))
            for k in keys
            if d.key
        ]
        write(rows, names, "csv", sys.stdout)
        return
    if fmt == "md":
        from mlci_tui.report.markdown import data_diff_lines

        sys.stdout.write(
            "\n".join(
                [
                    f"#### {markdown_cell(path)}: {markdown_cell(labels[0])} → {markdown_cell(labels[1])}",
                    "",
                    *data_diff_lines(d),
                ]
            )
            + "\n"
        )
        return
    say(
        f"{display(path)}: {display(labels[0])} ({display(d.old_hash[:20])}) -> {display(labels[1])} ({display(d.new_hash[:20])})"
    )
    say(f"key: {', '.join(display(k) for k in d.key)}" if d.key else f"note: {d.notes[0]}")
    say(rowdiff.counts_text(d))
    for line in rowdiff.schema_texts(d.schema):
        say(line)
    if d.columns:
        names = ["column", "changed", "examples"]
        rows = [
            {
                "column": rowdiff.column_name(c),
                "changed": f"{c.changed:,}",
                "examples": "; ".join(rowdiff.example_text(e) for e in c.examples),
            }
            for c in d.columns
        ]
        write(rows, names, "table", sys.stdout, truncate=False)
    for kind, shown, count in (("added", d.added_examples, d.added), ("removed", d.removed_examples, d.removed)):
        if shown:
            say(f"{kind} (first {len(shown)} of {count:,}): " + "; ".join(rowdiff.key_text(k) for k in shown))
    if drift is None or not drift.drift:
        return
    say("")
    names = ["column", "nulls", "mean", "method", "statistic", f"> {drift.threshold}"]
    cells = [
        [
            x["column"],
            f"{_cell(x['nulls'][0])} -> {_cell(x['nulls'][1])}",
            f"{_cell(x['mean'][0])} -> {_cell(x['mean'][1])}",
            x["method"] or "",
            "" if x["statistic"] is None else f"{x['statistic']:.4f}",
            "DRIFT" if x["drifted"] else "",
        ]
        for x in drift.drift
    ]
    write([dict(zip(names, r)) for r in cells], names, "table", sys.stdout)


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
