"""The runs view: the ordered ids of every run a filter matches, and their values page by page.

The TUI's runs table reads it; so can any front end that shows runs a screenful at a time.
A view of a small ledger reads every matching row's values in one query (and a sort then
reorders them in memory, in the order `sort.order_by` gives in SQL); above FULL_VIEW_RUNS,
it reads the ordered ids and the pages in sight, and further pages by run id as they
scroll into sight (`load_pages`), so filtering or sorting 100,000 runs never moves 100,000
rows of values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlci_tui.config import Config
from mlci_tui.errors import MlciError, first_line
from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import Interruptible, open_cache
from mlci_tui.ledger.query.baseline import DEFAULT_STAGE, resolve_baseline
from mlci_tui.ledger.query.filter import Compiled, FilterError, Names, compile_filter
from mlci_tui.ledger.query.names import plain_name
from mlci_tui.ledger.query.rows import cache_tip, first_row
from mlci_tui.ledger.query.sort import FIELD_SQL, TAGS_SQL, SortKey, order_by
from mlci_tui.sql_guard import guard

if TYPE_CHECKING:
    import duckdb
    import pyarrow

    from mlci_tui.ledger.query.groups import ViewGroups

PAGE_ROWS = 128  # rows read from DuckDB at a time

# Up to this many runs in the ledger, a view reads every matching row's values in one query
# (and a sort reorders them in memory); above it, the ordered ids and the pages in sight,
# then the rest of the values in the background, COMPLETE_AFTER seconds after the view is
# shown (interrupted by the next action), so that a sort is in memory again.
FULL_VIEW_RUNS = 20_000
COMPLETE_AFTER = 0.1
DEFAULT_METRIC_COLUMNS = 8
DEFAULT_PARAM_COLUMNS = 8


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
    how: str  # "pinned", "gate.baseline" or the stage name (`baseline.resolve_baseline` chose it)
    label: str
    metrics: dict[str, float]


@dataclass
class ViewSpec:
    filter_text: str = ""
    sort_key: str | None = None  # a Column key; None = newest first
    descending: bool = True
    baseline: str | None = None  # a pinned run id; None = the gate's baseline (gate.baseline, else `deployed`)
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
    # `Column.source`, then `recorded` and n<source> (the record time and each param as a
    # number: what sorting in memory needs to order rows as `sort.order_by` does)
    table: pyarrow.Table | None = None
    groups: ViewGroups | None = None  # folded into groups of repeats (`groups.fold_view`): one row a group

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


def read_info(con: duckdb.DuckDBPyConnection, tip: str) -> LedgerInfo:
    """Names for columns and the filter, from the cache's `names` table (no scan of the maps);
    which params differ, from one pass over the `params` view."""
    info = LedgerInfo(tip=tip)
    info.total = first_row(con, "SELECT count(*) FROM runs")[0]
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
        distinct, runs = stats.get(plain_name(key, set(stats)), (2, 0))
        if distinct > 1 or runs < info.total:
            info.differing.append(key)
    info.steps = [r[0] for r in con.execute("SELECT DISTINCT name FROM steps ORDER BY name").fetchall()]
    info.stages = dict(con.execute("SELECT stage, run_id FROM stages ORDER BY stage").fetchall())
    info.has_tags = bool(first_row(con, "SELECT count(*) FROM tags")[0])
    return info


def metric_priority(
    metrics: Sequence[str], directions: Callable[[str], str | None], gated: Sequence[str] = ()
) -> list[str]:
    """The order listings show metrics in, the TUI and `mlci runs` alike: the metrics the gate
    checks first (what a narrow table keeps in sight), then those with a configured direction,
    then as given."""
    order = {m: n for n, m in enumerate(metrics)}
    return sorted(metrics, key=lambda m: (m not in gated, directions(m) is None, order[m]))


def default_metrics(info: LedgerInfo, directions: Callable[[str], str | None], gated: Sequence[str] = ()) -> list[str]:
    return metric_priority(info.metrics, directions, gated)[:DEFAULT_METRIC_COLUMNS]


def build_columns(
    info: LedgerInfo,
    spec: ViewSpec,
    directions: Callable[[str], str | None],
    *,
    with_deltas: bool,
    gated: Sequence[str] = (),
) -> list[Column]:
    chosen = spec.metrics if spec.metrics is not None else default_metrics(info, directions, gated)
    metrics = [m for m in chosen if m in info.metrics]
    params = spec.params if spec.params is not None else info.differing[:DEFAULT_PARAM_COLUMNS]
    params = [p for p in params if p in info.params]
    columns: list[Column] = [Column("id", "id", "field", source=0)]
    source = 1
    for key in FIELD_SQL:
        if key != "id":
            columns.append(Column(key, key, "field", source=source))
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
            parts.append(f"{FIELD_SQL[col.key]} AS c{col.source}")
        elif col.kind == "metric":
            parts.append(f"metrics[?] AS c{col.source}")
            binds.append(col.name)
        elif col.kind == "param":
            parts.append(f"params[?] AS c{col.source}")
            binds.append(col.name)
        elif col.kind == "tags":
            parts.append(f"{TAGS_SQL} AS c{col.source}")
    if numbers:  # what sorting in memory needs to order rows like SQL: params as numbers, the record time
        parts.append("time AS recorded")
        for col in columns:
            if col.kind == "param":
                parts.append(f"TRY_CAST(params[?] AS DOUBLE) AS n{col.source}")
                binds.append(col.name)
    return ", ".join(parts), binds


def load_view(
    repo: Repo,
    spec: ViewSpec,
    cfg: Config,
    *,
    known: LedgerInfo | None = None,
    keep: str | None = None,
    complete: bool | None = None,
    opened: Callable[[Interruptible], None] | None = None,
) -> ViewResult:
    """The runs table for `spec`: the ordered ids of every matching run, and the values of
    the first page and of the pages around run `keep` (where the cursor will stay).
    Raises FilterError for a filter that does not compile or run."""
    import duckdb

    started = time.perf_counter()
    with open_cache(repo) as con:
        if opened is not None:  # (who may interrupt the query)
            opened(con)
        tip = cache_tip(con)
        info = known if known is not None and known.tip == tip else read_info(con, tip)
        compiled: Compiled = compile_filter(spec.filter_text, info.names)
        baseline = _baseline(repo, con, cfg, spec, info)
        gated = cfg.gated_metrics()
        columns = build_columns(info, spec, cfg.direction, with_deltas=baseline is not None, gated=gated)
        select, binds = _select_list(columns)
        where = f"WHERE {compiled.sql}" if compiled.sql else ""
        order, order_binds = order_by(sort_key_of(spec.sort_key, spec.descending))
        if complete is None:
            complete = info.total <= FULL_VIEW_RUNS
        shown, shown_binds = _select_list(columns, numbers=True) if complete else ("run_id", [])
        sql = f"SELECT {shown} FROM {compiled.source()} {where} {order}"
        if compiled.raw:  # the user's SQL: one SELECT as it runs, on a locked-down connection
            try:
                guard(con, sql, what="SQL")
            except MlciError as exc:
                raise FilterError(str(exc)) from None
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
    not complete or `key` is not one of its columns. Orders exactly like `sort.order_by`."""
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
    if col.key == "time":
        keys.append(("recorded", order))
    else:
        keys += [(f"c{by_key['time'].source}", "descending"), ("recorded", "descending")]
    keys.append(("c0", "ascending"))
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
        groups=result.groups,
    )


