"""The one read-only cache connection the app holds while the ledger tip is unchanged
(`ledger.held.HeldCache`): reused across queries and threads, reopened when the ledger moves."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from tui_helpers import append_runs, copy_repo, make_lab, run_app, settle, wait_until

from mlci_tui.gitio import Repo
from mlci_tui.ledger import held as data
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.tui.app import MlciApp


@pytest.fixture(scope="module")
def lab_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("held") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_lab(root)
    with LedgerCache(Repo.find(root)).connect():
        pass
    return root


@pytest.fixture
def lab(lab_master: Path, tmp_path: Path) -> Path:
    return copy_repo(lab_master, tmp_path / "repo")


def count(held: data.HeldCache) -> int:
    with held.cursor() as cur:
        return int(cur.execute("SELECT count(*) FROM runs").fetchall()[0][0])


def test_one_connection_while_the_tip_is_unchanged_reopened_when_it_moves(lab: Path) -> None:
    repo = Repo.find(lab)
    held = data.HeldCache(repo)
    try:
        assert [count(held) for _ in range(5)] == [6] * 5
        assert held.opens == 1
        tip = held.tip
        assert tip and tip == (LedgerStore(repo).tip() or "")
        # another writer appends: the ref file changes, so the next query reopens at the new tip
        append_runs(lab, [dict(name="late", metrics={"acc": 0.5}, time="2025-03-09T09:00:00.000000Z")])
        assert count(held) == 7
        assert held.opens == 2 and held.tip != tip
        assert count(held) == 7 and held.opens == 2
        # the app's watcher can also say so (a ref store the stat cannot see); the same tip is no move
        held.moved(held.tip or "")
        assert count(held) == 7 and held.opens == 2
        held.moved("0" * 40)
        assert count(held) == 7 and held.opens == 3
        # a move the stat cannot see (a ref store that is not a file): `r` asks git
        append_runs(lab, [dict(name="later", metrics={"acc": 0.4}, time="2025-03-10T09:00:00.000000Z")])
        held.watcher._signature = held.watcher._stat()
        assert count(held) == 7 and held.opens == 3  # the old snapshot, until...
        held.recheck()
        assert count(held) == 8 and held.opens == 4
    finally:
        held.close()


def test_cursors_in_threads_and_a_reopen_waits_for_the_old_snapshot_readers(lab: Path) -> None:
    repo = Repo.find(lab)
    held = data.HeldCache(repo)
    try:
        counts: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(20):
                    counts.append(count(held))
            except BaseException as exc:  # pragma: no cover - shown by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and counts == [6] * 60 and held.opens == 1

        # a reader on the old snapshot keeps its cursor while the ledger moves: a new query
        # waits for it to close (closing the connection under it would break its query), then
        # reopens and sees the new run; the old reader saw the old snapshot throughout
        old_reader = threading.Event()
        release = threading.Event()
        seen: list[int] = []

        def slow_reader() -> None:
            with held.cursor() as cur:
                seen.append(int(cur.execute("SELECT count(*) FROM runs").fetchall()[0][0]))
                old_reader.set()
                release.wait(10)
                seen.append(int(cur.execute("SELECT count(*) FROM runs").fetchall()[0][0]))

        slow = threading.Thread(target=slow_reader)
        slow.start()
        assert old_reader.wait(10)
        append_runs(lab, [dict(name="late", metrics={"acc": 0.5}, time="2025-03-09T09:00:00.000000Z")])
        got: list[int] = []
        fresh = threading.Thread(target=lambda: got.append(count(held)))
        fresh.start()
        fresh.join(0.3)
        assert fresh.is_alive() and not got  # waiting for the old reader
        release.set()
        slow.join(10)
        fresh.join(10)
        assert seen == [6, 6] and got == [7] and held.opens == 2
    finally:
        held.close()


def test_closing_interrupts_a_query_still_running_in_a_worker(lab: Path) -> None:
    """The app quitting while a worker's query runs: the query is interrupted and the close
    does not raise (DuckDB refuses to close a connection a cursor is busy on)."""
    import duckdb

    held = data.HeldCache(Repo.find(lab))
    started = threading.Event()
    outcome: list[BaseException | None] = []

    def long_query() -> None:
        try:
            with held.cursor() as cur:
                started.set()
                cur.execute("SELECT count(*) FROM range(1000000000000) a, range(1000) b WHERE a.range % 7 = b.range")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=long_query, daemon=True)
    worker.start()
    assert started.wait(10)  # the query is about to start, or under way: close interrupts it either way
    begun = time.monotonic()
    held.close()
    worker.join(10)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], duckdb.InterruptException), outcome
    assert time.monotonic() - begun < held.WAIT_FOR_USERS
    assert count(held) == 6  # a later query (none is expected) would reopen
    held.close()


def test_the_app_holds_one_connection_across_filters_and_sorts(lab: Path) -> None:
    repo = Repo.find(lab)

    async def scenario(app: MlciApp, pilot: Any) -> None:
        held = app.query_cache
        assert data.held_cache(repo) is held and held.opens == 1
        for text in ("acc > 0.75", 'model ~ "cnn.*"', ""):
            app.query_one("#filter").value = text  # type: ignore[attr-defined]
            await pilot.press("slash", "enter")
            await settle(pilot)
            assert app.runs_screen.spec.filter_text == text and app.runs_screen.error is None
            await pilot.press("escape")
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("enter")  # the run screen reads through the same connection
        await settle(pilot)
        await pilot.press("escape")
        assert held.opens == 1 and app.runs_screen.result is not None
        assert app.runs_screen.result.count == 6
        append_runs(lab, [dict(name="late", metrics={"acc": 0.5}, time="2025-03-09T09:00:00.000000Z")])
        await wait_until(pilot, lambda: app.runs_screen.table.row_count == 7, what="the appended run")
        assert held.opens == 2

    app = run_app(lab, scenario)
    assert data.held_cache(repo) is None and app.query_cache.tip is None  # closed on exit


def test_other_readers_in_the_process_see_the_new_tip_while_the_old_is_held(lab: Path) -> None:
    """DuckDB shares one database per path in a process: the held connection is opened through
    a link of its own, so `LedgerCache.connect` (the sweeps screen's reads) is not handed the
    held, older file, and nothing is left behind in the state directory."""
    repo = Repo.find(lab)
    held = data.HeldCache(repo)
    try:
        assert count(held) == 6
        append_runs(lab, [dict(name="late", metrics={"acc": 0.5}, time="2025-03-09T09:00:00.000000Z")])
        with LedgerCache(repo).connect() as con:
            assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 7
        with LedgerCache(repo).connect() as con:  # current now: no second rebuild
            assert con.execute("SELECT value FROM meta WHERE key = 'tip'").fetchall()[0][0] == (
                LedgerStore(repo).tip() or ""
            )
        assert count(held) == 7 and held.opens == 2
        assert not [p.name for p in repo.state_dir.iterdir() if ".tui-" in p.name]
    finally:
        held.close()
