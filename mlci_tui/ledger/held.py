"""One read-only connection to the query cache, held while the ledger tip is unchanged.

A long-running reader (the TUI) registers one with `hold_cache`; every query of the read
layer (`ledger/query/`) then takes a cursor of it through `open_cache`. Without a held cache
(the CLI, reports, hooks) each `open_cache` opens a connection of its own and closes it.
The cache is refreshed by writing a new file and renaming it over the old one, so a held
connection never blocks a writer: it reads the old snapshot until reopened. (A deviation
from "readers open read-only per query": docs/architecture.md gives the reason and the gain.)
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo
from mlci_tui.ledger.cache import CACHE_SCHEMA, LedgerCache, cache_is_current
from mlci_tui.ledger.query.rows import cache_tip
from mlci_tui.ledger.tip_watch import TipWatcher
from mlci_tui.sql_guard import lock_down

if TYPE_CHECKING:
    import duckdb


class Interruptible(Protocol):
    """What a caller may do with a connection a query of theirs runs on: stop it (the TUI, when the user moves on)."""

    def interrupt(self) -> None: ...


_LINKS = itertools.count(1)  # names of the hard links the held databases are opened through


def connect_private(cache: LedgerCache, tag: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the cache file through a hard link of its own, removed at once
    (the open file stays readable). DuckDB shares one database per path within a process: a
    database of its own can be held, or locked down, without touching this process's other
    connections to `cache.duckdb`. Raises FileNotFoundError (no cache yet) or OSError (no links)."""
    import duckdb

    link = cache.path.with_name(f"{cache.path.name}.{tag}-{os.getpid()}-{next(_LINKS)}")
    os.link(cache.path, link)
    try:
        return duckdb.connect(str(link), read_only=True)
    finally:
        link.unlink(missing_ok=True)


