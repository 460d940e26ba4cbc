"""Axis ticks for the drawn charts: round steps (1, 2, 2.5, 5 times a power of ten), and as
many labels as fit side by side, so no two labels overlap."""

from __future__ import annotations

import math

from mlci_tui.report.markdown import mermaid_number

CHAR_PX = 6.6  # width of one character of the 11px chart font, a little generous
GAP_PX = 10  # space kept between two labels


def label_px(text: str) -> float:
    return len(text) * CHAR_PX


def nice_step(span: float, count: int, integer: bool = False) -> float:
    """The round step that cuts `span` into at most about `count` parts (whole numbers: at least 1)."""
    raw = max(span / max(1, count), 1.0 if integer else 0.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw * (1 - 1e-9):
            return factor * magnitude
    return 10 * magnitude


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> tuple[float, float, list[float]]:
    """A domain widened to round ends, and the round ticks across it (at most about `count`)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0, [0.0, 1.0]
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, count, integer)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks


def fitting_ticks(
    lo: float, hi: float, width_px: float, most: int = 10, integer: bool = False
) -> tuple[float, float, list[float]]:
    """Round ticks along a horizontal axis of `width_px`, as many as fit with their labels apart."""
    for count in range(most, 1, -1):
        start, end, ticks = nice_ticks(lo, hi, count, integer)
        widest = max(label_px(mermaid_number(t)) for t in ticks)
        if len(ticks) < 2 or width_px / (len(ticks) - 1) >= widest + GAP_PX:
            return start, end, ticks
    return nice_ticks(lo, hi, 1, integer)


def every_nth(labels: list[str], width_px: float) -> int:
    """For evenly spaced category labels: show every n-th so that shown labels do not touch."""
    if len(labels) < 2:
        return 1
    spacing = width_px / (len(labels) - 1)
    widest = max(label_px(t) for t in labels)
    return max(1, math.ceil((widest + GAP_PX) / spacing))
