"""The commit plot marks the change points `mlci bisect` finds, and `j` compares the suspect
commit's run with the run of the commit before (real ledger, real app through Pilot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_bisect import ledger_history, noisy
from tui_helpers import run_app, screen_text, settle, wait_until

from mlci_tui.ledger.records import derived_id
from mlci_tui.tui.app import MlciApp
from mlci_tui.tui.screens.compare import CompareScreen
from mlci_tui.tui.screens.plot import PlotScreen


def test_commit_plot_marks_change_points_and_j_jumps_to_the_suspect(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    shas = ledger_history(root, noisy(30, 7, {12: 0.03, 22: -0.06}))

    async def scenario(app: MlciApp, pilot: Any) -> None:
        app.plot([])
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PlotScreen)
        await pilot.press("2")
        await settle(pilot)
        await wait_until(pilot, lambda: screen.chart is not None and screen.chart.series)
        chart = screen.chart
        assert chart is not None and chart.markers == [21.5, 11.5]  # between the commits, largest step first
        assert "2 change point(s): j jumps" in screen_text(app)
        await pilot.press("j")
        await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        # the larger step: the run of commit 22 (the suspect) against commit 21's
        assert compare.run_ids == [derived_id("commit", shas[21]), derived_id("commit", shas[22])]
        await pilot.press("escape", "j")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.run_ids == [derived_id("commit", shas[11]), derived_id("commit", shas[12])]

    run_app(root, scenario)
