"""Two runs side by side: load them from the cache, find the baseline, diff params and metrics.

Shared by `mlci diff`, `mlci gate` and reports, so every comparison resolves baselines and
names the same way (DESIGN.md Contracts: baseline order; `file:name` for ambiguous names).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlci_tui.config import Config
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.ledger.resolve import Resolved, resolve_run
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    import duckdb


@dataclass
class RunData:
    run_id: str
    fields: dict[str, Any]
    params: dict[str, str]  # map keys as in the `runs` view: plain, or file:name where ambiguous
    metrics: dict[str, float]
    datasets: dict[str, str] = field(default_factory=dict)
    how: str = "id"  # how the reference was resolved

    @property
    def label(self) -> str:
        commit = (self.fields.get("commit") or "")[:8]
        return f"{self.run_id[:8]}" + (f" ({commit})" if commit else "")


def load_run(con: duckdb.DuckDBPyConnection, resolved: Resolved) -> RunData:
    cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [resolved.run_id])
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    if row is None:
        raise InputError(f"run {resolved.run_id} is not in the ledger")
    fields = dict(zip(names, row))
    datasets = json.loads(fields.get("datasets") or "{}")
    return RunData(
        run_id=resolved.run_id,
        fields=fields,
        params=dict(fields.pop("params") or {}),
        metrics=dict(fields.pop("metrics") or {}),
        datasets=datasets if isinstance(datasets, dict) else {},
        how=resolved.how,
    )


def resolve_baseline(repo: Repo, con: duckdb.DuckDBPyConnection, cfg: Config, base: str | None) -> Resolved | None:
    """`--base`, then `gate.baseline`, then the stage `deployed` if anything was promoted to it."""
    if base:
        return resolve_run(repo, con, base)
    configured = cfg.section("gate")["baseline"]
    if configured:
        return resolve_run(repo, con, configured)
    row = con.execute("SELECT run_id FROM stages WHERE stage = 'deployed'").fetchone()
    return Resolved(row[0], "stage") if row else None


def metric_value(run: RunData, name: str) -> float | None:
    """One metric by plain or `file:name`; a plain name present in two files is an error."""
    if name in run.metrics:
        return run.metrics[name]
    qualified = [k for k in run.metrics if k.endswith(f":{name}")]
    if len(qualified) > 1:
        files = ", ".join(k[: -len(name) - 1] for k in qualified)
        raise InputError(f"metric {display(name)!r} is in several files ({display(files)}); name one as file:{name}")
    return run.metrics[qualified[0]] if qualified else None


@dataclass
class Change:
    name: str
    base: Any
    head: Any

    @property
    def delta(self) -> float | None:
        numbers = isinstance(self.base, (int, float)) and isinstance(self.head, (int, float))
        if numbers and math.isfinite(self.base) and math.isfinite(self.head):
            return self.head - self.base
        return None

    @property
    def pct(self) -> float | None:
        d = self.delta
        if d is None or not self.base:
            return None
        return d / abs(self.base) * 100


def diff_maps(base: dict[str, Any], head: dict[str, Any], *, changed_only: bool) -> list[Change]:
    out = []
    for name in sorted(set(base) | set(head)):
        b, h = base.get(name), head.get(name)
        if changed_only and _same(b, h):
            continue
        out.append(Change(name, b, h))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def data_mismatch(cfg: Config, base: RunData, head: RunData) -> list[str]:
    """Datasets evaluated on that differ between the two runs (by content hash)."""
    declared = cfg.section("gate")["eval_data"]
    paths = declared or sorted(set(base.datasets) & set(head.datasets))
    return [
        p for p in paths if base.datasets.get(p) != head.datasets.get(p) and (p in base.datasets or p in head.datasets)
    ]
