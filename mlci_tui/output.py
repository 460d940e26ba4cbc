"""Listings in the four formats every command shares: table, json, csv, md.

Every cell passes through the display sanitiser (table, md), `csv_cell` (csv: controls
removed, formulas made inert) or is JSON-escaped (json), so names, messages and values from
the data print inertly in every format. Numbers are
written by `numbers`: five significant digits in a table or Markdown, widened per column
until its values print differently (or `precision` digits); twelve in CSV, full in JSON.

A table is rendered by Rich. Given a width (`terminal_width`: `COLUMNS`, else the terminal's
width when the output is one; a pipe gets the table whole), no line is wider. How it fits is the
command's choice, made here for all of them: a listing with many optional columns (`runs`, `sql`,
`runs --groups`) keeps columns by priority and shortens text with an ellipsis; a table whose
columns all matter (`fold`: `show`, `diff`, `gate`, `stages`) keeps every column and wraps cell
text onto more lines, so a gate's reason is read whole. A table whose command says nothing fits the
terminal by folding (sweep and bisect tables, `data status`): no table is wider than `COLUMNS`.
`fit_text` wraps the prose around them.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

from mlci_tui.numbers import HUMAN_DIGITS, MAX_DIGITS, NAN, NEG_INF, POS_INF, digits_to_tell_apart, number_text
from mlci_tui.sanitize import display, markdown_cell, plain

FORMATS = ("table", "json", "csv", "md")
MAX_CELL = 48
GAP = 2  # spaces between table columns
COMFORTABLE_CELL = 24  # a text column keeps this much before a column that is not essential is shown
SHRUNK_CELL = 12  # ... and is narrowed to no less than this for an essential one


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
    kind = type(value)
    if (
        kind is str or kind is int or kind is bool or value is None
    ):  # most cells, checked first: `runs --json` writes ~40 a run
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else NAN if math.isnan(value) else POS_INF if value > 0 else NEG_INF
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
    width: int | None | Literal["terminal"] = "terminal",
    priority: Sequence[str] = (),
    essential: int = 1,
    shrink: Sequence[str] | None = None,
    precision: int | None = None,
    fold: bool | None = None,
) -> list[str]:
    """`rows` in `fmt`. `compared` names two columns holding a baseline and its candidate: in
    each row those two print in the digits that tell them apart. `raw`: CSV text cells keep a
    leading `= + - @` (`csv_cell`). A table is at most `width` wide (None: no limit, as `--wide`
    asks; by default `terminal_width(out)`), keeping the columns named in `priority` first (the first `essential` ones before
    any narrowed column grows), then the others in order, and
    narrowing the text columns in `shrink` (default: every text column); `precision`: numbers in that many significant digits in a table or Markdown.
    `fold`: every column is kept and cell text wraps onto more lines instead, never cut (`fit_columns`);
    by default a table fitted to a width without a `priority` folds. Returns the
    columns a table left out."""
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
        digits = column_digits(rows, columns, precision)
        out.write("| " + " | ".join(markdown_cell(c) for c in columns) + " |\n")
        out.write("|" + "|".join("---" for _ in columns) + "|\n")
        for r in rows:
            texts = _row_texts(r, columns, digits, compared)
            out.write("| " + " | ".join(markdown_cell(t) for t in texts) + " |\n")
    else:
        if width == "terminal":
            width = terminal_width(out)
        if fold is None:  # fitting a table no command shaped: keep its columns, wrap its cells
            fold = not priority and width is not None
        digits = column_digits(rows, columns, precision)
        header = [display(c) for c in columns]
        cells = [[display(t) for t in _row_texts(r, columns, digits, compared)] for r in rows]
        if truncate and not fold:
            cells = [[_truncate(c) for c in row] for row in cells]
        numeric = [bool(rows) and all(_looks_numeric(r.get(c)) for r in rows) for c in columns]
        fixed = [n or (shrink is not None and c not in shrink) for c, n in zip(columns, numeric)]
        order = [columns.index(c) for c in priority if c in columns]
        kept, widths = fit_columns(header, cells, fixed, width, order, essential, fold=fold)
        out.write(_render(header, cells, numeric, kept, widths, fold=fold))
        return [columns[i] for i in range(len(columns)) if i not in kept]
    return []


def terminal_width(out: TextIO) -> int | None:
    """How wide a table may be: `COLUMNS`, else the terminal's width when `out` is one, else no limit."""
    import os

    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    isatty = getattr(out, "isatty", None)
    if isatty is not None and isatty():
        import shutil

        return shutil.get_terminal_size().columns
    return None


