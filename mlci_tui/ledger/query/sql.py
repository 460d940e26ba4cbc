"""A user's own SQL over the ledger's views (`mlci sql`, the TUI's `sql:` filters read the same views)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlci_tui.errors import InputError, first_line
from mlci_tui.ledger.query.rows import dict_rows
from mlci_tui.sql_guard import guard, time_limit

if TYPE_CHECKING:
    import duckdb


def run_sql(con: duckdb.DuckDBPyConnection, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of one SELECT over the ledger's views, on a connection locked down
    first (no file, no extension, no setting: `sql_guard`)."""
    import duckdb

    guard(con, text, what="sql")
    try:
        with time_limit(con, "sql"):
            cur = con.execute(text)
            if cur.description is None:
                return [], []
            return [d[0] for d in cur.description], dict_rows(cur)
    except duckdb.Error as exc:
        raise InputError(f"sql: {first_line(exc)}") from None
