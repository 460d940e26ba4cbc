"""Sweep and trial events as the queue folds them (`sweep/events.py`); the `sweeps` and `trials` views are their SQL reading."""

from __future__ import annotations

from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.ledger.query.rows import cache_tip


def sweep_events(repo: Repo) -> tuple[str, list[dict[str, Any]]]:
    """(ledger tip, every sweep and trial event in time order), read through the cache brought up to the tip."""
    with LedgerCache(repo).connect() as con:
        tip = cache_tip(con)
        rows = con.execute("SELECT body FROM events WHERE type IN ('sweep', 'trial') ORDER BY time, id").fetchall()
    out = []
    for (body,) in rows:
        try:
            out.append(records.loads(body))
        except ValueError:
            continue
    return tip, out
