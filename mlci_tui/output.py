"""Listings in the four formats every command shares: table, json, csv, md.

Every cell passes through the display sanitiser (table, md), `csv_cell` (csv: controls
removed, formulas made inert) or is JSON-escaped (json), so names, messages and values from
the data print inertly in every format. Numbers are
written by `numbers`: five significant digits in a table or Markdown, widened per column
until its values print differently; twelve in CSV.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mlci_tui.numbers import HUMAN_DIGITS, MAX_DIGITS, NAN, NEG_INF, POS_INF, digits_to_tell_apart, number_text
from mlci_tui.sanitize import display, markdown_cell, plain

FORMATS = ("table", "json", "csv", "md")
MAX_CELL = 48


class Spread:
    """A group of repeats as one cell, `mean ± sd (n)`: the mean in the cell's digits, the sample
    standard deviation in two (`mlci runs --groups`, `diff`, the gate and the report)."""

    __slots__ = ("mean", "sd", "n")

    def __init__(self, mean: float, sd: float, n: int) -> None:
        self.mean, self.sd, self.n = mean, sd, n

    def text(self, digits: int = HUMAN_DIGITS) -> str:
        return f"{number_text(self.mean, digits)} ± {number_text(self.sd, 2)} ({self.n})"

    def doc(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "n": self.n}


def cell_text(value: Any, digits: int = HUMAN_DIGITS) -> str:
    """One value as the text of a cell (a float in `digits` significant digits)."""
    if value is None:
        return ""
    if isinstance(value, Spread):
        return value.text(digits)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return number_text(value, digits)
    if _is_datetime(value):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (dict, list)):
        return json.dumps(json_value(value), sort_keys=True, ensure_ascii=False)
    return str(value)


def _is_datetime(value: Any) -> bool:
    """Without importing datetime (5 ms of every listing): a datetime value means it is loaded."""
    dt = sys.modules.get("datetime")
    return dt is not None and isinstance(value, dt.datetime)


def json_value(value: Any) -> Any:
    """JSON-safe: NaN and infinities as strings, times as ISO 8601 UTC."""
    if isinstance(value, float) and not math.isfinite(value):
        return NAN if math.isnan(value) else (POS_INF if value > 0 else NEG_INF)
    if _is_datetime(value):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, Spread):
        return json_value(value.doc())
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def _truncate(text: str, width: int = MAX_CELL) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def write(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    fmt: str,
    out: TextIO,
    *,
    truncate: bool = True,
    compared: tuple[str, str] | None = None,
    raw: bool = False,
) -> None:
    """`rows` in `fmt`. `compared` names two columns holding a baseline and its candidate: in
    each row those two print in the digits that tell them apart. `raw`: CSV text cells keep a
    leading `= + - @` (`csv_cell`)."""
    if fmt == "json":
        # one object per line: json.dumps(indent=...) falls back to the pure-Python encoder,
        # which cost 40% of `mlci runs --json` over 1,000 runs (benchmarks/bench_peers.py)
        items = [json.dumps({c: json_value(r.get(c)) for c in columns}, ensure_ascii=True) for r in rows]
        out.write("[\n  " + ",\n  ".join(items) + "\n]\n" if items else "[]\n")
    elif fmt == "csv":
        import csv  # lazy: output is on the memoised `runs --json` path; only --format csv pays for csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([csv_cell(c, raw=raw) for c in columns])
        for r in rows:
            writer.writerow([_csv_value(r.get(c), raw) for c in columns])
    elif fmt == "md":
        digits = column_digits(rows, columns)
        out.write("| " + " | ".join(markdown_cell(c) for c in columns) + " |\n")
        out.write("|" + "|".join("---" for _ in columns) + "|\n")
        for r in rows:
            texts = _row_texts(r, columns, digits, compared)
            out.write("| " + " | ".join(markdown_cell(t) for t in texts) + " |\n")
    else:
        digits = column_digits(rows, columns)
        table = [[display(c) for c in columns]]
        for r in rows:
            cells = [display(t) for t in _row_texts(r, columns, digits, compared)]
            table.append([_truncate(c) if truncate else c for c in cells])
        widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
        numeric = [all(_looks_numeric(r.get(c)) for r in rows) and rows for c in columns]
        for n, row in enumerate(table):
            parts = [cell.rjust(widths[i]) if numeric[i] and n else cell.ljust(widths[i]) for i, cell in enumerate(row)]
            out.write("  ".join(parts).rstrip() + "\n")
            if n == 0:
                out.write("  ".join("-" * w for w in widths) + "\n")


def _row_texts(
    row: dict[str, Any], columns: Sequence[str], digits: list[int], compared: tuple[str, str] | None
) -> list[str]:
    if compared is not None:
        pair = digits_to_tell_apart([row.get(compared[0]), row.get(compared[1])])
        digits = [max(d, pair) if c in compared else d for c, d in zip(columns, digits)]
    return [cell_text(row.get(c), d) for c, d in zip(columns, digits)]


# what a spreadsheet runs as a formula (OWASP: CSV injection); tabs and line breaks are spaces by then
_FORMULA_START = ("=", "+", "-", "@")
# a number as text (DuckDB's CSV spells non-finite values inf/nan, mlci's NaN/Infinity): not a formula
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|infinity|nan)", re.IGNORECASE)


def csv_cell(text: str, *, raw: bool = False, number: bool = False) -> str:
    """One CSV cell, inert: control and bidi characters removed, line breaks and tabs made spaces
    (`sanitize.plain`: a cell is one line of data), and a text cell a spreadsheet would run as a
    formula (`=HYPERLINK(...)`, `@SUM`, `+cmd`, ` -1+1`) prefixed with `'`, as OWASP advises,
    unless `raw`. A number (`number`: the cell holds one, `-Infinity` included) or a text that
    spells one (`-0.25`, `+1`, DuckDB's `-inf`) is never prefixed."""
    text = plain(text)
    if raw or not text.lstrip(" ").startswith(_FORMULA_START):
        return text
    if number or _NUMBER.fullmatch(text.strip(" ")):
        return text
    return "'" + text


def _csv_value(value: Any, raw: bool) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return csv_cell(cell_text(value, MAX_DIGITS), raw=raw, number=number)


def inert_csv_file(path: str | Path, *, raw: bool = False) -> None:
    """Rewrite a CSV file another writer made (DuckDB's `COPY`: `mlci export`) with every cell
    through `csv_cell`, in place (a temporary file renamed over it)."""
    import csv
    import os

    source = Path(path)
    tmp = source.with_name(f".{source.name}.{os.getpid()}.inert")
    try:
        with source.open(newline="", encoding="utf-8") as src, tmp.open("w", newline="", encoding="utf-8") as dst:
            writer = csv.writer(dst, lineterminator="\n")
            for row in csv.reader(src):
                writer.writerow([csv_cell(cell, raw=raw) for cell in row])
        os.replace(tmp, source)
    finally:
        if tmp.exists():
            tmp.unlink()


def column_digits(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[int]:
    """For each column, the digits at which its numbers print differently (`numbers.digits_to_tell_apart`)."""
    return [digits_to_tell_apart(r.get(c) for r in rows) for c in columns]


def _looks_numeric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
