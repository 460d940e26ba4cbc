"""Handlers of `mlci data validate|profile|diff|infer` (registered by cli_validate.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mlci_tui.errors import EXIT_FAILED, EXIT_OK, InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display
from mlci_tui.validate import source
from mlci_tui.validate.spec import DatasetSpec, build, check_path, format_of


def _datasets(repo: Repo) -> dict[str, Any] | None:
    from mlci_tui import config

    return config.load(repo.root).data.get("datasets")


def _where(repo: Repo, rev: str | None) -> str:
    if rev is None:
        return source.WORKTREE
    commit = repo.commit_of(rev)
    if commit is None:
        raise InputError(f"--rev {rev}: not a commit in this repository")
    return commit


def validate(args: argparse.Namespace) -> int:
    from mlci_tui.validate.report import print_json, print_text
    from mlci_tui.validate.run import Validator

    repo = Repo.find()
    where = source.INDEX if args.staged else _where(repo, args.rev)
    datasets = _datasets(repo)
    if not datasets:
        raise InputError(
            "mlci.yaml declares no datasets (add a `datasets:` section; `mlci data infer PATH` starts one)"
        )
    v = Validator(repo, datasets, where, base=args.base, record=not args.no_record, use_cache=not args.no_cache)
    results = v.validate_all(v.select(args.paths))
    if args.format == "json":
        print_json(results, sys.stdout)
    else:
        print_text(results, sys.stdout, verbose=args.verbose)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK


def _adhoc(repo: Repo, user_path: str) -> tuple[dict[str, Any] | None, DatasetSpec]:
    """The declared dataset at PATH, or a bare spec for an undeclared file."""
    from mlci_tui.validate.run import _repo_rel
    from mlci_tui.validate.spec import load_specs

    rel = _repo_rel(repo, user_path).removesuffix(source.POINTER_SUFFIX)
    datasets = _datasets(repo)
    for spec in load_specs(datasets).values():
        if spec.path == rel or spec.name == user_path:
            return datasets, spec
    check_path(rel, user_path)
    format_of(rel, None, user_path)
    name = Path(rel).stem
    return {**(datasets or {}), name: {"path": rel}}, build(name, {"path": rel})


def _profile_at(repo: Repo, user_path: str, where: str) -> tuple[DatasetSpec, source.Content, dict[str, Any]]:
    from mlci_tui.validate import engine
    from mlci_tui.validate.run import Validator

    datasets, spec = _adhoc(repo, user_path)
    v = Validator(repo, datasets, where)
    try:
        content = source.resolve(repo, spec.path, where, v.scratch)
        profile = v.profile_of(content.content_hash)
        columns = (profile or {}).get("columns", {})
        wanted = [n for n, c in columns.items() if "mean" in c or n in v._categorical(spec)]
        if profile is None or not all(columns[n].get("histogram") for n in wanted):
            try:
                profile = v._profile_only(spec, content, full=True)
            except engine.DataError as exc:
                raise InputError(f"cannot read {spec.path} as {spec.format}: {exc}", exit_code=EXIT_FAILED) from None
        v.flush()
    finally:
        v.close()
    return spec, content, profile


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return display(str(value))[:24]


def profile(args: argparse.Namespace) -> int:
    from mlci_tui.output import write

    repo = Repo.find()
    spec, content, prof = _profile_at(repo, args.path, _where(repo, args.rev))
    if args.format == "json":
        print(
            json.dumps(
                {"dataset": spec.name, "path": spec.path, "content_hash": content.content_hash, **prof},
                indent=2,
                ensure_ascii=True,
            )
        )
        return EXIT_OK
    print(
        f"{display(spec.path)} @ {display(content.rev if content.rev in (source.WORKTREE, source.INDEX) else content.rev[:12])}, "
        f"{display(content.content_hash[:24])}: {prof['rows']:,} rows, {prof['columns_total']} column(s)"
    )
    rows = []
    for name, c in prof["columns"].items():
        rows.append(
            [
                name,
                c.get("type"),
                c.get("nulls"),
                _fmt(c.get("min")),
                _fmt(c.get("max")),
                _fmt(c.get("mean")),
                _fmt(c.get("std")),
                c.get("distinct"),
            ]
        )
    names = ["column", "type", "nulls", "min", "max", "mean", "std", "distinct~"]
    write([dict(zip(names, r)) for r in rows], names, "table", sys.stdout)
    if prof["columns_total"] > len(prof["columns"]):
        print(f"(profiled the first {len(prof['columns'])} of {prof['columns_total']} columns)")
    return EXIT_OK


def diff(args: argparse.Namespace) -> int:
    from mlci_tui.output import write
    from mlci_tui.validate.drift import DEFAULT_THRESHOLD, column_drift

    repo = Repo.find()
    where_a = _where(repo, args.a)
    where_b = _where(repo, args.b)
    spec, ca, pa = _profile_at(repo, args.path, where_a)
    _spec, cb, pb = _profile_at(repo, args.path, where_b)
    cols_a, cols_b = pa["columns"], pb["columns"]
    changes = {
        "added": [c for c in cols_b if c not in cols_a],
        "removed": [c for c in cols_a if c not in cols_b],
        "retyped": {
            c: [cols_a[c]["type"], cols_b[c]["type"]]
            for c in cols_b
            if c in cols_a and cols_a[c]["type"] != cols_b[c]["type"]
        },
    }
    threshold = DEFAULT_THRESHOLD[args.method]
    drift: list[dict[str, Any]] = []
    for name in cols_b:
        if name not in cols_a:
            continue
        stat = column_drift({**cols_a[name], "rows": pa["rows"]}, {**cols_b[name], "rows": pb["rows"]}, args.method)
        a, b = cols_a[name], cols_b[name]
        drift.append(
            {
                "column": name,
                "nulls": [a.get("nulls"), b.get("nulls")],
                "mean": [a.get("mean"), b.get("mean")],
                "method": stat[0] if stat else None,
                "statistic": round(stat[1], 6) if stat else None,
                "drifted": bool(stat and stat[1] > threshold),
            }
        )
    doc = {
        "path": spec.path,
        "a": {"rev": args.a, "content_hash": ca.content_hash, "rows": pa["rows"]},
        "b": {"rev": args.b or source.WORKTREE, "content_hash": cb.content_hash, "rows": pb["rows"]},
        "schema": changes,
        "drift": drift,
        "threshold": threshold,
    }
    if args.format == "json":
        print(json.dumps(doc, indent=2, ensure_ascii=True, default=str))
        return EXIT_OK
    print(
        f"{display(spec.path)}: {display(args.a)} ({display(ca.content_hash[:20])}) -> {display(args.b or source.WORKTREE)} ({display(cb.content_hash[:20])})"
    )
    change = (pb["rows"] - pa["rows"]) / pa["rows"] * 100 if pa["rows"] else 0.0
    print(f"rows: {pa['rows']:,} -> {pb['rows']:,} ({change:+.1f}%)")
    for kind in ("added", "removed"):
        if changes[kind]:
            print(f"columns {kind}: {', '.join(display(c) for c in changes[kind])}")
    for c, (t1, t2) in changes["retyped"].items():  # type: ignore[attr-defined]
        print(f"column {display(c)} retyped: {t1} -> {t2}")
    rows = [
        [
            d["column"],
            f"{_fmt(d['nulls'][0])} -> {_fmt(d['nulls'][1])}",
            f"{_fmt(d['mean'][0])} -> {_fmt(d['mean'][1])}",
            d["method"] or "",
            "" if d["statistic"] is None else f"{d['statistic']:.4f}",
            "DRIFT" if d["drifted"] else "",
        ]
        for d in drift
    ]
    names = ["column", "nulls", "mean", "method", "statistic", f"> {threshold}"]
    write([dict(zip(names, r)) for r in rows], names, "table", sys.stdout)
    return EXIT_OK


def infer(args: argparse.Namespace) -> int:
    from mlci_tui.validate.infer import infer_schema, write_into_config

    repo = Repo.find()
    _datasets_, spec = _adhoc(repo, args.path)
    name = args.name or spec.name
    text = infer_schema(repo, spec, name)
    if args.write:
        write_into_config(repo.root, name, text)
        print(f"added dataset {display(name)} to mlci.yaml")
    else:
        sys.stdout.write(text)
    return EXIT_OK
