"""Small readers of DuckDB results that every query of the read layer shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


def first_row(con: duckdb.DuckDBPyConnection, sql: str, binds: Sequence[Any] = ()) -> Any:
    """The first row of a query, or None (DuckDB wants every result read to its end)."""
    rows = con.execute(sql, list(binds)).fetchall()
    return rows[0] if rows else None


def dict_rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def cache_tip(con: duckdb.DuckDBPyConnection) -> str:
    """The ledger tip the open cache was built from."""
    row = first_row(con, "SELECT value FROM meta WHERE key = 'tip'")
    return str(row[0]) if row and row[0] else ""


def json_object(text: Any) -> dict[str, Any]:
    """A JSON object column (datasets, deps) as a dict; anything else as {}."""
    try:
        value = json.loads(text) if isinstance(text, str) else (text or {})
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else (text or [])
    except ValueError:
        return []
    return value if isinstance(value, list) else []
