"""How every human-facing output writes a number: the CLI's tables, the TUI, the reports.

Five significant digits, widened (up to twelve, past which a difference is float noise)
until the values shown side by side print differently: a column, a baseline and its
candidate. NaN and the infinities are spelled as the ledger and JSON spell them. JSON keeps
full precision; CSV, read by programs, gets twelve digits.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # `typing` costs more than the hook path can spend (ledger.records imports this)
if TYPE_CHECKING:
    from collections.abc import Iterable

HUMAN_DIGITS = 5
MAX_DIGITS = 12  # 0.1 + 0.2 prints as 0.3: digits past this are binary noise
# the names of the non-finite floats, also in the ledger's {"$float": NAME} wrapper and in JSON output
NAN, POS_INF, NEG_INF = "NaN", "Infinity", "-Infinity"


def number_text(value: float, digits: int = HUMAN_DIGITS) -> str:
    """`value` in `digits` significant digits; integers whole; NaN and ±Infinity by name."""
    if math.isnan(value):
        return NAN
    if math.isinf(value):
        return POS_INF if value > 0 else NEG_INF
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"


def digits_to_tell_apart(values: Iterable[object], start: int = HUMAN_DIGITS) -> int:
    """The fewest digits (from `start`, at most MAX_DIGITS) at which distinct numbers print distinctly."""
    distinct = {v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    if len(distinct) < 2 or len({f"{v:.{start}g}" for v in distinct}) == len(distinct):
        return start  # the common case: one format of each value
    distinct = {float(f"{v:.{MAX_DIGITS}g}") for v in distinct}  # differences past MAX_DIGITS are noise
    if len(distinct) < 2:
        return start
    for digits in range(start + 1, MAX_DIGITS):
        if len({f"{v:.{digits}g}" for v in distinct}) == len(distinct):
            return digits
    return MAX_DIGITS


def signed_text(value: float, digits: int = HUMAN_DIGITS) -> str:
    """A difference: `+0.012`, `-3`, `0`."""
    return ("+" if value > 0 else "") + number_text(value, digits)


def change_text(delta: float | None, pct: float | None, digits: int = HUMAN_DIGITS) -> str:
    """A change from a baseline as every output writes it: `+0.012 (+1.3%)`; empty when unknown."""
    if delta is None:
        return ""
    text = signed_text(delta, digits)
    if pct is not None:
        text += f" ({signed_text(pct, min(digits, 3) if abs(pct) < 1000 else digits)}%)"
    return text


def difference(base: object, head: object) -> tuple[float | None, float | None]:
    """`head - base`, and that as a percentage of |base|; None where either is missing or not finite."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (base, head))
    if not numbers or not (math.isfinite(base) and math.isfinite(head)):  # type: ignore[arg-type]
        return None, None
    delta = float(head) - float(base)  # type: ignore[arg-type]
    return delta, (delta / abs(float(base)) * 100 if base else None)  # type: ignore[arg-type]


def compared_change(base: object, head: object) -> str:
    """The change from `base` to `head` in the digits that tell the two apart."""
    delta, pct = difference(base, head)
    return change_text(delta, pct, digits_to_tell_apart([base, head]))
