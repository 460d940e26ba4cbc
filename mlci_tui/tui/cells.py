"""Cell text for every table in the TUI: sanitised, short, the same everywhere.

Every string that came from the ledger goes through `display()` here, so a widget only
ever receives inert text (wrapped in `rich.text.Text`, or painted as plain segments).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.text import Text

from mlci_tui.numbers import HUMAN_DIGITS, difference, digits_to_tell_apart, number_text, signed_text
from mlci_tui.sanitize import display


def number(value: float | int | None, digits: int = HUMAN_DIGITS) -> str:
    """A number as every human-facing output writes it (`mlci_tui.numbers`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return number_text(float(value), digits)


def delta(value: float | None, base: float | None) -> tuple[str, float | None]:
    """`value - base` as signed text in the digits that tell the two apart, and the raw
    difference (None when either is missing)."""
    diff = difference(base, value)[0]
    if diff is None:
        return "", None
    if diff == 0:
        return "=", 0.0
    return signed_text(diff, digits_to_tell_apart([value, base])), diff


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


def plain(value: Any, digits: int = HUMAN_DIGITS) -> str:
    """Any value as one safe line of text."""
    if value is None:
        return ""
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return number(value, digits)
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