class HeldCache:
    """One read-only connection to the query cache, kept open while the ledger tip is unchanged.

    Opening the cache costs ~47 ms of CPU at 100,000 runs, and checking that it is current
    two `git rev-parse` processes: a filter or a sort over a held connection pays neither.
    Each query gets its own cursor (DuckDB connections are not thread-safe; cursors of one
    connection may run in different threads). Before each cursor the ledger's ref files are
    stat-ed (microseconds); only when they changed is git asked for the tip. A moved tip (or
    `moved()`, from the app's watcher) makes the next cursor wait for the cursors in use to
    close, close the connection and reopen it, refreshing the cache first. The file is opened
    through a hard link of its own (`_connect`), so that the held database never stands in
    for `cache.duckdb` in other connects of this process.
    """

    WAIT_FOR_USERS = 5.0  # seconds a reopen waits for cursors on the old snapshot to close

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.watcher = TipWatcher(repo, recheck=float("inf"))  # stat only; the app's watcher rechecks
        self._cond = threading.Condition()
        self._stack: ExitStack | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.tip: str | None = None  # the tip the open connection's cache was built from
        self._stale = False
        self._told: str | None = None  # a tip the app's watcher saw
        self._cursors: set[duckdb.DuckDBPyConnection] = set()
        self.opens = 0  # how many times the file was opened (tests, benchmarks)

    def _check(self) -> None:
        """Mark the connection stale when the ledger ref moved away from its tip (under the lock)."""
        told, self._told = self._told, None
        moved = self.watcher.poll()  # a stat of the ref files; git only when they changed
        for tip in (told, moved):
            if tip is not None and self.tip is not None and tip != self.tip:
                self._stale = True

    def moved(self, tip: str) -> None:
        """The ledger tip is now `tip` (the app's watcher saw it): reopen before the next query.
        No lock (the UI thread calls this; a reopen may hold the lock through a cache refresh)."""
        self._told = tip

    def recheck(self) -> None:
        """Ask git for the tip before the next query, whatever the ref files' stat says (`r`)."""
        self.watcher.forget()

    def looks_current(self) -> bool:
        """True when a connection is open on the tip the ref files still show (no git process)."""
        with self._cond:
            if self._con is None:
                return False
            self._check()
            return not self._stale

    def _wait_for_cursors_locked(self, *, interrupt: bool) -> None:
        """Give the cursors in use up to WAIT_FOR_USERS to close. When the app leaves they are
        interrupted, again at every tick: an interrupt that lands before a query starts is lost."""
        deadline = time.monotonic() + self.WAIT_FOR_USERS
        while self._cursors and time.monotonic() < deadline:
            if interrupt:
                for cur in self._cursors:
                    cur.interrupt()
            self._cond.wait(0.05)

    def _close_locked(self) -> None:
        import duckdb

        con, stack, self._stack, self._con, self.tip = self._con, self._stack, None, None, None
        try:
            if stack is not None:
                stack.close()
            elif con is not None:
                con.close()
        except duckdb.Error:  # a cursor still runs in a worker ("connection is busy"): it closes with it
            pass

    def _open_locked(self) -> duckdb.DuckDBPyConnection:
        if self._con is not None:
            self._check()
        if self._con is not None and self._stale:
            self._wait_for_cursors_locked(interrupt=False)  # a reload interrupts the long reads
            self._close_locked()
        if self._con is None:
            self.watcher.poll()  # the ref files' state before the cache's tip is checked
            self._con = self._connect()
            self._stale = False
            self.tip = cache_tip(self._con)
            self.watcher.tip = self.tip  # a ref moved since the poll above is seen next time
            self.opens += 1
        return self._con

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the current cache, on a database of its own (`connect_private`):
        the held, possibly old file never stands in for `cache.duckdb` in this process's other
        connects (the sweeps screen's `LedgerCache.connect`), which would rebuild it in vain."""
        import duckdb

        cache = LedgerCache(self.repo)
        for _ in range(3):
            try:
                con = connect_private(cache, "tui")
            except FileNotFoundError:
                cache.refresh()
                continue
            except OSError:  # no hard links here: the shared name (and its caveat) it is
                break
            try:
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            except duckdb.Error:
                meta = {}
            if meta.get("schema") == CACHE_SCHEMA and meta.get("tip") == (cache.store.tip() or ""):
                # a database of its own (the link): locked down for the app's life, `sql:` filters included
                con.execute("SET enable_progress_bar = false")
                lock_down(con)
                return con
            con.close()
            cache.refresh()
        self._stack = ExitStack()
        return self._stack.enter_context(cache.connect())

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the held connection, for one query (or a few) in one thread."""
        with self._cond:
            cur = self._open_locked().cursor()
            self._cursors.add(cur)
        try:  # (a cursor starts with the progress bar off: it would write over the screen)
            yield cur
        finally:
            try:
                cur.close()
            finally:
                with self._cond:
                    self._cursors.discard(cur)
                    self._cond.notify_all()

    def close(self) -> None:
        """Close for good (the app exits): a query still running in a worker is interrupted."""
        with self._cond:
            self._wait_for_cursors_locked(interrupt=True)
            self._close_locked()


_HELD: dict[Path, HeldCache] = {}

_HELD_LOCK = threading.Lock()


def hold_cache(repo: Repo) -> HeldCache:
    """Keep one connection to `repo`'s cache for the queries that follow (the app, while it
    runs; the connection opens with the first query)."""
    held = HeldCache(repo)
    with _HELD_LOCK:
        _HELD[repo.root] = held
    return held


def release_cache(held: HeldCache) -> None:
    """Close the held connection (the app, when it exits)."""
    with _HELD_LOCK:
        if _HELD.get(held.repo.root) is held:
            del _HELD[held.repo.root]
    held.close()


def held_cache(repo: Repo) -> HeldCache | None:
    return _HELD.get(repo.root)


def cache_looks_current(repo: Repo) -> bool:
    """Whether a query can start at once, without reading new records into the cache first.
    With a held connection: a stat of the ref files; else a `git rev-parse` and the tip hint."""
    held = held_cache(repo)
    if held is not None and held.looks_current():
        return True
    return cache_is_current(repo)


@contextmanager
def open_cache(repo: Repo) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one query (or a few): a cursor of the held connection while
    the app holds one, else a connection of its own, closed at once."""
    held = held_cache(repo)
    if held is not None:
        with held.cursor() as cur:
            yield cur
        return
    with LedgerCache(repo).connect() as con:
        cur = con.cursor()  # a cursor starts with the progress bar off (it would write over the screen): no SET
        try:
            yield cur
        finally:
            cur.close()


@contextmanager
def sandboxed_cache(repo: Repo) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the current cache, locked down (no file, no extension, no
    setting), on a database of its own: opened through a hard link, so locking it leaves this
    process's other connections to `cache.duckdb` as they are (`mlci export` writes with COPY)."""
    cache = LedgerCache(repo)
    cache.refresh()
    try:
        con = connect_private(cache, "sandbox")
    except OSError as exc:
        raise MlciError(f"no private view of the cache here ({exc.strerror}); --where needs one") from None
    try:
        con.execute("SET enable_progress_bar = false")
        lock_down(con)
        yield con
    finally:
        con.close()
