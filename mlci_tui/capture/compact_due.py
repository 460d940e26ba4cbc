"""Whether the post-commit hook should start a background compaction: a counter file, not a process per commit.

`mlci ledger compact --auto` costs an interpreter and mlci's imports (~100-150 ms of CPU) even
when the ledger is under the threshold, which is nearly always. The hook keeps in
`.git/mlci/compact-room` two numbers: how many loose event files the ledger could still take
before `compact.AUTO_THRESHOLD` at the last exact count, and the runs captured since. It counts
again (one `git ls-tree`, `compact.loose_count`) only when the captures since could have used
that room up, or every `RECOUNT_EVERY` captures (records that came another way: pulls, imports,
sweeps), and starts the compaction only when the count is past the threshold.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not `from typing import ...`: this module is on the hook's path
if TYPE_CHECKING:
    from mlci_tui.gitio import Repo

ROOM_FILE = "compact-room"
RECOUNT_EVERY = 64


def compaction_due(repo: Repo, added: int) -> bool:
    """After a capture that added `added` runs: True when the loose records are past the threshold."""
    path = os.path.join(repo.state_path, ROOM_FILE)
    try:
        with open(path, encoding="ascii") as f:
            room, since = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        room, since = 0, 0  # no count yet (or an unreadable one): count now
    since += added
    if since < min(room, RECOUNT_EVERY):
        _write(path, room, since)
        return False
    from mlci_tui.ledger.compact import AUTO_THRESHOLD, loose_count
    from mlci_tui.ledger.refs import LEDGER_REF

    loose = loose_count(repo, LEDGER_REF)
    _write(path, AUTO_THRESHOLD - loose, 0)
    return loose >= AUTO_THRESHOLD


def _write(path: str, room: int, since: int) -> None:
    """Rewrite the file in place: one small write, not `data.workspace.atomic_write` (which
    brings `pathlib` and the data layer into every commit). A reader that meets it torn or
    empty, or two hooks at once, only count again sooner: what it holds is a hint."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{room} {since}\n")
    except OSError:
        pass  # a read-only .git: the next capture counts again
