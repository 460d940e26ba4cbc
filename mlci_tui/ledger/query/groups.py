"""Groups of repeats: the done runs of one commit whose params are equal apart from the seed.

One rule for the gate (a baseline or a candidate expands to its group), `mlci diff`,
`mlci runs --groups` and the TUI (the grouped runs table, a run's and a comparison's groups): runs of any kind count (commit capture, `record --repeat`, ci, bisect),
and `train.repeats.seed_param` is the one param allowed to differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.rows import dict_rows
from mlci_tui.ledger.query.run import Run

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.config import Config
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.query.runs_view import ViewResult


@dataclass
class Group:
    """A run and its repeats (the run itself first)."""

    runs: list[Run]

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, name: str) -> list[float]:
        """The finite values of a metric over the group's runs (plain or `file:name`)."""
        found = (r.metric(name) for r in self.runs)
        return [v for v in found if v is not None and math.isfinite(v)]

    def metric_names(self) -> list[str]:
        return sorted({k for r in self.runs for k in r.metrics})

    def summary(self, name: str) -> tuple[float, float, int] | None:
        """(mean, sd, n) of a metric over the group; None unless it has two values or more."""
        values = self.values(name)
        return spread(values) if len(values) > 1 else None

    def means(self) -> dict[str, float]:
        """The first run's metrics, each replaced by the group's mean where the group has repeats of it."""
        means = dict(self.runs[0].metrics)
        for name in self.metric_names() if self.n > 1 else ():
            found = self.summary(name)
            if found is not None:
                means[name] = found[0]
        return means


def spread(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and n: a group shown as `mean ± sd (n)`."""
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd, n


def _is_seed(key: str, seed_param: str | None) -> bool:
    return bool(seed_param) and (key == seed_param or key.endswith(f":{seed_param}"))


def group_key(run: Run, seed_param: str | None) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What repeats share: the commit and the params less the seed (None: a run with no commit is alone)."""
    if not run.commit:
        return None
    params = tuple(sorted((k, v) for k, v in run.params.items() if not _is_seed(k, seed_param)))
    return run.commit, params


def group_of(con: duckdb.DuckDBPyConnection, run: Run, seed_param: str | None) -> Group:
    """`run` and the done runs of its commit that are its repeats, oldest first after it."""
    key = group_key(run, seed_param)
    if key is None:
        return Group([run])
    rows = dict_rows(
        con.execute(
            "SELECT * FROM runs WHERE commit = ? AND status = 'done' AND run_id <> ? ORDER BY time, run_id",
            [run.commit, run.run_id],
        )
    )
    others = [r for r in map(Run.from_row, rows) if group_key(r, seed_param) == key]
    return Group([run, *others])


def group_runs(runs: Iterable[Run], seed_param: str | None) -> list[Group]:
    """Runs already loaded (a listing), gathered into groups in the order their first run comes."""
    groups: dict[object, Group] = {}
    for run in runs:
        key = group_key(run, seed_param) if run.status in ("done", None) else None
        found = groups.get(key) if key is not None else None
        if found is None:
            groups[key if key is not None else ("alone", run.run_id)] = Group([run])
        else:
            found.runs.append(run)
    return list(groups.values())


# ---------------------------------------------------------------- the TUI's shapes


@dataclass
class ViewGroups:
    """A runs view folded into its groups: the row of each group's first run (in the view's order)
    stands for the group, and the baseline's group is named (its row, and its means for the Δ columns)."""

    by_row: dict[str, Group]  # the row's run id -> its group
    baseline_row: str | None = None  # the row whose group holds the baseline (None: filtered out, or none)
    baseline_means: dict[str, float] | None = None  # the baseline's group's means

    def group(self, run_id: str) -> Group | None:
        return self.by_row.get(run_id)

    @property
    def runs(self) -> int:
        return sum(g.n for g in self.by_row.values())


def load_groups(repo: Repo, run_ids: Sequence[str], seed_param: str | None) -> dict[str, Group]:
    """Each run's group (`group_of`), read in one connection: the TUI's run and compare screens."""
    with open_cache(repo) as con:
        rows = dict_rows(con.execute("SELECT * FROM runs WHERE list_contains(?, run_id)", [list(run_ids)]))
        return {r.run_id: group_of(con, r, seed_param) for r in map(Run.from_row, rows)}


def fold_view(repo: Repo, result: ViewResult, cfg: Config) -> ViewResult:
    """The runs view with one row per group (`group_runs`, like `mlci runs --groups`): the group's
    first run in the view's order stands for it, its metric columns hold the group's means (so a
    sort orders groups by their means), and `groups` carries the groups for `mean ± sd (n)`.

    Reads every row's values (a paged view is completed first) and each run's commit, status and
    maps: the cost of a toggle the user asked for, never of the ungrouped view."""
    import pyarrow as pa

    from mlci_tui.ledger.query.runs_view import ViewResult, load_view

    seed = cfg.section("train")["repeats"]["seed_param"]
    table = result.table
    if table is None:
        table = load_view(repo, result.spec, cfg, known=result.info, complete=True).table
    assert table is not None
    ids = [str(r) for r in table.column(0).to_pylist()]
    with open_cache(repo) as con:
        rows = con.execute(
            "SELECT run_id, commit, status, params, metrics FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
            [ids],
        ).fetchall()
        # what `group_key` reads, built directly (Run.from_row's general path was half the fold's time)
        found = {r: Run(r, commit=c, status=st, params=dict(p or {}), metrics=dict(m or {})) for r, c, st, p, m in rows}
        base = None
        if result.baseline is not None and result.baseline.run_id in found:
            base = group_of(con, found[result.baseline.run_id], seed)
        elif result.baseline is not None:
            named = dict_rows(con.execute("SELECT * FROM runs WHERE run_id = ?", [result.baseline.run_id]))
            base = group_of(con, Run.from_row(named[0]), seed) if named else None
    position = {run_id: n for n, run_id in enumerate(ids)}
    groups = group_runs((found.get(r) or Run(r) for r in ids), seed)
    keep = [position[g.runs[0].run_id] for g in groups]
    folded = table.take(pa.array(keep, pa.int64()))
    for col in result.columns:
        if col.kind != "metric":
            continue
        name = f"c{col.source}"
        values = folded.column(name).to_pylist()
        for n, group in enumerate(groups):
            found_summary = group.summary(col.name) if group.n > 1 else None
            if found_summary is not None:
                values[n] = found_summary[0]
        index = folded.schema.get_field_index(name)
        folded = folded.set_column(index, name, pa.array(values, folded.schema.field(index).type))
    base_ids = {r.run_id for r in base.runs} if base is not None else set()
    by_row = {g.runs[0].run_id: g for g in groups}
    view = ViewGroups(
        by_row,
        next((row for row, g in by_row.items() if base_ids & {r.run_id for r in g.runs}), None),
        base.means() if base is not None else None,
    )
    return ViewResult(
        result.spec,
        result.info,
        result.columns,
        folded.column(0),
        {},
        result.select,
        result.select_binds,
        result.baseline,
        result.seconds,
        table=folded,
        groups=view,
    )
