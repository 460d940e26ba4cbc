"""What every screen that shows ledger data shares: the app it belongs to, and a reload on each ledger move.

A screen numbers its requests (`generation`) so a handler drops an answer a newer request
overtook; `reload` asks again, and the app calls `ledger_moved` on every open screen when
the ledger ref moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from mlci_tui.tui.app import MlciApp


class LedgerScreen(Screen[None]):
    request: Callable[[int], object]  # the screen's query, a thread worker posting its answer

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    @property
    def mlci(self) -> MlciApp:
        return self.app  # type: ignore[return-value]

    def reload(self) -> None:
        """Query again (in a worker: `request`); the answer arrives as a message."""
        self.generation += 1
        self.request(self.generation)

    def ledger_moved(self, tip: str) -> None:
        self.reload()
