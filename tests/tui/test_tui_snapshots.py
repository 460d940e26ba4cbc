"""SVG snapshots of every screen at a fixed size (120x30), over a ledger with fixed ids and
times. A difference fails with the screen as text and writes NAME.actual.svg beside the
snapshot; `MLCI_UPDATE_SNAPSHOTS=1 pytest tests/tui/test_tui_snapshots.py` accepts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import git
from tui_helpers import assert_snapshot, make_lab, promote, rid, run_app, settle, wait_until

from mlci_tui.tui.app import MlciApp
from mlci_tui.tui.screens.plot import PlotScreen
from mlci_tui.tui.screens.run import RunScreen


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_lab(root)
    promote(root, rid("b"))  # the deployed run: the default baseline, so delta columns show
    return root


def test_snapshots_runs_table_filter_error_and_run_detail(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        table = app.runs_screen.table
        table.move_cursor(row=2)
        await pilot.press("space")
        await settle(pilot)
        assert_snapshot(app, "runs")
        app.query_one("#filter").value = "acc > 0.7 and model ~ (cnn"  # type: ignore[attr-defined]
        await pilot.press("slash", "enter", "escape")  # esc: back to the table (no blinking cursor)
        await settle(pilot)
        assert_snapshot(app, "runs-filter-error")
        table.move_cursor(row=3)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.detail is not None)
        await pilot.pause()
        assert_snapshot(app, "run-detail")

    run_app(lab, scenario)


def test_snapshots_compare_plot_and_help(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        table = app.runs_screen.table
        for row in (2, 3):
            table.move_cursor(row=row)
            await pilot.press("space")
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert_snapshot(app, "compare")
        await pilot.press("p")
        await settle(pilot)
        plot = app.screen
        assert isinstance(plot, PlotScreen)
        await wait_until(pilot, lambda: plot.chart is not None)
        await pilot.pause()
        assert_snapshot(app, "plot-steps")
        await pilot.press("escape", "escape", "question_mark")
        await settle(pilot)
        assert_snapshot(app, "help")

    run_app(lab, scenario)
