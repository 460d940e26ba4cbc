"""Notice that the ledger ref moved, cheaply enough to ask every second (the TUI's live refresh)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore


def ledger_ref_files(repo: Repo, store: LedgerStore) -> list[Path]:
    """The files whose change may mean the ledger ref moved (loose ref, packed refs, reftable)."""
    common = repo.common_dir
    return [common / store.ref, common / "packed-refs", common / "reftable" / "tables.list"]


def stat_signature(paths: list[Path]) -> tuple[Any, ...]:
    """What a `stat` of each file says (None where it is absent): equal signatures, unmoved refs."""
    out: list[Any] = []
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class TipWatcher:
    """Notices a moved ledger ref cheaply: stat the ref files, ask git only when they change.

    A full `rev-parse` also runs every `recheck` seconds, for ref stores we cannot stat.
    """

    def __init__(self, repo: Repo, recheck: float = 10.0) -> None:
        self.store = LedgerStore(repo)
        self.paths = ledger_ref_files(repo, self.store)
        self.recheck = recheck
        self._signature: tuple[Any, ...] | None = None
        self._checked = 0.0
        self.tip: str | None = None

    def _stat(self) -> tuple[Any, ...]:
        return stat_signature(self.paths)

    def forget(self) -> None:
        """Ask git at the next poll, whatever the ref files' stat says."""
        self._signature = None

    def poll(self) -> str | None:
        """The tip when it changed since the last poll (the first poll reads it), else None."""
        sig = self._stat()
        now = time.monotonic()
        if sig == self._signature and now - self._checked < self.recheck:
            return None
        tip = self.store.tip() or ""
        self._signature = sig  # only once the tip is read: an interrupted read is retried
        self._checked = now
        if tip != self.tip:
            self.tip = tip
            return tip
        return None
