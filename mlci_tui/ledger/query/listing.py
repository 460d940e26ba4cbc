"""A listing of runs: a SQL predicate over the `runs` view, the one sort order, a limit (`mlci runs`)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import InputError, first_line
from mlci_tui.ledger import records
from mlci_tui.ledger.query.names import map_keys
from mlci_tui.ledger.query.rows import dict_rows, first_row
from mlci_tui.ledger.query.run import LISTED_FIELDS, Run, param_text
from mlci_tui.ledger.query.sort import order_by, parse_sort
from mlci_tui.sql_guard import guard, time_limit

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.ledger.query.filter import Compiled
    from mlci_tui.ledger.store import LedgerStore


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
    metric_keys = map_keys_of(con, "metric")
    param_keys = map_keys_of(con, "param")
    from mlci_tui.ledger.query.filter import Compiled  # the filter language loads with a listing that queries

    order, order_binds = order_by(parse_sort(sort, metric_keys, param_keys) if sort else None)
    compiled = _compile(con, where, metric_keys, param_keys) if where else Compiled("")
    predicate = f"WHERE {compiled.sql}" if compiled.sql else ""
    count = f"SELECT count(*) FROM {compiled.source()} {predicate}"
    sql = f"SELECT runs.* FROM {compiled.source()} {predicate} {order}" + (f" LIMIT {int(limit)}" if limit > 0 else "")
    if compiled.raw:  # the user's SQL: the whole statement as it runs is one SELECT, on a locked-down connection
        guard(con, sql, count, what="--where")
    binds = [*compiled.join_binds, *compiled.binds]
    with _answering(con, compiled):
        runs = [Run.from_row(r) for r in dict_rows(con.execute(sql, [*binds, *order_binds]))]
        total = first_row(con, count, binds)[0]
    return Listing(runs, int(total), metric_keys, param_keys)


def matching_ids(con: duckdb.DuckDBPyConnection, where: str) -> list[str]:
    """The ids of the runs `where` matches, read as `list_runs` reads it (`mlci export --where`)."""
    compiled = _compile(con, where, map_keys_of(con, "metric"), map_keys_of(con, "param"))
    sql = f"SELECT runs.run_id FROM {compiled.source()} WHERE {compiled.sql}"
    if compiled.raw:
        guard(con, sql, what="--where")
    with _answering(con, compiled):
        return [str(r[0]) for r in con.execute(sql, [*compiled.join_binds, *compiled.binds]).fetchall()]


@contextmanager
def _answering(con: duckdb.DuckDBPyConnection, compiled: Compiled) -> Iterator[None]:
    """A `--where` query within the time limit; DuckDB's error as one line (and, for text read
    as SQL, why it was not a filter)."""
    import duckdb

    try:
        with time_limit(con, "--where"):
            yield
    except duckdb.Error as exc:
        why = f" (read as SQL; as a filter: {compiled.not_a_filter})" if compiled.not_a_filter else ""
        raise InputError(f"--where: {first_line(exc)}{why}") from None


def _compile(con: duckdb.DuckDBPyConnection, where: str, metrics: list[str], params: list[str]) -> Compiled:
    from mlci_tui.ledger.query.filter import FilterError, Names, compile_where

    steps = [r[0] for r in con.execute("SELECT DISTINCT name FROM steps").fetchall()]
    try:
        return compile_where(where, Names(metrics=set(metrics), params=set(params), steps=set(steps)))
    except FilterError as exc:
        raise InputError(f"--where: {exc}") from None


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
_TEXT_FIELDS = [n for n in LISTED_FIELDS if n not in ("time", "started", "ended", "stale", "tags", "params", "metrics")]


def runs_added(store: LedgerStore, old: str, new: str, *, at_most: int | None = None) -> list[Run] | None:
    """The runs the ledger gained from tip `old` to `new`, as the `runs` view lists them, when
    new run event files are all that changed and each value is one this can render exactly as
    the cache does; else None (the listing is rebuilt by the query). A listing memo is brought
    up to date with these after a capture instead of being rebuilt (cli/runs.py). More than
    `at_most` files: None before any is read."""
    entries = store.added_between(old, new)
    if not entries or (at_most is not None and len(entries) > at_most):
        return None
    oids = [e.oid for e in entries]
    order = store.repo.pack_order(oids)  # thousands of blobs: one pass over the pack, as the cache reads them
    out = []
    for n, data in store.repo.stream_blobs([oids[k] for k in order]):  # stops reading at the first refusal
        try:
            record = _loads(data or b"")
            named = records.record_path(str(record.get("id"))) == entries[order[n]].path
            run = _listed_run(record) if named else None
        except (ValueError, RecursionError):  # not JSON or UTF-8, nested past Python's parser, 2025-13-01: the query
            return None
        if run is None:
            return None
        out.append(run)
    return out


_FLOAT_MARK = f'"{records.FLOAT_KEY}"'.encode()
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # an escaped UTF-16 half: canonical JSON never writes one


def _loads(data: bytes) -> dict[str, Any]:
    """A record, as `records.loads` reads it; without its per-object hook (half the parse) when
    no `{"$float": ...}` wrapper is spelled out. A wrapper spelled otherwise stays a map, which
    `_listed_run` refuses: the query decides. So does an escaped surrogate (Python keeps a lone
    one, which no UTF-8 output can print; the cache does not)."""
    if _SURROGATE.search(data):
        raise ValueError("an escaped surrogate")
    if _FLOAT_MARK in data:
        return records.loads(data)
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a ledger record must be a JSON object")
    return value


EMPTY_TREE = {  # git's empty tree by object format (SHA-1, SHA-256): every tree diffs against it
    40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
RECORDS_LISTING_MAX = 20_000  # loose records; past this the query builds the cache, which later queries reuse


def listed_from_records(store: LedgerStore, tip: str) -> list[Run] | None:
    """Every run of the ledger at `tip` in the listing's default order, read from its records
    without the cache (a fresh clone's first `runs --json`: no DuckDB, no cache build), when it
    holds loose run event files only (no tag, note, redaction or other event, no segment, no
    conflict) and each renders exactly as the cache would (`runs_added`); else None."""
    runs = runs_added(store, EMPTY_TREE[len(tip)], tip, at_most=RECORDS_LISTING_MAX)
    return None if runs is None else newest_first(runs)


def _listed_run(record: dict[str, Any]) -> Run | None:
    """A run record as the `runs` view gives it (tags none yet), or None when any value is not
    one whose text and type the cache's SQL gives the same way (then the query decides)."""
    if record.get("type") != "run" or record.get("v") != records.SCHEMA_VERSION or record.get("run_id") != record["id"]:
        return None
    values: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return None
        values[name] = value
    for name in ("time", "started", "ended"):
        value = record.get(name)
        if value is not None and not (isinstance(value, str) and _TIME.fullmatch(value)):
            return None
        values[name] = dt.datetime.fromisoformat(value[:-1]) if value else None
    stale = record.get("stale")
    if stale is not None and not isinstance(stale, bool):
        return None
    params = _per_file(record.get("params"), _param_text)
    metrics = _per_file(record.get("metrics"), _metric_value)
    if params is None or metrics is None:
        return None
    return Run(**values, stale=bool(stale), params=map_keys(params), metrics=map_keys(metrics))


def _per_file(value: Any, convert: Callable[[Any], Any]) -> dict[str, dict[str, Any]] | None:
    if value is None:
        return {}
    if not isinstance(value, dict):
        return None
    out = {}
    for file, values in value.items():
        if not isinstance(values, dict):
            return None
        converted = {name: convert(v) for name, v in values.items()}
        if _UNSURE in converted.values():  # the values are text, numbers, booleans: only the sentinel is it
            return None
        out[file] = converted
    return out


_UNSURE = object()  # a value whose text DuckDB may spell otherwise (a float with an exponent, a list, null)


def _param_text(value: Any) -> Any:
    if isinstance(value, (str, bool)) or (isinstance(value, int) and abs(value) < 2**63):
        return param_text(value)
    if isinstance(value, float) and math.isfinite(value):
        return param_text(value) if "e" not in repr(value) else json_number_text(value)
    return _UNSURE


def json_number_text(value: float) -> str:
    """A float with an exponent as DuckDB's JSON text spells it (the cache's param text): the
    shortest digits, fixed notation for decimal exponents -6..20 (`1e-05` -> `0.00001`, `1e+20`
    -> `100000000000000000000.0`), else `1.5e300`. Checked against DuckDB on 6,000 values."""
    text = repr(value)
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0").rstrip("0") or "0"
    e10 = int(exponent) + len(whole.lstrip("0")) - 1 if whole.strip("0") else int(exponent)
    if not -7 < e10 < 21:
        return f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e{e10}"
    point = e10 + 1
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}.0"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _metric_value(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _UNSURE
    return float(value)


def newest_first(runs: list[Run]) -> list[Run]:
    """Runs in the listing's default order (`sort.TIE_BREAK`: start or else record time, newest
    first, then record time, then the run id), in Python for runs not yet in the cache."""
    by_id = sorted(runs, key=lambda r: r.run_id)
    return sorted(by_id, key=lambda r: (_newest(r.started or r.time), _newest(r.time)), reverse=True)


def _newest(value: dt.datetime | None) -> tuple[bool, dt.datetime]:
    """A time as `DESC NULLS LAST` orders it (reversed): a missing one below every time."""
    return (value is not None, value or _EPOCH)


_EPOCH = dt.datetime(1, 1, 1)
