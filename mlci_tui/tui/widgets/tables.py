"""Refilling a DataTable in one go, with every column's width known before the first paint.

Textual measures auto-width columns on the table's next idle. A repaint that lands between
`add_row` and that idle caches the rows cut at the header's width, and the cache is keyed
so that the later measurement does not invalidate it: the cells stay cut until the next
change (a loaded CI machine showed `queued` as `queue`). Widths computed here from the
cells themselves leave nothing to measure later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable


def text_width(text: Text) -> int:
    """Cells taken by the widest line of `text` (what Textual's own measurement returns)."""
    return max((cell_len(line) for line in text.plain.split("\n")), default=0)


def refill(
    table: DataTable[Any],
    columns: Sequence[Text],
    rows: Sequence[Sequence[Text]],
    *,
    column_keys: Sequence[str] | None = None,
    row_keys: Sequence[str] | None = None,
) -> None:
    """Replace the columns and rows of `table`; every label and cell is inert `Text`."""
    table.clear(columns=True)
    for i, label in enumerate(columns):
        width = max([text_width(label), *(text_width(row[i]) for row in rows if i < len(row))])
        table.add_column(label, width=width, key=column_keys[i] if column_keys else None)
    for n, row in enumerate(rows):
        table.add_row(*row, key=row_keys[n] if row_keys else None)
