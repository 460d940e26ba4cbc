"""Cell text for every table in the TUI: sanitised, short, the same everywhere.

Every string that came from the ledger goes through `display()` here, so a widget only
ever receives inert text (wrapped in `rich.text.Text`, or painted as plain segments).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.text import Text

from mlci_tui.sanitize import display


def number(value: float | int | None, digits: int = 6) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == int(v) and abs(v) < 1e12:
        return str(int(v))
    return f"{v:.{digits}g}"


def delta(value: float | None, base: float | None) -> tuple[str, float | None]:
    """`value - base` as signed text, and the raw difference (None when either is missing)."""
    if value is None or base is None or not (math.isfinite(value) and math.isfinite(base)):
        return "", None
    diff = value - base
    if diff == 0:
        return "=", 0.0
    return f"{diff:+.4g}", diff


def verdict(diff: float | None, direction: str | None) -> str | None:
    """'better', 'worse' or None (no difference, or no known direction)."""
    if diff is None or diff == 0 or direction not in ("max", "min"):
        return None
    good = diff > 0 if direction == "max" else diff < 0
    return "better" if good else "worse"


def when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "" if value is None else display(value)


def plain(value: Any) -> str:
    """Any value as one safe line of text."""
    if value is None:
        return ""
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return number(value)
    if isinstance(value, dt.datetime):
        return when(value)
    return display(value)


def fit(text: str, width: int, *, right: bool = False) -> str:
    """Pad or cut `text` to exactly `width` cells, with an ellipsis when cut."""
    size = cell_len(text)
    if size > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    pad = " " * (width - size)
    return pad + text if right else text + pad


def looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def safe(value: Any, *, multiline: bool = False) -> Text:
    """A Text for a widget: the sanitised value, never parsed as markup."""
    if value is None:
        return Text("")
    if isinstance(value, str):
        return Text(display(value, multiline=multiline))
    return Text(plain(value))
