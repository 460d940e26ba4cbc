"""Dataset profiles stored in the ledger: a version compared with the previous one reads only the new data."""

from __future__ import annotations

import json
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.store import LedgerStore


def stored_profiles(repo: Repo) -> dict[str, dict[str, Any]]:
    """Every stored profile by content hash (the newest wins), from the `profiles` view; {} without a ledger."""
    if LedgerStore(repo).tip() is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        with open_cache(repo) as con:
            for content_hash, body in con.execute("SELECT content_hash, body FROM profiles ORDER BY time").fetchall():
                out[content_hash] = json.loads(body)
    except Exception:  # an older cache without the view: no stored profiles, compute instead
        return {}
    return out