def fit_columns(
    header: list[str],
    cells: list[list[str]],
    fixed: list[bool],
    width: int | None,
    priority: Sequence[int] = (),
    essential: int = 1,
    *,
    fold: bool = False,
) -> tuple[list[int], list[int]]:
    """Which columns a table of at most `width` characters shows, and how wide each is.

    Columns are taken in the order of `priority`, then the rest: the first `essential` ones
    whenever they fit with the columns not `fixed` narrowed to SHRUNK_CELL, the others only while
    those keep COMFORTABLE_CELL. The columns not `fixed` then share what is left, widest first.
    With `fold` every column is kept (its text wraps): see `_fold_widths`."""
    from rich.cells import cell_len  # what a cell takes on the terminal (a CJK character: two)

    natural = [max([cell_len(header[i]), *(cell_len(row[i]) for row in cells)]) for i in range(len(header))]
    if width is None:
        return list(range(len(header))), natural
    if fold:
        return list(range(len(header))), _fold_widths(header, cells, fixed, natural, width)
    order = list(dict.fromkeys([*priority, *range(len(header))]))
    least = [w if fixed[i] else min(w, SHRUNK_CELL) for i, w in enumerate(natural)]
    comfortable = [w if fixed[i] else min(w, COMFORTABLE_CELL) for i, w in enumerate(natural)]
    chosen: list[int] = []
    for n, i in enumerate(order):
        sizes = least if n < essential else comfortable
        if sum(sizes[j] for j in chosen) + sizes[i] + GAP * len(chosen) <= width or not chosen:
            chosen.append(i)
    kept = sorted(chosen)
    widths = {i: least[i] for i in kept}
    spare = width - sum(widths.values()) - GAP * (len(kept) - 1)
    while spare > 0:  # the narrowed columns grow back, the narrowest first
        growing = [i for i in kept if widths[i] < natural[i]]
        if not growing:
            break
        i = min(growing, key=lambda j: widths[j])
        widths[i] += 1
        spare -= 1
    if spare < 0:  # one column wider than the terminal: cut it
        widths[kept[0]] = max(1, widths[kept[0]] + spare)
    return kept, [widths[i] for i in kept]


def _fold_widths(
    header: list[str], cells: list[list[str]], fixed: list[bool], natural: list[int], width: int
) -> list[int]:
    """Every column's width when all are kept within `width`: the widest text column gives up a
    cell at a time down to its longest word (wrapping then breaks lines between words); while
    the table is still too wide, the widest column of any kind, numbers too, down to one cell
    (Rich folds the words)."""
    from rich.cells import cell_len

    def longest_word(i: int) -> int:
        texts = [header[i], *(row[i] for row in cells)]
        return max((cell_len(word) for text in texts for word in text.split()), default=1)

    floor = [natural[i] if fixed[i] else min(natural[i], longest_word(i)) for i in range(len(natural))]
    widths = list(natural)
    excess = sum(widths) + GAP * (len(widths) - 1) - width
    while excess > 0:
        narrowing = [i for i, w in enumerate(widths) if w > floor[i]] or [i for i, w in enumerate(widths) if w > 1]
        if not narrowing:
            break
        i = max(narrowing, key=lambda j: widths[j])
        widths[i] -= 1
        excess -= 1
    return widths


def _render(
    header: list[str],
    cells: list[list[str]],
    numeric: list[bool],
    kept: list[int],
    widths: list[int],
    *,
    fold: bool = False,
) -> str:
    """The table as text, through Rich (cells are plain text: nothing is read as markup): a
    header, a line of dashes under it, columns GAP spaces apart, no frame. A cell wider than its
    column is cut with an ellipsis, or with `fold` wrapped onto more lines (the header too: it is
    drawn on its own, so the dashes go under all of its lines)."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def draw(rows: list[list[str]], show_header: bool) -> list[str]:
        table = Table(
            box=None, show_edge=False, pad_edge=False, padding=(0, GAP, 0, 0), expand=False, show_header=show_header
        )
        for i, w in zip(kept, widths):
            justify: Literal["right", "left"] = "right" if numeric[i] and cells else "left"
            overflow: Literal["fold", "ellipsis"] = "fold" if fold else "ellipsis"
            table.add_column(
                Text(header[i], justify="left"), justify=justify, width=w, no_wrap=not fold, overflow=overflow
            )
        for row in rows:
            table.add_row(*(Text(row[i]) for i in kept))
        buffer = io.StringIO()
        total = sum(widths) + GAP * len(widths)
        console = Console(file=buffer, width=total, color_system=None, highlight=False, emoji=False, markup=False)
        console.print(table)
        return [line.rstrip() for line in buffer.getvalue().splitlines()]

    lines = [*draw([], True), (" " * GAP).join("-" * w for w in widths)]
    if cells:
        lines += draw(cells, False)
    return "".join(line + "\n" for line in lines)


def fit_text(text: str, width: int | None) -> str:
    """Prose printed around a table (a heading, a warning, a note), wrapped between words to at
    most `width` cells per line (a longer word folded); None: as it is. `text` is display text
    already (`sanitize.display`): it is not read as markup."""
    if width is None:
        return text
    import io

    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, emoji=False, markup=False)
    for line in text.split("\n"):
        console.print(Text(line), overflow="fold", no_wrap=False, crop=False)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


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


def column_digits(rows: Sequence[dict[str, Any]], columns: Sequence[str], precision: int | None = None) -> list[int]:
    """For each column, the digits at which its numbers print differently (`numbers.digits_to_tell_apart`),
    or `precision` digits when the user chose them (`--precision N`)."""
    if precision is not None:
        return [precision] * len(columns)
    return [digits_to_tell_apart(r.get(c) for r in rows) for c in columns]


def _looks_numeric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
