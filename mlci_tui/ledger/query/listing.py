"""A listing of runs: a SQL predicate over the `runs` view, the one sort order, a limit (`mlci runs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlci_tui.errors import InputError, first_line
from mlci_tui.ledger.query.filter import Compiled, FilterError, Names, compile_where
from mlci_tui.ledger.query.rows import dict_rows, first_row
from mlci_tui.ledger.query.run import Run
from mlci_tui.ledger.query.sort import order_by, parse_sort
from mlci_tui.sql_guard import guard, time_limit

if TYPE_CHECKING:
    import duckdb


@dataclass
class Listing:
    runs: list[Run]  # in the listing's order
    total: int  # how many runs the predicate matches (beyond the limit)
    metric_keys: list[str]  # every metric map key in the ledger, by name
    param_keys: list[str]


def map_keys_of(con: duckdb.DuckDBPyConnection, kind: str) -> list[str]:
    """Every metric or param map key in the ledger (kept by the cache: no scan of the runs)."""
    return [r[0] for r in con.execute("SELECT name FROM names WHERE kind = ? ORDER BY name", [kind]).fetchall()]


def list_runs(con: duckdb.DuckDBPyConnection, *, where: str | None, sort: str | None, limit: int) -> Listing:
    """The runs `where` matches (the filter language, else SQL: `filter.compile_where`), sorted by
    `sort` (`-acc`: a field, metric or param), at most `limit` (0: all)."""
    import duckdb

    metric_keys = map_keys_of(con, "metric")
    param_keys = map_keys_of(con, "param")
    order, order_binds = order_by(parse_sort(sort, metric_keys, param_keys) if sort else None)
    compiled = _compile(con, where, metric_keys, param_keys) if where else Compiled("")
    predicate = f"WHERE {compiled.sql}" if compiled.sql else ""
    count = f"SELECT count(*) FROM {compiled.source()} {predicate}"
    sql = f"SELECT runs.* FROM {compiled.source()} {predicate} {order}" + (f" LIMIT {int(limit)}" if limit > 0 else "")
    if compiled.raw:  # the user's SQL: the whole statement as it runs is one SELECT, on a locked-down connection
        guard(con, sql, count, what="--where")
    binds = [*compiled.join_binds, *compiled.binds]
    try:
        with time_limit(con, "--where"):
            runs = [Run.from_row(r) for r in dict_rows(con.execute(sql, [*binds, *order_binds]))]
            total = first_row(con, count, binds)[0]
    except duckdb.Error as exc:
        why = f" (read as SQL; as a filter: {compiled.not_a_filter})" if compiled.not_a_filter else ""
        raise InputError(f"--where: {first_line(exc)}{why}") from None
    return Listing(runs, int(total), metric_keys, param_keys)


def _compile(con: duckdb.DuckDBPyConnection, where: str, metrics: list[str], params: list[str]) -> Compiled:
    steps = [r[0] for r in con.execute("SELECT DISTINCT name FROM steps").fetchall()]
    try:
        return compile_where(where, Names(metrics=set(metrics), params=set(params), steps=set(steps)))
    except FilterError as exc:
        raise InputError(f"--where: {exc}") from None
