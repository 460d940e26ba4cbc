"""Messages that workers post and screens handle. Workers never touch widgets."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class LedgerChanged(Message):
    """The ledger ref moved (a commit was captured, a note written, a sweep trial finished)."""

    def __init__(self, tip: str) -> None:
        super().__init__()
        self.tip = tip


class Loaded(Message):
    """A query finished: `what` names it, `generation` lets a handler drop stale answers."""

    def __init__(self, what: str, generation: int, result: Any) -> None:
        super().__init__()
        self.what = what
        self.generation = generation
        self.result = result


class Failed(Message):
    """A query or a write failed; `error` is a message for the user (already sanitised)."""

    def __init__(self, what: str, generation: int, error: str) -> None:
        super().__init__()
        self.what = what
        self.generation = generation
        self.error = error
