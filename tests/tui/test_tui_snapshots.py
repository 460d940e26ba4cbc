"""SVG snapshots of every screen at 80x24 (the smallest terminal the TUI is designed for)
and 120x40, over a ledger with fixed ids and times. A difference fails with the screen as
text and writes NAME-WxH.actual.svg beside the snapshot;
`MLCI_UPDATE_SNAPSHOTS=1 pytest tests/tui/test_tui_snapshots.py` accepts it.
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

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_lab(root)
    promote(root, rid("b"))  # the deployed run: the default baseline, so delta columns show
    return root


@pytest.mark.parametrize("size", SIZES)
def test_snapshots_runs_table_filter_error_and_run_detail(lab: Path, size: tuple[int, int]) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        table = app.runs_screen.table
        table.move_cursor(row=2)
        await pilot.press("space")
        await settle(pilot)
        assert_snapshot(app, "runs", size)
        app.query_one("#filter").value = "acc > 0.7 and model ~ (cnn"  # type: ignore[attr-defined]
        await pilot.press("slash", "enter", "escape")  # esc: back to the table (no blinking cursor)
        await settle(pilot)
        assert_snapshot(app, "runs-filter-error", size)
        table.move_cursor(row=3)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.detail is not None)
        await pilot.pause()
        assert_snapshot(app, "run-detail", size)

    run_app(lab, scenario, size=size)


@pytest.mark.parametrize("size", SIZES)
def test_snapshots_compare_plot_and_help(lab: Path, size: tuple[int, int]) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        table = app.runs_screen.table
        for row in (2, 3, 4):  # two experiments and the baseline (◆): colours against it
            table.move_cursor(row=row)
            await pilot.press("space")
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert_snapshot(app, "compare", size)
        await pilot.press("p")
        await settle(pilot)
        plot = app.screen
        assert isinstance(plot, PlotScreen)
        await wait_until(pilot, lambda: plot.chart is not None)
        await pilot.pause()
        assert_snapshot(app, "plot-steps", size)
        await pilot.press("escape", "escape", "question_mark")
        await settle(pilot)
        assert_snapshot(app, "help", size)

    run_app(lab, scenario, size=size)


@pytest.mark.parametrize("size", SIZES)
def test_snapshots_dialogs_and_the_data_tab(lab: Path, size: tuple[int, int]) -> None:
    """The column picker, the export dialog, the note prompt, and a run's Data tab."""
    from tui_helpers import add_events, append_runs, check, fixed, validation_event

    from mlci_tui.tui.screens.modals import ColumnsScreen, ExportScreen, PromptScreen

    train, test = "md5:" + "1" * 32, "md5:" + "2" * 32
    append_runs(
        lab,
        [
            dict(
                event_id=rid("g"),
                name="with-data",
                commit="c" * 40,
                time="2025-03-09T09:00:00.000000Z",
                metrics={"acc": 0.9},
                datasets={"data/train.csv": train, "data/test.csv": test},
            )
        ],
    )
    failing = [check("unique", "id", "fail", 3, "3 duplicate values"), check("min", "age", "pass")]
    add_events(
        lab,
        fixed(validation_event("data/train.csv", train, "c" * 40, "fail", failing, ""), "v", "2025-03-09T10:00:00Z"),
        fixed(validation_event("data/test.csv", test, "c" * 40, "pass", [], ""), "w", "2025-03-09T10:00:00Z"),
    )

    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, ColumnsScreen)
        assert_snapshot(app, "columns", size)
        await pilot.press("escape")
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        path = app.screen.query_one("#export-path")
        path.value = "/tmp/mlci-runs.csv"  # type: ignore[attr-defined]  # (temp paths are normalised anyway)
        app.screen.query_one("#export-format").focus()  # no blinking cursor in the picture
        await pilot.pause()
        assert_snapshot(app, "export", size)
        await pilot.press("escape")
        await pilot.press("enter")  # the newest run: the one with datasets
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.detail is not None)
        screen.query_one("#run-tabs").active = "tab-data"  # type: ignore[attr-defined]
        await settle(pilot)  # under load the tab's content may still be on its way
        await pilot.wait_for_scheduled_animations()  # the tab underline slides over
        await pilot.pause()
        assert_snapshot(app, "run-data", size)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one("#prompt-text").cursor_blink = False  # type: ignore[attr-defined]  # a steady cursor
        await settle(pilot)
        await pilot.wait_for_scheduled_animations()  # the dimmed screen behind fades in
        await pilot.pause()
        assert_snapshot(app, "note-prompt", size)

    run_app(lab, scenario, size=size)
