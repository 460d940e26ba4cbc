"""How command handlers speak: results on stdout, notices on stderr, both through the display sanitiser."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlci_tui.sanitize import display

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.gitio import Repo


def say(message: str) -> None:
    print(display(message, multiline=True))


def notice(message: str) -> None:
    print(f"mlci: {display(message)}", file=sys.stderr)


@contextmanager
def open_ledger(repo: Repo) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the ledger's cache, brought up to the tip; its notices (unknown event types) printed."""
    from mlci_tui.ledger.cache import LedgerCache

    cache = LedgerCache(repo)
    with cache.connect() as con:
        # notices exist only once connect() has refreshed the cache
        for text in cache.notices:
            notice(text)
        yield con
