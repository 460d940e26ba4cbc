"""Runs side by side: two (`mlci diff`, the gate, reports) or several (the TUI's compare screen).

Every comparison diffs maps the same way and says a change the same way (`numbers.difference`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlci_tui.config import Config
from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.rows import dict_rows
from mlci_tui.ledger.query.run import Run
from mlci_tui.numbers import difference


@dataclass
class Change:
    name: str
    base: Any
    head: Any

    @property
    def delta(self) -> float | None:
        return difference(self.base, self.head)[0]

    @property
    def pct(self) -> float | None:
        return difference(self.base, self.head)[1]


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


def data_mismatch(cfg: Config, base: Run, head: Run) -> list[str]:
    """Datasets evaluated on that differ between the two runs (by content hash)."""
    declared = cfg.section("gate")["eval_data"]
    paths = declared or sorted(set(base.datasets) & set(head.datasets))
    return [
        p for p in paths if base.datasets.get(p) != head.datasets.get(p) and (p in base.datasets or p in head.datasets)
    ]


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
    """The runs in the order given, their fields, params and metrics as rows of values."""
    with open_cache(repo) as con:
        found = {
            r["run_id"]: Run.from_row(r)
            for r in dict_rows(con.execute("SELECT * FROM runs WHERE list_contains(?, run_id)", [list(run_ids)]))
        }
    runs = [found[r] for r in run_ids if r in found]
    rows: list[CompareRow] = []
    for f in COMPARE_FIELDS:
        values = [_compare_field(r, f) for r in runs]
        rows.append(CompareRow("run", f, values))
    for p in sorted({k for r in runs for k in r.params}):
        rows.append(CompareRow("param", p, [r.params.get(p) for r in runs]))
    for m in sorted({k for r in runs for k in r.metrics}):
        rows.append(CompareRow("metric", m, [r.metrics.get(m) for r in runs], directions(m)))
    return CompareResult([{"run_id": r.run_id, "label": r.subject} for r in runs], rows)


def _compare_field(run: Run, name: str) -> Any:
    if name == "commit":
        return (run.commit or "")[:12] or None
    if name == "subject":
        return run.subject
    if name == "time":
        return run.started or run.time
    return getattr(run, name)
