"""What every importer shares: the report, skipping what the ledger holds, batched appends."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore

BATCH = 1000  # records per ledger commit: one commit per batch, not per run


@dataclass
class ImportReport:
    added: list[dict[str, Any]] = field(default_factory=list)
    present: int = 0  # records the ledger already had (an earlier import)
    skipped: int = 0  # sources with nothing to import (no params or metrics)
    warnings: list[str] = field(default_factory=list)
    ledger_commits: int = 0

    @property
    def runs(self) -> int:
        return sum(1 for r in self.added if r.get("type") == "run")


def append_new(repo: Repo, records_iter: Iterable[dict[str, Any]], report: ImportReport) -> None:
    """Append the records whose ids the ledger lacks, BATCH at a time (one ledger commit each)."""
    store = LedgerStore(repo)
    for batch in _chunks(records_iter, BATCH):
        present = store.has_ids([r["id"] for r in batch])
        new = [r for r in batch if r["id"] not in present]
        report.present += len(batch) - len(new)
        if new:
            store.append(new, message=f"mlci import: {len(new)} record(s)")
            report.ledger_commits += 1
            report.added.extend(new)


def _chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
