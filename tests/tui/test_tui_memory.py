"""The runs screen's background completion stays bounded (issue 19: TUI memory at 100k runs).

A paged view reads the rest of its values in a worker once the user pauses; the next action
cancels it. A completion cancelled before it had opened its connection could not be
interrupted and read the whole view anyway, beside the next query and its own completion.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from tui_helpers import append_runs, make_lab, run_app, settle, wait_until

from mlci_tui.tui.app import MlciApp


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_lab(root)
    append_runs(root, [dict(name=f"run-{i:02d}") for i in range(30)])
    return root


def test_a_completion_cancelled_before_it_reads_reads_nothing(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlci_tui.ledger.query import runs_view
    from mlci_tui.tui.screens import runs as runs_screen

    monkeypatch.setattr(runs_view, "FULL_VIEW_RUNS", 10)  # a large ledger, as far as the view knows
    monkeypatch.setattr(runs_view, "COMPLETE_AFTER", 0.05)
    real = runs_screen.complete_view
    gate = threading.Event()
    started: list[object] = []
    full_reads: list[object] = []  # the results whose completion went on to read every row

    def slow_to_open(repo: Any, result: Any, cfg: Any, opened: Any) -> Any:
        first = not started
        started.append(result)
        if first:
            gate.wait(15)  # the first completion is slow to open its connection

        def reading(con: Any) -> None:
            opened(con)  # raises when the completion was cancelled meanwhile
            full_reads.append(result)

        return real(repo, result, cfg, reading)

    monkeypatch.setattr(runs_screen, "complete_view", slow_to_open)

    async def scenario(app: MlciApp, pilot: Any) -> None:
        await wait_until(pilot, lambda: started, what="the first completion to start")
        first = started[0]
        await pilot.press("r")  # a new action while the completion has no connection to interrupt
        await wait_until(pilot, lambda: app.runs_screen.result is not first, what="the refreshed view")
        gate.set()
        await wait_until(pilot, lambda: len(started) >= 2, what="the refreshed view's completion")
        await settle(pilot)
        assert first not in full_reads  # the cancelled one stopped as it opened
        result = app.runs_screen.result
        assert result is not None and result in full_reads and result.table is not None

    run_app(lab, scenario, size=(120, 20))
