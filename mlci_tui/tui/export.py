"""Export what a screen shows to CSV, JSON or Markdown through the CLI's one writer
(`mlci_tui.output`), so every cell is sanitised (CSV, Markdown) or JSON-escaped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlci_tui import output
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query.compare import CompareResult
from mlci_tui.ledger.query.runs_view import Row, ViewResult, load_rows


def view_rows(result: ViewResult, table: list[Row]) -> tuple[list[str], list[dict[str, Any]]]:
    """Every row of the view (`table`: not only those on screen), full precision, full run ids."""
    base = result.baseline
    header: list[str] = []
    plan: list[tuple[str, Any]] = []
    for col in result.columns:
        label = "run_id" if col.key == "id" else col.label
        if label in header:
            label = f"{col.kind}:{label}"
        header.append(label)
        plan.append((label, col))
    rows: list[dict[str, Any]] = []
    for values in table:
        row: dict[str, Any] = {}
        for label, col in plan:
            value = values[col.source]
            if col.kind == "delta":
                ref = base.metrics.get(col.name) if base else None
                value = value - ref if value is not None and ref is not None else None
            row[label] = value
        rows.append(row)
    return header, rows


def compare_rows(result: CompareResult, differences_only: bool) -> tuple[list[str], list[dict[str, Any]]]:
    header = ["section", "name"] + [r["run_id"] for r in result.runs]
    rows = []
    for row in result.rows:
        if differences_only and not row.differs:
            continue
        rows.append({"section": row.section, "name": row.name, **dict(zip(header[2:], row.values))})
    return header, rows


def write(header: list[str], rows: list[dict[str, Any]], fmt: str, path: Path) -> int:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        output.write(rows, header, fmt, out, width=None)  # a file: never fitted to a terminal
    os.replace(tmp, path)
    return len(rows)


def write_view(repo: Repo, result: ViewResult, fmt: str, path: Path) -> int:
    """Every row of the view, read again from the cache in the view's order."""
    header, rows = view_rows(result, load_rows(repo, result))
    return write(header, rows, fmt, path)


def write_compare(result: CompareResult, fmt: str, path: Path, *, differences_only: bool = False) -> int:
    header, rows = compare_rows(result, differences_only)
    return write(header, rows, fmt, path)
