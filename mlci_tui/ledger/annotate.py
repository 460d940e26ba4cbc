"""Notes and tags on runs: ledger events, written the same way by `mlci note`/`tag` and the TUI."""

from __future__ import annotations

from mlci_tui.gitio import Repo
from mlci_tui.ledger import events
from mlci_tui.ledger.store import LedgerStore


def add_note(repo: Repo, run_id: str, text: str, replaces: str | None = None, message: str = "mlci: note") -> str:
    """A note as a ledger event; editing one writes the new text and a tombstone for the old."""
    batch = [events.note(run_id, text)]
    if replaces:
        batch.append(events.redact(replaces, "note edited in mlci tui"))
    return LedgerStore(repo).append(batch, message=message)


def add_tag(repo: Repo, run_id: str, name: str, *, remove: bool = False, message: str = "mlci: tag") -> str:
    return LedgerStore(repo).append([events.tag(run_id, name, remove=remove)], message=message)
