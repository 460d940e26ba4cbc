"""Groups of repeats: the done runs of one commit whose params are equal apart from the seed.

One rule for the gate (a baseline or a candidate expands to its group), `mlci diff` and
`mlci runs --groups`: runs of any kind count (commit capture, `record --repeat`, ci, bisect),
and `train.repeats.seed_param` is the one param allowed to differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlci_tui.ledger.query.rows import dict_rows
from mlci_tui.ledger.query.run import Run

if TYPE_CHECKING:
    import duckdb


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
