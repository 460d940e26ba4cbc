"""How command handlers speak: results on stdout, notices on stderr, both through the display sanitiser."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlci_tui.sanitize import display

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.resolve import Resolved


def say(message: str) -> None:
    print(display(message, multiline=True))


def notice(message: str) -> None:
    print(f"mlci: {display(message)}", file=sys.stderr)


@contextmanager
def open_ledger(repo: Repo) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the ledger's cache, brought up to the tip; its notices (unknown event types) printed."""
    from mlci_tui.ledger.cache import LedgerCache

    if os.environ.get("MLCI_LEDGER_READ") == "remote":  # the published segments (docs/ledger.md)
        from mlci_tui.cli.ledger import published_ledger

        with published_ledger(repo) as con:
            yield con
        return
    cache = LedgerCache(repo)
    with cache.connect() as con:
        # notices exist only once connect() has refreshed the cache
        for text in cache.notices:
            notice(text)
        yield con


def resolve_ref(repo: Repo, con: duckdb.DuckDBPyConnection, ref: str) -> Resolved:
    """A run reference resolved as every command resolves it; how it fell back (an ancestor's
    run, a rewritten commit's) printed as a notice."""
    from mlci_tui.ledger.resolve import resolve_run

    resolved = resolve_run(repo, con, ref)
    if resolved.notice:
        notice(resolved.notice)
    return resolved


def run_reporting_failures(command: Callable[[], int]) -> int:
    """Run a command as `mlci` does: an expected failure as `mlci: MESSAGE` and its exit code,
    an interrupt as 130, anything else as one line and 70 (the traceback with MLCI_DEBUG=1)."""
    from mlci_tui.errors import MlciError, first_line

    try:
        return int(command() or 0)
    except MlciError as exc:
        print(f"mlci: {display(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mlci: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("MLCI_DEBUG"):
            raise
        text = first_line(exc) if str(exc).strip() else ""
        print(
            f"mlci: internal error: {type(exc).__name__}: {display(text)} (set MLCI_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 70