def complete_view(
    repo: Repo,
    result: ViewResult,
    cfg: Config,
    opened: Callable[[Interruptible], None] | None = None,
) -> pyarrow.Table | None:
    """Every row's values for a paged view (read while the user looks at it, so that a sort
    then reorders them in memory); None when the ledger moved meanwhile."""
    import pyarrow.compute as pc

    full = load_view(repo, result.spec, cfg, known=result.info, complete=True, opened=opened)
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


def _baseline(
    repo: Repo, con: duckdb.DuckDBPyConnection, cfg: Config, spec: ViewSpec, info: LedgerInfo
) -> Baseline | None:
    """A pinned run, else the baseline `mlci gate` would use (`baseline.resolve_baseline`): Δ columns and the gate agree."""
    if spec.baseline:
        run_id, how = spec.baseline, "pinned"
    else:
        try:
            resolved = resolve_baseline(repo, con, cfg, None, stages=info.stages)
        except MlciError:  # a gate.baseline that names nothing: no Δ columns, as with no baseline
            return None
        if resolved is None:
            return None
        run_id, how = resolved.run_id, ("gate.baseline" if cfg.section("gate")["baseline"] else DEFAULT_STAGE)
    row = first_row(
        con, "SELECT metrics, coalesce(name, split_part(message, chr(10), 1)) FROM runs WHERE run_id = ?", [run_id]
    )
    if row is None:
        return None
    return Baseline(run_id, how, row[1] or "", dict(row[0] or {}))


def sort_key_of(column_key: str | None, descending: bool) -> SortKey | None:
    """The sort of a runs-table column (`m:acc`, `d:acc`, `p:lr`, `tags`, a field)."""
    if not column_key:
        return None
    if column_key in FIELD_SQL:
        return SortKey("field", column_key, descending)
    if column_key == "tags":
        return SortKey("tags", column_key, descending)
    kind, _, name = column_key.partition(":")
    if kind in ("m", "d"):
        return SortKey("metric", name, descending)
    if kind == "p":
        return SortKey("param", name, descending)
    return None
