"""The run record as every reader sees it: one typed field list, read from the `runs` view."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import InputError
from mlci_tui.ledger.query.names import find_key
from mlci_tui.ledger.query.rows import dict_rows, json_list, json_object

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.ledger.resolve import Resolved


@dataclass
class Run:
    """A run: the fields every run carries (docs/contracts.md), its maps, and `extra` for columns a newer mlci added."""

    run_id: str
    kind: str | None = None
    name: str | None = None
    status: str | None = None
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    commit: str | None = None
    tree: str | None = None
    patch_id: str | None = None
    branch: str | None = None
    author: str | None = None
    message: str | None = None
    source: str | None = None
    parent: str | None = None
    sweep_id: str | None = None
    trial_id: str | None = None
    stale: bool = False
    tags: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # keyed by `names.map_keys`
    metrics: dict[str, float] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)  # path -> content hash
    deps: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    mlci_version: str | None = None
    python_version: str | None = None
    time: dt.datetime | None = None  # when the record was written
    how: str = "id"  # how a reference to it was resolved (ledger.resolve)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any], how: str = "id") -> Run:
        known = {f.name for f in fields(cls)} - {"extra", "how"}
        values = {k: v for k, v in row.items() if k in known}
        values["stale"] = bool(values.get("stale"))
        values["tags"] = list(values.get("tags") or [])
        values["params"] = dict(values.get("params") or {})
        values["metrics"] = dict(values.get("metrics") or {})
        datasets = json_object(values.get("datasets"))
        values["datasets"] = {str(k): v for k, v in datasets.items()}
        values["deps"] = json_object(values.get("deps"))
        values["warnings"] = [str(w) for w in json_list(values.get("warnings"))]
        return cls(**values, how=how, extra={k: v for k, v in row.items() if k not in known})

    @property
    def subject(self) -> str:
        """The run's name, else the first line of its message."""
        return self.name or (self.message or "").split("\n", 1)[0]

    @property
    def label(self) -> str:
        commit = (self.commit or "")[:8]
        return f"{self.run_id[:8]}" + (f" ({commit})" if commit else "")

    def listed(self) -> dict[str, Any]:
        """The fields a listing (`mlci runs --json`, export) writes, in LISTED_FIELDS order."""
        return {name: getattr(self, name) for name in LISTED_FIELDS}

    def metric(self, name: str) -> float | None:
        """One metric by plain or `file:name`; a plain name present in two files is an error."""
        key = find_key(self.metrics, name)
        return self.metrics[key] if key is not None else None


def param_text(value: Any) -> str:
    """A param value as the `params` map holds it (the cache does the same in SQL): text as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) or value is None else repr(value)


# The fields of a run in listings, in their order (the maps last).
LISTED_FIELDS = [
    "run_id",
    "time",
    "kind",
    "name",
    "status",
    "started",
    "ended",
    "commit",
    "tree",
    "patch_id",
    "branch",
    "author",
    "message",
    "source",
    "parent",
    "sweep_id",
    "trial_id",
    "stale",
    "tags",
    "params",
    "metrics",
]


def load_run(con: duckdb.DuckDBPyConnection, resolved: Resolved) -> Run:
    """The run a resolved reference names (`ledger.resolve.resolve_run`)."""
    found = dict_rows(con.execute("SELECT * FROM runs WHERE run_id = ?", [resolved.run_id]))
    if not found:
        raise InputError(f"run {resolved.run_id} is not in the ledger")
    return Run.from_row(found[0], resolved.how)
