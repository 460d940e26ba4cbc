"""One sort order for every listing of runs: `mlci runs --sort`, the TUI's columns, export.

Numbers sort by value and text by text; a run without the value sorts last either way, and a
NaN metric after every number (a diverged run is never the best). Ties go to the newest run
(its start, then when it was recorded: commits of one second start together), then the run
id, so two listings of the same ledger always agree. The TUI re-sorts a loaded view in memory
with pyarrow in exactly this order (`runs_view.sort_view`; a test holds the two together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlci_tui.errors import InputError
from mlci_tui.ledger.query.names import candidates
from mlci_tui.ledger.query.run import LISTED_FIELDS
from mlci_tui.sanitize import display

# Computed fields of the runs listing: key -> SQL over the `runs` view.
TIME_SQL = "coalesce(started, time)"
FIELD_SQL: dict[str, str] = {
    "id": "run_id",
    "time": TIME_SQL,
    "branch": "branch",
    "subject": "coalesce(name, split_part(message, chr(10), 1))",
    "kind": "CASE WHEN stale THEN kind || ' (stale)' ELSE kind END",
    "status": "status",
}
TAGS_SQL = "array_to_string(tags, ' ')"
TIE_BREAK = f"{TIME_SQL} DESC, time DESC, run_id"
_PLAIN_FIELDS = {n for n in LISTED_FIELDS if n not in ("params", "metrics", "tags")}


@dataclass(frozen=True)
class SortKey:
    kind: str  # field, metric, param, tags
    name: str  # a FIELD_SQL key or run field; a metric or param map key
    descending: bool = False


def order_by(key: SortKey | None) -> tuple[str, list[Any]]:
    """`ORDER BY ...` over the runs view, with its bound parameters."""
    if key is None:
        return f"ORDER BY {TIE_BREAK}", []
    direction = "DESC" if key.descending else "ASC"
    if key.kind == "metric":
        return (
            f"ORDER BY metrics[?] IS NULL, isnan(metrics[?]), metrics[?] {direction}, {TIE_BREAK}",
            [key.name] * 3,
        )
    if key.kind == "param":
        # numbers by value, then text (a text key only where the value is not a number: cheaper)
        number = "TRY_CAST(params[?] AS DOUBLE)"
        return (
            f"ORDER BY {number} {direction} NULLS LAST, CASE WHEN {number} IS NULL THEN params[?] END {direction} "
            f"NULLS LAST, {TIE_BREAK}",
            [key.name] * 3,
        )
    if key.kind == "field" and key.name == "time":
        return f"ORDER BY {TIME_SQL} {direction} NULLS LAST, time {direction} NULLS LAST, run_id", []
    expr = TAGS_SQL if key.kind == "tags" else FIELD_SQL.get(key.name, f'"{key.name}"')
    return f"ORDER BY {expr} {direction} NULLS LAST, {TIE_BREAK}", []


def parse_sort(text: str, metric_keys: list[str], param_keys: list[str]) -> SortKey:
    """`mlci runs --sort`: a field, metric or param name, `-` first for descending."""
    descending = text.startswith("-")
    name = text.lstrip("-+")
    if name in FIELD_SQL or name in _PLAIN_FIELDS:
        return SortKey("field", name, descending)
    if name == "tags":
        return SortKey("tags", name, descending)
    if name in metric_keys:
        return SortKey("metric", name, descending)
    if name in param_keys:
        return SortKey("param", name, descending)
    found = candidates(metric_keys + param_keys, name)
    if found:
        raise InputError(
            f"--sort {display(name)!r} is ambiguous: it comes from several files; name one of "
            + ", ".join(display(k) for k in found[:5])
        )
    raise InputError(f"--sort {display(name)!r}: no such column, metric or param")
