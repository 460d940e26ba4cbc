"""Failure messages for people (text) and for programs (JSON, the same data)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from mlci_tui.sanitize import display
from mlci_tui.validate.results import CheckResult, DatasetResult

MARK = {"pass": "ok", "warn": "WARN", "fail": "FAIL", "error": "FAIL", "unavailable": "FAIL", "skip": "skip"}


def _v(value: Any) -> str:
    if isinstance(value, str):
        return '"' + display(value).replace('"', '\\"') + '"'
    return display(json.dumps(value, ensure_ascii=False, default=str))


def _params(check: CheckResult) -> str:
    shown = {k: v for k, v in check.params.items() if k not in ("base",)}
    if check.check == "sql":
        sql = " ".join(str(shown.get("sql", "")).split())
        return f"{shown.get('name')}: {sql[:100]}"
    return ", ".join(f"{k}={_v(v)}" for k, v in shown.items())


def check_lines(check: CheckResult) -> list[str]:
    where = f"column {display(check.column)}: " if check.column else ""
    head = f"  {MARK[check.status]:4} {where}{check.check} ({_params(check)})"
    lines = []
    if check.message and check.status in ("fail", "warn", "skip"):
        head += f": {display(check.message)}"
    elif check.failures and check.rows:
        pct = 100.0 * check.failures / check.rows
        head += f": {check.failures:,} of {check.rows:,} rows ({pct:.2f}%) fail"
    lines.append(head)
    if check.status in ("fail", "warn"):
        if check.top_values:
            lines.append("       most common: " + ", ".join(f"{_v(v)} x{n:,}" for v, n in check.top_values))
        for sample in check.samples:
            values = " ".join(f"{display(k)}={_v(v)}" for k, v in sample["values"].items())
            prefix = f"row {sample['row']}: " if sample.get("row") is not None else ""
            lines.append(f"       {prefix}{values}")
        if check.hint:
            lines.append(f"       hint: {check.hint}")
    return lines


def dataset_lines(r: DatasetResult, *, verbose: bool = False) -> list[str]:
    ident = f"{display(r.dataset)} ({display(r.path)} @ {display(r.rev)}"
    if r.content_hash:
        ident += f", {display(r.content_hash[:24])}"
    ident += ")"
    rows = f", {r.rows:,} rows" if r.rows is not None else ""
    status = {
        "pass": "passed",
        "warn": "passed with warnings",
        "fail": "FAILED",
        "error": "FAILED",
        "unavailable": "FAILED",
    }[r.status]
    lines = [f"{MARK[r.status]:4} {ident}{rows}: {status}{' (cached)' if r.cached else ''}"]
    if r.error:
        lines.append(f"  {display(r.error)}")
        if r.status == "error":
            lines.append("       hint: unreadable or corrupt data fails validation; fix or replace the file")
    for w in r.warnings:
        lines.append(f"  warning: {display(w)}")
    for check in r.checks:
        if check.status in ("fail", "warn") or verbose or (check.status == "skip"):
            lines += check_lines(check)
    return lines


def print_text(results: list[DatasetResult], out: TextIO, *, verbose: bool = False) -> None:
    for r in results:
        for line in dataset_lines(r, verbose=verbose):
            print(line, file=out)
    failed = sum(r.failed for r in results)
    if len(results) > 1 or failed:
        print(f"{len(results)} dataset(s): {len(results) - failed} passed, {failed} failed", file=out)


def print_json(results: list[DatasetResult], out: TextIO) -> None:
    doc = {"passed": not any(r.failed for r in results), "datasets": [r.to_dict() for r in results]}
    print(json.dumps(doc, indent=2, ensure_ascii=True, default=str), file=out)
