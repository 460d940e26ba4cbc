"""What the TUI reads from and writes to the ledger. No Textual here: workers call these.

While the app runs it holds ONE read-only connection to the DuckDB cache (`HeldCache`,
registered by the app with `hold_cache`), kept while the ledger tip is unchanged; each query
takes its own cursor of it (a DuckDB connection is not safe to share between threads). When
the ledger ref moves, the next query closes it and reopens (`LedgerCache.connect`, which
first brings the cache up to the new tip). The cache is refreshed by writing a new file and
renaming it over the old one, so the held connection never blocks a writer: it reads the old
snapshot until reopened. Without a held cache (outside the app) every query opens and closes
its own connection. (docs/architecture.md: a deviation from DESIGN.md's "readers open
read-only per query", with the reason and the measured gain.) A view of the runs table is the ordered list of the matching
run ids (one narrow column, sorted by DuckDB) plus the values of the pages of rows around
the cursor; the table widget reads further pages by run id when they scroll into sight
(`load_pages`), so filtering or sorting 100,000 runs never moves 100,000 rows of values.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import first_line
from mlci_tui.gitio import Repo
from mlci_tui.ledger.cache import CACHE_SCHEMA, LedgerCache, cache_is_current
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.tui.query import Compiled, FilterError, Names, compile_filter

if TYPE_CHECKING:
    import duckdb
    import pyarrow

SETTINGS_FILE = "tui.json"
PAGE_ROWS = 128  # rows read from DuckDB at a time
# Up to this many runs in the ledger, a view reads every matching row's values in one query
# (and a sort reorders them in memory); above it, the ordered ids and the pages in sight,
# then the rest of the values in the background, COMPLETE_AFTER seconds after the view is
# shown (interrupted by the next action), so that a sort is in memory again.
FULL_VIEW_RUNS = 20_000
COMPLETE_AFTER = 0.1
DEFAULT_METRIC_COLUMNS = 8
DEFAULT_PARAM_COLUMNS = 8
BASELINE_STAGE = "deployed"

# fixed columns of the runs table: key -> (label, SQL over the runs view)
FIELD_COLUMNS: dict[str, tuple[str, str]] = {
    "id": ("id", "run_id"),
    "time": ("time", "coalesce(started, time)"),
    "branch": ("branch", "branch"),
    "subject": ("subject", "coalesce(name, split_part(message, chr(10), 1))"),
    "kind": ("kind", "CASE WHEN stale THEN kind || ' (stale)' ELSE kind END"),
    "status": ("status", "status"),
}
TAGS_SQL = "array_to_string(tags, ' ')"


@dataclass(frozen=True)
class Column:
    key: str  # unique: "id", "time", ..., "m:acc", "d:acc", "p:train.lr", "tags"
    label: str
    kind: str  # field, metric, delta, param, tags
    name: str = ""  # the metric or param name
    direction: str | None = None  # for metrics and deltas: "max", "min" or None
    source: int = -1  # index of the column in the result table holding the value

    @property
    def numeric(self) -> bool:
        return self.kind in ("metric", "delta")


@dataclass
class LedgerInfo:
    """What the ledger holds, read once per ledger tip."""

    tip: str
    total: int = 0
    metrics: list[str] = field(default_factory=list)  # by name
    params: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)  # params with more than one value
    steps: list[str] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)  # stage -> run_id
    has_tags: bool = False

    @property
    def names(self) -> Names:
        return Names(metrics=set(self.metrics), params=set(self.params), steps=set(self.steps))


@dataclass
class Baseline:
    run_id: str
    how: str  # "pinned" or the stage name
    label: str
    metrics: dict[str, float]


@dataclass
class ViewSpec:
    filter_text: str = ""
    sort_key: str | None = None  # a Column key; None = newest first
    descending: bool = True
    baseline: str | None = None  # a pinned run id; None = the promoted `deployed` run, if any
    metrics: list[str] | None = None  # chosen metric columns; None = the default pick
    params: list[str] | None = None  # chosen param columns; None = those that differ


Row = tuple[Any, ...]  # the full run id, then one value per `Column.source`


@dataclass
class ViewResult:
    spec: ViewSpec
    info: LedgerInfo
    columns: list[Column]
    ids: pyarrow.ChunkedArray  # the full run id of every matching run, in the view's order
    pages: dict[int, list[Row]]  # rows read with the view: page number (PAGE_ROWS rows) -> rows
    select: str  # the select list that reads a row's values (`Row`), over the runs view
    select_binds: list[Any]
    baseline: Baseline | None
    seconds: float = 0.0
    # every row's values (a view of a small ledger): its columns are c0 (the run id), one per
    # `Column.source`, then n<source> (each param as a number, for sorting in memory)
    table: pyarrow.Table | None = None

    @property
    def count(self) -> int:
        return len(self.ids)

    def page(self, number: int) -> list[Row] | None:
        """A page of rows if it was read (always, for a complete view), else None."""
        rows = self.pages.get(number)
        if rows is None and self.table is not None:
            part = self.table.slice(number * PAGE_ROWS, PAGE_ROWS)
            rows = list(zip(*(c.to_pylist() for c in part.columns))) if part.num_rows else []
            self.pages[number] = rows
        return rows

    def index_of(self, run_id: str) -> int | None:
        """The row of `run_id` in this view, or None."""
        import pyarrow.compute as pc

        found = pc.index(self.ids, run_id).as_py()
        return None if found is None or found < 0 else int(found)

    def page_ids(self, number: int) -> list[str]:
        return [str(r) for r in self.ids.slice(number * PAGE_ROWS, PAGE_ROWS).to_pylist()]


_LINKS = itertools.count(1)  # names of the hard links the held databases are opened through


class HeldCache:
    """One read-only connection to the query cache, kept open while the ledger tip is unchanged.

    Opening the cache costs ~47 ms of CPU at 100,000 runs, and checking that it is current
    two `git rev-parse` processes: a filter or a sort over a held connection pays neither.
    Each query gets its own cursor (DuckDB connections are not thread-safe; cursors of one
    connection may run in different threads). Before each cursor the ledger's ref files are
    stat-ed (microseconds); only when they changed is git asked for the tip. A moved tip (or
    `moved()`, from the app's watcher) makes the next cursor wait for the cursors in use to
    close, close the connection and reopen it, refreshing the cache first. The file is opened
    through a hard link of its own (`_connect`), so that the held database never stands in
    for `cache.duckdb` in other connects of this process.
    """

    WAIT_FOR_USERS = 5.0  # seconds a reopen waits for cursors on the old snapshot to close

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.watcher = TipWatcher(repo, recheck=float("inf"))  # stat only; the app's watcher rechecks
        self._cond = threading.Condition()
        self._stack: ExitStack | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.tip: str | None = None  # the tip the open connection's cache was built from
        self._stale = False
        self._told: str | None = None  # a tip the app's watcher saw
        self._cursors: set[duckdb.DuckDBPyConnection] = set()
        self.opens = 0  # how many times the file was opened (tests, benchmarks)

    def _check(self) -> None:
        """Mark the connection stale when the ledger ref moved away from its tip (under the lock)."""
        told, self._told = self._told, None
        moved = self.watcher.poll()  # a stat of the ref files; git only when they changed
        for tip in (told, moved):
            if tip is not None and self.tip is not None and tip != self.tip:
                self._stale = True

    def moved(self, tip: str) -> None:
        """The ledger tip is now `tip` (the app's watcher saw it): reopen before the next query.
        No lock (the UI thread calls this; a reopen may hold the lock through a cache refresh)."""
        self._told = tip

    def recheck(self) -> None:
        """Ask git for the tip before the next query, whatever the ref files' stat says (`r`)."""
        self.watcher._signature = None

    def looks_current(self) -> bool:
        """True when a connection is open on the tip the ref files still show (no git process)."""
        with self._cond:
            if self._con is None:
                return False
            self._check()
            return not self._stale

    def _wait_for_cursors_locked(self, *, interrupt: bool) -> None:
        """Give the cursors in use up to WAIT_FOR_USERS to close. When the app leaves they are
        interrupted, again at every tick: an interrupt that lands before a query starts is lost."""
        deadline = time.monotonic() + self.WAIT_FOR_USERS
        while self._cursors and time.monotonic() < deadline:
            if interrupt:
                for cur in self._cursors:
                    cur.interrupt()
            self._cond.wait(0.05)

    def _close_locked(self) -> None:
        import duckdb

        con, stack, self._stack, self._con, self.tip = self._con, self._stack, None, None, None
        try:
            if stack is not None:
                stack.close()
            elif con is not None:
                con.close()
        except duckdb.Error:  # a cursor still runs in a worker ("connection is busy"): it closes with it
            pass

    def _open_locked(self) -> duckdb.DuckDBPyConnection:
        if self._con is not None:
            self._check()
        if self._con is not None and self._stale:
            self._wait_for_cursors_locked(interrupt=False)  # a reload interrupts the long reads
            self._close_locked()
        if self._con is None:
            self.watcher.poll()  # the ref files' state before the cache's tip is checked
            self._con = self._connect()
            self._stale = False
            self.tip = _tip(self._con)
            self.watcher.tip = self.tip  # a ref moved since the poll above is seen next time
            self.opens += 1
        return self._con

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the current cache, opened through a hard link of its own.

        DuckDB shares one database per path within a process, so a connection held on
        `cache.duckdb` would make every other connect in this process to that path (the
        sweeps screen's `LedgerCache.connect`, for one) get the held, possibly old file: each
        would then find it stale and rebuild the cache in vain. Opened through a link (removed
        at once: the open file stays readable), the held database has a name of its own."""
        import duckdb

        cache = LedgerCache(self.repo)
        for _ in range(3):
            link = cache.path.with_name(f"{cache.path.name}.tui-{os.getpid()}-{next(_LINKS)}")
            try:
                os.link(cache.path, link)
            except FileNotFoundError:
                cache.refresh()
                continue
            except OSError:  # no hard links here: the shared name (and its caveat) it is
                break
            try:
                con = duckdb.connect(str(link), read_only=True)
            finally:
                link.unlink(missing_ok=True)
            try:
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            except duckdb.Error:
                meta = {}
            if meta.get("schema") == CACHE_SCHEMA and meta.get("tip") == (cache.store.tip() or ""):
                return con
            con.close()
            cache.refresh()
        self._stack = ExitStack()
        return self._stack.enter_context(cache.connect())

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the held connection, for one query (or a few) in one thread."""
        with self._cond:
            cur = self._open_locked().cursor()
            self._cursors.add(cur)
        try:
            cur.execute("SET enable_progress_bar = false")  # it would write over the screen
            yield cur
        finally:
            try:
                cur.close()
            finally:
                with self._cond:
                    self._cursors.discard(cur)
                    self._cond.notify_all()

    def close(self) -> None:
        """Close for good (the app exits): a query still running in a worker is interrupted."""
        with self._cond:
            self._wait_for_cursors_locked(interrupt=True)
            self._close_locked()


_HELD: dict[Path, HeldCache] = {}
_HELD_LOCK = threading.Lock()


def hold_cache(repo: Repo) -> HeldCache:
    """Keep one connection to `repo`'s cache for the queries that follow (the app, while it
    runs; the connection opens with the first query)."""
    held = HeldCache(repo)
    with _HELD_LOCK:
        _HELD[repo.root] = held
    return held


def release_cache(held: HeldCache) -> None:
    """Close the held connection (the app, when it exits)."""
    with _HELD_LOCK:
        if _HELD.get(held.repo.root) is held:
            del _HELD[held.repo.root]
    held.close()


def held_cache(repo: Repo) -> HeldCache | None:
    return _HELD.get(repo.root)


def cache_looks_current(repo: Repo) -> bool:
    """Whether a query can start at once, without reading new records into the cache first.
    With a held connection: a stat of the ref files; else a `git rev-parse` and the tip hint."""
    held = held_cache(repo)
    if held is not None and held.looks_current():
        return True
    return cache_is_current(repo)


@contextmanager
def open_cache(repo: Repo) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one query (or a few): a cursor of the held connection while
    the app holds one, else a connection of its own, closed at once."""
    held = held_cache(repo)
    if held is not None:
        with held.cursor() as cur:
            yield cur
        return
    with LedgerCache(repo).connect() as con:
        con.execute("SET enable_progress_bar = false")  # it would write over the screen
        yield con


def _one(con: duckdb.DuckDBPyConnection, sql: str, binds: Sequence[Any] = ()) -> Any:
    """The first row of a query (DuckDB wants every result read to its end)."""
    rows = con.execute(sql, list(binds)).fetchall()
    return rows[0] if rows else None


def _tip(con: duckdb.DuckDBPyConnection) -> str:
    row = _one(con, "SELECT value FROM meta WHERE key = 'tip'")
    return str(row[0]) if row and row[0] else ""


def read_info(con: duckdb.DuckDBPyConnection, tip: str) -> LedgerInfo:
    """Names for columns and the filter, from the cache's `names` table (no scan of the maps);
    which params differ, from one pass over the `params` view."""
    info = LedgerInfo(tip=tip)
    info.total = _one(con, "SELECT count(*) FROM runs")[0]
    names = con.execute("SELECT kind, name FROM names ORDER BY name").fetchall()
    info.metrics = [n for k, n in names if k == "metric"]
    info.params = [n for k, n in names if k == "param"]
    stats = {
        name: (distinct, runs)
        for name, distinct, runs in con.execute(
            "SELECT name, count(DISTINCT value), count(DISTINCT run_id) FROM params GROUP BY name"
        ).fetchall()
    }
    for key in info.params:
        # a key is `file:name` when a run has the name in two files (see the cache's run maps)
        distinct, runs = stats.get(key) or stats.get(key.rpartition(":")[2], (2, 0))
        if distinct > 1 or runs < info.total:
            info.differing.append(key)
    info.steps = [r[0] for r in con.execute("SELECT DISTINCT name FROM steps ORDER BY name").fetchall()]
    info.stages = dict(con.execute("SELECT stage, run_id FROM stages ORDER BY stage").fetchall())
    info.has_tags = bool(_one(con, "SELECT count(*) FROM tags")[0])
    return info


def default_metrics(info: LedgerInfo, directions: Callable[[str], str | None]) -> list[str]:
    """Metrics with a configured direction first, then by name."""
    ranked = sorted(info.metrics, key=lambda m: (directions(m) is None, info.metrics.index(m)))
    return ranked[:DEFAULT_METRIC_COLUMNS]


def build_columns(
    info: LedgerInfo, spec: ViewSpec, directions: Callable[[str], str | None], *, with_deltas: bool
) -> list[Column]:
    metrics = [m for m in (spec.metrics if spec.metrics is not None else default_metrics(info, directions))]
    metrics = [m for m in metrics if m in info.metrics]
    params = spec.params if spec.params is not None else info.differing[:DEFAULT_PARAM_COLUMNS]
    params = [p for p in params if p in info.params]
    columns: list[Column] = [Column("id", "id", "field", source=0)]
    source = 1
    for key, (label, _sql) in FIELD_COLUMNS.items():
        if key != "id":
            columns.append(Column(key, label, "field", source=source))
            source += 1
    for m in metrics:
        direction = directions(m)
        columns.append(Column(f"m:{m}", m, "metric", m, direction, source=source))
        if with_deltas:
            columns.append(Column(f"d:{m}", f"Δ{m}", "delta", m, direction, source=source))
        source += 1
    for p in params:
        columns.append(Column(f"p:{p}", p, "param", p, source=source))
        source += 1
    if info.has_tags:
        columns.append(Column("tags", "tags", "tags", source=source))
    return columns


def _select_list(columns: Sequence[Column], *, numbers: bool = False) -> tuple[str, list[Any]]:
    parts = ["run_id AS c0"]
    binds: list[Any] = []
    seen: set[int] = {0}
    for col in columns:
        if col.source in seen:
            continue
        seen.add(col.source)
        if col.kind == "field":
            parts.append(f"{FIELD_COLUMNS[col.key][1]} AS c{col.source}")
        elif col.kind == "metric":
            parts.append(f"metrics[?] AS c{col.source}")
            binds.append(col.name)
        elif col.kind == "param":
            parts.append(f"params[?] AS c{col.source}")
            binds.append(col.name)
        elif col.kind == "tags":
            parts.append(f"{TAGS_SQL} AS c{col.source}")
    if numbers:  # params also as numbers, after every shown column: sorting in memory orders them like SQL
        for col in columns:
            if col.kind == "param":
                parts.append(f"TRY_CAST(params[?] AS DOUBLE) AS n{col.source}")
                binds.append(col.name)
    return ", ".join(parts), binds


def order_clause(sort_key: str | None, descending: bool) -> tuple[str, list[Any]]:
    direction = "DESC" if descending else "ASC"
    tail = "coalesce(started, time) DESC, run_id"
    if not sort_key:
        return f"ORDER BY {tail}", []
    if sort_key in FIELD_COLUMNS:
        return f"ORDER BY {FIELD_COLUMNS[sort_key][1]} {direction} NULLS LAST, {tail}", []
    if sort_key == "tags":
        return f"ORDER BY {TAGS_SQL} {direction} NULLS LAST, {tail}", []
    kind, _, name = sort_key.partition(":")
    if kind in ("m", "d"):
        # numbers first (either way), then NaN (a diverged run is never best), then none
        return f"ORDER BY metrics[?] IS NULL, isnan(metrics[?]), metrics[?] {direction}, {tail}", [name, name, name]
    if kind == "p":
        # numbers by value, then text (a string key only where the value is not a number: cheaper)
        number = "TRY_CAST(params[?] AS DOUBLE)"
        return (
            f"ORDER BY {number} {direction} NULLS LAST, CASE WHEN {number} IS NULL THEN params[?] END {direction} "
            f"NULLS LAST, {tail}",
            [name, name, name],
        )
    return f"ORDER BY {tail}", []


def load_view(
    repo: Repo,
    spec: ViewSpec,
    directions: Callable[[str], str | None],
    *,
    known: LedgerInfo | None = None,
    keep: str | None = None,
    complete: bool | None = None,
    opened: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> ViewResult:
    """The runs table for `spec`: the ordered ids of every matching run, and the values of
    the first page and of the pages around run `keep` (where the cursor will stay).
    Raises FilterError for a filter that does not compile or run."""
    import duckdb

    started = time.perf_counter()
    with open_cache(repo) as con:
        if opened is not None:  # (who may interrupt the query)
            opened(con)
        tip = _tip(con)
        info = known if known is not None and known.tip == tip else read_info(con, tip)
        compiled: Compiled = compile_filter(spec.filter_text, info.names)
        baseline = _baseline(con, info, spec)
        columns = build_columns(info, spec, directions, with_deltas=baseline is not None)
        select, binds = _select_list(columns)
        where = f"WHERE {compiled.sql}" if compiled.sql else ""
        order, order_binds = order_clause(spec.sort_key, spec.descending)
        if complete is None:
            complete = info.total <= FULL_VIEW_RUNS
        shown, shown_binds = _select_list(columns, numbers=True) if complete else ("run_id", [])
        sql = f"SELECT {shown} FROM {compiled.source()} {where} {order}"
        try:
            binds_all = [*shown_binds, *compiled.join_binds, *compiled.binds, *order_binds]
            table = con.sql(sql, params=binds_all).to_arrow_table()
        except duckdb.Error as exc:
            prefix = "SQL" if compiled.raw else "filter"
            raise FilterError(f"{prefix}: {first_line(exc)}") from None
        result = ViewResult(
            spec, info, columns, table.column(0), {}, select, binds, baseline, table=table if complete else None
        )
        if not complete:
            wanted = {0}
            row = result.index_of(keep) if keep else None
            if row is not None:
                wanted |= {row // PAGE_ROWS + d for d in (-1, 0, 1)}
            result.pages = read_pages(con, result, wanted)
    result.seconds = time.perf_counter() - started
    return result


def sort_view(result: ViewResult, key: str, descending: bool) -> ViewResult | None:
    """A complete view in another order, sorted in memory (no query); None when the view is
    not complete or `key` is not one of its columns. Orders exactly like `order_clause`."""
    import pyarrow.compute as pc

    started = time.perf_counter()
    by_key = {c.key: c for c in result.columns}
    col = by_key.get(key)
    if result.table is None or col is None or "time" not in by_key:
        return None
    order = "descending" if descending else "ascending"
    keys: list[tuple[str, str]] = []
    if col.kind == "param":
        keys = [(f"n{col.source}", order), (f"c{col.source}", order)]
    else:
        keys = [(f"c{col.source}", order)]
    keys += [(f"c{by_key['time'].source}", "descending"), ("c0", "ascending")]
    table = result.table
    if col.kind == "param":  # text only where the value is not a number, as in the SQL
        import pyarrow as pa

        name = f"c{col.source}"
        text = table.column(name)
        text = pc.if_else(pc.is_valid(table.column(f"n{col.source}")), pa.scalar(None, text.type), text)
        table = table.set_column(table.schema.get_field_index(name), name, text)
    indices = pc.sort_indices(table, sort_keys=keys)  # nulls and NaN last, as in the SQL
    table = result.table.take(indices)
    spec = ViewSpec(**{**result.spec.__dict__, "sort_key": key, "descending": descending})
    return ViewResult(
        spec,
        result.info,
        result.columns,
        table.column(0),
        {},
        result.select,
        result.select_binds,
        result.baseline,
        time.perf_counter() - started,
        table=table,
    )


def complete_view(
    repo: Repo,
    result: ViewResult,
    directions: Callable[[str], str | None],
    opened: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> pyarrow.Table | None:
    """Every row's values for a paged view (read while the user looks at it, so that a sort
    then reorders them in memory); None when the ledger moved meanwhile."""
    import pyarrow.compute as pc

    full = load_view(repo, result.spec, directions, known=result.info, complete=True, opened=opened)
    if full.table is None or full.count != result.count or not pc.all(pc.equal(full.ids, result.ids)).as_py():
        return None
    return full.table


def read_pages(con: duckdb.DuckDBPyConnection, result: ViewResult, numbers: Iterable[int]) -> dict[int, list[Row]]:
    """The rows of some pages of a view, by run id, in the view's order. A run that is gone
    from the cache since (redacted) reads as its id with no values."""
    last = (result.count - 1) // PAGE_ROWS
    pages = {n: result.page_ids(n) for n in sorted(set(numbers)) if 0 <= n <= last}
    wanted = [r for ids in pages.values() for r in ids]
    if not wanted:
        return {n: [] for n in pages}
    sql = f"SELECT {result.select} FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))"
    cur = con.execute(sql, [*result.select_binds, wanted])
    found: dict[str, Row] = {str(r[0]): r for r in cur.fetchall()}
    width = len(cur.description or []) or 1
    empty = (None,) * (width - 1)
    return {n: [found.get(r) or (r, *empty) for r in ids] for n, ids in pages.items()}


def load_pages(repo: Repo, result: ViewResult, numbers: Iterable[int]) -> dict[int, list[Row]]:
    """More rows of a view, for the pages that scrolled into sight (a worker calls this)."""
    with open_cache(repo) as con:
        return read_pages(con, result, numbers)


def load_rows(repo: Repo, result: ViewResult) -> list[Row]:
    """Every row of a view, in its order (for export)."""
    import pyarrow as pa

    if result.table is not None:
        return [r for n in range((result.count + PAGE_ROWS - 1) // PAGE_ROWS) for r in result.page(n) or []]

    order = pa.table({"_rid": result.ids, "_pos": pa.array(range(result.count), pa.int64())})
    with open_cache(repo) as con:
        con.register("_view_ids", order)
        try:
            sql = f"""SELECT {result.select} FROM runs JOIN _view_ids v ON v._rid = runs.run_id
                      ORDER BY v._pos"""
            return [tuple(r) for r in con.execute(sql, result.select_binds).fetchall()]
        finally:
            con.unregister("_view_ids")


def _baseline(con: duckdb.DuckDBPyConnection, info: LedgerInfo, spec: ViewSpec) -> Baseline | None:
    run_id, how = (spec.baseline, "pinned") if spec.baseline else (info.stages.get(BASELINE_STAGE), BASELINE_STAGE)
    if not run_id:
        return None
    row = _one(
        con, "SELECT metrics, coalesce(name, split_part(message, chr(10), 1)) FROM runs WHERE run_id = ?", [run_id]
    )
    if row is None:
        return None
    return Baseline(run_id, how, row[1] or "", dict(row[0] or {}))


# --------------------------------------------------------------------------- one run


@dataclass
class MetricRow:
    file: str
    name: str
    value: float | None
    steps: int = 0
    low: float | None = None
    low_step: int | None = None
    high: float | None = None
    high_step: int | None = None
    last_step: int | None = None


@dataclass
class RunDetail:
    run: dict[str, Any]
    params: list[tuple[str, str, str]]  # file, name, value
    metrics: list[MetricRow]
    series: dict[str, list[tuple[int, float]]]  # series name -> (step, value), by step
    tags: list[str]
    notes: list[tuple[str, Any, str]]  # note id, time, text
    stages: list[str]
    datasets: dict[str, Any]
    deps: dict[str, Any]
    warnings: list[str]
    validations: list[Validation]

    def value_at(self, name: str, step: int) -> float | None:
        for s, v in self.series.get(name, []):
            if s == step:
                return v
        return None


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def load_detail(repo: Repo, run_id: str) -> RunDetail | None:
    with open_cache(repo) as con:
        found = _rows(con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]))
        if not found:
            return None
        run = found[0]
        params = [
            (f, n, v)
            for f, n, v in con.execute(
                "SELECT file, name, value FROM params WHERE run_id = ? ORDER BY name, file", [run_id]
            ).fetchall()
        ]
        stats = {
            (f, n): r
            for f, n, *r in con.execute(
                """SELECT file, name, count(*), min(value), arg_min(step, value), max(value), arg_max(step, value),
                          max(step)
                   FROM steps WHERE run_id = ? GROUP BY file, name""",
                [run_id],
            ).fetchall()
        }
        by_name: dict[str, list[Any]] = {}
        for (_f, n), r in stats.items():
            by_name.setdefault(n, r)
        metrics: list[MetricRow] = []
        for f, n, v in con.execute(
            "SELECT file, name, value FROM metrics WHERE run_id = ? ORDER BY name, file", [run_id]
        ).fetchall():
            st = by_name.get(n)
            row = MetricRow(f, n, v)
            if st:
                row.steps, row.low, row.low_step, row.high, row.high_step, row.last_step = st
            metrics.append(row)
        series: dict[str, list[tuple[int, float]]] = {}
        for n, s, v in con.execute(
            "SELECT name, step, value FROM steps WHERE run_id = ? ORDER BY name, step", [run_id]
        ).fetchall():
            series.setdefault(n, []).append((s, v))
        notes = [
            (i, t, x)
            for i, t, x in con.execute(
                "SELECT id, time, text FROM notes WHERE run_id = ? ORDER BY time, id", [run_id]
            ).fetchall()
        ]
        stages = [
            r[0] for r in con.execute("SELECT stage FROM stages WHERE run_id = ? ORDER BY stage", [run_id]).fetchall()
        ]
        datasets = _json_obj(run.get("datasets"))
        validations = _validations(con, datasets, run.get("commit"))
    return RunDetail(
        run=run,
        params=params,
        metrics=metrics,
        series=series,
        tags=list(run.get("tags") or []),
        notes=notes,
        stages=stages,
        datasets=datasets,
        deps=_json_obj(run.get("deps")),
        warnings=[str(w) for w in _json_list(run.get("warnings"))],
        validations=validations,
    )


@dataclass
class Validation:
    """One `validation` event (mlci data validate, the hooks): what a dataset's content passed."""

    id: str
    time: Any
    dataset: str
    path: str
    content_hash: str
    rev: str
    status: str  # pass, warn, fail, error, unavailable
    rows: int | None
    error: str | None
    checks: list[dict[str, Any]]  # check, column, status, severity, failures, rows, params, message
    warnings: list[str]

    @property
    def problems(self) -> list[dict[str, Any]]:
        """The checks that did not pass (nor were skipped)."""
        return [c for c in self.checks if c.get("status") in ("fail", "warn")]


def digest_of(content_hash: str) -> str:
    """`blake3:ab12…` and `ab12…` name the same content."""
    head, sep, rest = content_hash.partition(":")
    return rest if sep and head and all(c.isalnum() or c in "_-" for c in head) else content_hash


VALIDATION_COLUMNS = "id, time, dataset, path, content_hash, rev, status, rows, error, checks, warnings"


def _validations(con: duckdb.DuckDBPyConnection, datasets: dict[str, Any], commit: str | None) -> list[Validation]:
    """Validations of the run's datasets (by content hash, wherever they ran) and those made
    at the run's commit, newest first. Over the `validations` view, or straight over the
    validation events in a cache that predates it."""
    hashes = sorted({digest_of(h) for h in datasets.values() if isinstance(h, str) and h})
    if not hashes and not commit:
        return []
    # runs record a bare digest, validations `algo:digest`: compare the digests
    where = "list_contains(?, regexp_replace(content_hash, '^[A-Za-z0-9_-]+:', '')) OR (? IS NOT NULL AND rev = ?)"
    binds: list[Any] = [hashes, commit, commit]
    has_view = _one(con, "SELECT count(*) FROM duckdb_views() WHERE view_name = 'validations'")
    if has_view and has_view[0]:
        sql = f"SELECT {VALIDATION_COLUMNS} FROM validations WHERE {where} ORDER BY time DESC, id"
    else:
        sql = f"""SELECT {VALIDATION_COLUMNS} FROM (
                SELECT id, time, body->>'dataset' AS dataset, body->>'path' AS path,
                       body->>'content_hash' AS content_hash, body->>'rev' AS rev, body->>'status' AS status,
                       TRY_CAST(body->>'rows' AS BIGINT) AS rows, body->>'error' AS error,
                       body->'checks' AS checks, body->'warnings' AS warnings
                FROM events WHERE type = 'validation') WHERE {where} ORDER BY time DESC, id"""
    out = []
    for r in con.execute(sql, binds).fetchall():
        row = dict(zip(VALIDATION_COLUMNS.split(", "), r))
        out.append(
            Validation(
                id=str(row["id"]),
                time=row["time"],
                dataset=str(row["dataset"] or ""),
                path=str(row["path"] or ""),
                content_hash=str(row["content_hash"] or ""),
                rev=str(row["rev"] or ""),
                status=str(row["status"] or ""),
                rows=row["rows"],
                error=row["error"],
                checks=[c for c in _json_list(row["checks"]) if isinstance(c, dict)],
                warnings=[str(w) for w in _json_list(row["warnings"])],
            )
        )
    return out


def _json_obj(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else (text or {})
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else (text or [])
    except ValueError:
        return []
    return value if isinstance(value, list) else []


# --------------------------------------------------------------------------- compare


@dataclass
class CompareRow:
    section: str  # run, param, metric
    name: str
    values: list[Any]
    direction: str | None = None

    @property
    def differs(self) -> bool:
        return len({json.dumps(v, default=str) for v in self.values}) > 1


@dataclass
class CompareResult:
    runs: list[dict[str, Any]]  # run_id, label
    rows: list[CompareRow]


COMPARE_FIELDS = ["kind", "status", "branch", "commit", "subject", "time", "author"]


def load_compare(repo: Repo, run_ids: Sequence[str], directions: Callable[[str], str | None]) -> CompareResult:
    with open_cache(repo) as con:
        found = {
            r["run_id"]: r
            for r in _rows(
                con.execute(
                    """SELECT run_id, kind, status, branch, commit, coalesce(name, split_part(message, chr(10), 1))
                              AS subject, coalesce(started, time) AS time, author, params, metrics
                       FROM runs WHERE list_contains(?, run_id)""",
                    [list(run_ids)],
                )
            )
        }
    runs = [found[r] for r in run_ids if r in found]
    rows: list[CompareRow] = []
    for f in COMPARE_FIELDS:
        values = [r.get(f) for r in runs]
        if f == "commit":
            values = [(v or "")[:12] or None for v in values]
        rows.append(CompareRow("run", f, values))
    param_names = sorted({k for r in runs for k in (r["params"] or {})})
    for p in param_names:
        rows.append(CompareRow("param", p, [(r["params"] or {}).get(p) for r in runs]))
    metric_names = sorted({k for r in runs for k in (r["metrics"] or {})})
    for m in metric_names:
        rows.append(CompareRow("metric", m, [(r["metrics"] or {}).get(m) for r in runs], directions(m)))
    return CompareResult([{"run_id": r["run_id"], "label": r["subject"] or ""} for r in runs], rows)


# --------------------------------------------------------------------------- plots


@dataclass
class Series:
    run_id: str
    label: str
    x: list[float]
    y: list[float]
    ticks: list[str] = field(default_factory=list)


def load_step_series(repo: Repo, run_ids: Sequence[str], metric: str) -> list[Series]:
    with open_cache(repo) as con:
        labels = dict(
            con.execute(
                "SELECT run_id, coalesce(name, split_part(message, chr(10), 1)) FROM runs WHERE list_contains(?, run_id)",
                [list(run_ids)],
            ).fetchall()
        )
        rows = con.execute(
            """SELECT run_id, step, value FROM steps WHERE list_contains(?, run_id) AND name = ?
               AND value IS NOT NULL AND isfinite(value) ORDER BY run_id, step""",
            [list(run_ids), metric],
        ).fetchall()
    out: dict[str, Series] = {}
    for rid, step, value in rows:
        s = out.setdefault(rid, Series(rid, labels.get(rid) or "", [], []))
        s.x.append(float(step))
        s.y.append(float(value))
    return [out[r] for r in run_ids if r in out]


def series_coverage(repo: Repo, run_ids: Sequence[str]) -> dict[str, int]:
    """For each step series name: how many of the runs have it."""
    with open_cache(repo) as con:
        rows = con.execute(
            "SELECT name, count(DISTINCT run_id) FROM steps WHERE list_contains(?, run_id) GROUP BY name",
            [list(run_ids)],
        ).fetchall()
    return {str(n): int(c) for n, c in rows}


def load_commit_series(repo: Repo, metric: str, limit: int = 200) -> Series | None:
    """The metric along the first-parent history of HEAD (oldest first)."""
    proc = repo.run("rev-list", "--first-parent", f"--max-count={limit}", "HEAD", "--", check=False)
    shas = proc.stdout.decode().split() if proc.returncode == 0 else []
    with open_cache(repo) as con:
        if shas:
            rows = con.execute(
                """SELECT commit, arg_max(metrics[?], coalesce(started, time)) FROM runs
                   WHERE list_contains(?, commit) AND metrics[?] IS NOT NULL GROUP BY commit""",
                [metric, shas, metric],
            ).fetchall()
            values = dict(rows)
            ordered = [(sha, values[sha]) for sha in reversed(shas) if sha in values]
        else:
            ordered = [
                (c, v)
                for c, v in con.execute(
                    """SELECT commit, metrics[?] FROM runs WHERE kind = 'commit' AND metrics[?] IS NOT NULL
                       ORDER BY coalesce(started, time) LIMIT ?""",
                    [metric, metric, limit],
                ).fetchall()
            ]
    ordered = [(c, v) for c, v in ordered if v is not None and v == v and abs(v) != float("inf")]
    if not ordered:
        return None
    return Series(
        "", metric, [float(i) for i in range(len(ordered))], [float(v) for _, v in ordered], [c[:7] for c, _ in ordered]
    )


def load_scatter(repo: Repo, param: str, metric: str, filter_text: str, info: LedgerInfo) -> Series:
    compiled = compile_filter(filter_text, info.names)
    where = f"AND {compiled.sql}" if compiled.sql else ""
    with open_cache(repo) as con:
        rows = con.execute(
            f"""SELECT TRY_CAST(params[?] AS DOUBLE) AS x, metrics[?] AS y FROM {compiled.source()}
                WHERE x IS NOT NULL AND y IS NOT NULL AND isfinite(y) AND isfinite(x) {where}""",
            [param, metric, *compiled.join_binds, *compiled.binds],
        ).fetchall()
    return Series("", f"{metric} by {param}", [float(x) for x, _ in rows], [float(y) for _, y in rows])


# --------------------------------------------------------------------------- writes


def add_note(repo: Repo, run_id: str, text: str, replaces: str | None = None) -> str:
    """A note as a ledger event; editing one writes the new text and a tombstone for the old."""
    from mlci_tui.ledger import events

    batch = [events.note(run_id, text)]
    if replaces:
        batch.append(events.redact(replaces, "note edited in mlci tui"))
    return LedgerStore(repo).append(batch, message="mlci tui: note")


def add_tag(repo: Repo, run_id: str, name: str, *, remove: bool = False) -> str:
    from mlci_tui.ledger import events

    return LedgerStore(repo).append([events.tag(run_id, name, remove=remove)], message="mlci tui: tag")


# --------------------------------------------------------------------------- settings


def settings_path(repo: Repo) -> Path:
    return repo.state_dir / SETTINGS_FILE


def load_settings(repo: Repo) -> dict[str, Any]:
    try:
        data = json.loads(settings_path(repo).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(repo: Repo, settings: dict[str, Any]) -> None:
    path = settings_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- ledger tip


class TipWatcher:
    """Notices a moved ledger ref cheaply: stat the ref files, ask git only when they change.

    A full `rev-parse` also runs every `recheck` seconds, for ref stores we cannot stat.
    """

    def __init__(self, repo: Repo, recheck: float = 10.0) -> None:
        self.store = LedgerStore(repo)
        common = repo.common_dir
        self.paths = [
            common / self.store.ref,
            common / "packed-refs",
            common / "reftable" / "tables.list",
        ]
        self.recheck = recheck
        self._signature: tuple[Any, ...] | None = None
        self._checked = 0.0
        self.tip: str | None = None

    def _stat(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for p in self.paths:
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def poll(self) -> str | None:
        """The tip when it changed since the last poll (the first poll reads it), else None."""
        sig = self._stat()
        now = time.monotonic()
        if sig == self._signature and now - self._checked < self.recheck:
            return None
        self._signature = sig
        self._checked = now
        tip = self.store.tip() or ""
        if tip != self.tip:
            self.tip = tip
            return tip
        return None
