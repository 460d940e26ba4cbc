"""Groups of repeats in the TUI (issue 16): `m` folds the runs table into one row per group
(`mean ± sd (n)`, like `mlci runs --groups`), the baseline's group marked and the Δ columns
against its mean; a run's screen and Compare show its group beside its own value.

The ledger is real (fixed ids and times, read through the real DuckDB cache); the expected
means and standard deviations are computed here with `statistics`, not by mlci.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from tui_helpers import assert_snapshot, make_lab, promote, rid, run_app, screen_text, settle, wait_until

from mlci_tui.tui.app import MlciApp
from mlci_tui.tui.screens.compare import CompareScreen
from mlci_tui.tui.screens.run import RunScreen
from mlci_tui.tui.widgets.keybar import KeyBar

CONFIG = (
    "metrics:\n  fields:\n    acc: {direction: max}\n    loss: {direction: min}\n"
    "train:\n  repeats: {count: 3, seed_param: seed}\n"
)
BASE_ACC = [0.78, 0.80, 0.79]  # commit 2: the deployed run and its repeats
CNN_ACC = [0.90, 0.91, 0.92, 0.89]  # commit 3: four seeds


def _run(letter: str, day: int, commit: str, seed: int, acc: float, **extra: Any) -> dict[str, Any]:
    params = {"lr": 0.01, "model": "cnn" if commit == "3" else "linear", "seed": seed, **extra.pop("params", {})}
    return dict(
        event_id=rid(letter),
        time=f"2025-03-{day:02d}T09:00:00.000000Z",
        kind=extra.pop("kind", "commit" if seed == 0 else "ci"),
        message=extra.pop("message", f"commit {commit}"),
        branch="main",
        commit=commit * 40,
        params=params,
        metrics={"acc": acc, "loss": round(1 - acc, 4)},
        **extra,
    )


GROUPED_LAB = [
    _run("a", 1, "1", 0, 0.71, message="Baseline: logistic regression"),
    *(_run(x, 2 + i, "2", i, v, message="Raise learning rate") for i, (x, v) in enumerate(zip("bcd", BASE_ACC))),
    *(_run(x, 5 + i, "3", i, v, message="Switch to a small CNN") for i, (x, v) in enumerate(zip("efgh", CNN_ACC))),
    _run("i", 9, "3", 0, 0.55, name="cnn-lr-0.1", kind="experiment", params={"lr": 0.1}),
]


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_lab(root, GROUPED_LAB, config=CONFIG)
    promote(root, rid("b"))  # the deployed run: its group is the baseline's
    return root


def _spread(values: list[float], n: int) -> str:
    return f"{statistics.mean(values):.5g} ± {statistics.stdev(values):.2g} ({n})"


def _cell(app: MlciApp, row: int, key: str) -> str:
    table = app.runs_screen.table
    col = [c.key for c in table.columns].index(key)
    return table._cells(row)[col][0]


def _rows_by_id(app: MlciApp) -> dict[str, int]:
    return {run_id: n for n, run_id in enumerate(app.runs_screen.table.run_ids())}


def test_m_folds_the_table_into_groups_with_mean_sd_n_and_back(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        screen = app.runs_screen
        assert screen.table.row_count == 9 and screen.result is not None and screen.result.groups is None
        await pilot.press("m")
        await settle(pilot)
        result = screen.result
        assert result is not None and result.groups is not None
        rows = _rows_by_id(app)
        # newest first, a group where its newest run comes (as `mlci runs --groups`): the experiment
        # alone, the CNN's four seeds, the deployed commit's three, commit 1 alone
        assert list(rows) == [rid("i"), rid("h"), rid("d"), rid("a")]
        assert _cell(app, rows[rid("h")], "m:acc") == _spread(CNN_ACC, 4) == "0.905 ± 0.013 (4)"
        assert _cell(app, rows[rid("d")], "m:acc") == _spread(BASE_ACC, 3) == "0.79 ± 0.01 (3)"
        assert _cell(app, rows[rid("a")], "m:acc") == "0.71"  # a group of one: its value
        # the baseline's group is marked (the deployed run is b, its group's row d), and Δ is
        # against the group's mean, as the gate compares
        assert [r for r in rows if screen.table.is_baseline(r)] == [rid("d")]
        assert _cell(app, rows[rid("d")], "flags") == " ◆"
        assert _cell(app, rows[rid("h")], "d:acc") == "+0.115"
        assert _cell(app, rows[rid("d")], "d:acc") == "="
        text = screen_text(app)
        assert "9 runs in 4 groups" in text and "m Group" in text
        # a sort orders the groups by their means (in memory, the groups kept)
        screen.sort_by("m:acc")
        await settle(pilot)
        assert screen.result is not None and screen.result.groups is not None
        assert screen.table.run_ids() == [rid("h"), rid("d"), rid("a"), rid("i")]
        await pilot.press("m")
        await settle(pilot)
        assert screen.result is not None and screen.result.groups is None and screen.table.row_count == 9
        assert _cell(app, _rows_by_id(app)[rid("f")], "m:acc") == "0.91"
        keys = [c.key for c in screen.table.columns]
        assert screen.table.widths[keys.index("m:acc")] < 8  # the plain values' width again, not the groups'

    run_app(lab, scenario, size=(120, 30))


def test_a_filter_applies_before_the_fold(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("m")
        await settle(pilot)
        app.query_one("#filter").value = "acc > 0.9"  # type: ignore[attr-defined]
        await pilot.press("slash", "enter", "escape")
        await settle(pilot)
        assert _rows_by_id(app) == {rid("g"): 0}  # 0.92 and 0.91 of the CNN's seeds: a group of two
        assert _cell(app, 0, "m:acc") == _spread([0.92, 0.91], 2)
        assert "2 of 9 runs in 1 groups" in screen_text(app)

    run_app(lab, scenario, size=(120, 30))


def test_a_paged_view_is_read_whole_then_folded(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlci_tui.ledger.query import runs_view

    monkeypatch.setattr(runs_view, "FULL_VIEW_RUNS", 4)  # 9 runs: the view reads ids and pages, not every row

    async def scenario(app: MlciApp, pilot: Any) -> None:
        screen = app.runs_screen
        assert screen.result is not None and screen.result.groups is None
        await pilot.press("m")
        await settle(pilot)
        assert screen.result is not None and screen.result.groups is not None and screen.result.table is not None
        rows = _rows_by_id(app)
        assert list(rows) == [rid("i"), rid("h"), rid("d"), rid("a")]
        assert _cell(app, rows[rid("h")], "m:acc") == _spread(CNN_ACC, 4)

    run_app(lab, scenario, size=(120, 30))


def test_a_run_and_compare_show_the_group_beside_the_value(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        app.open_run(rid("c"))  # a repeat of the deployed run
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.group is not None, what="the run's group")
        await settle(pilot)
        text = screen_text(app)
        assert "group: mean ± sd (n)" in text and "◆ the baseline's group" in text
        assert _spread(BASE_ACC, 3) in text and "3 runs of this commit" in text
        acc_line = next(line for line in text.splitlines() if " acc " in f" {line} " and "±" in line)
        assert acc_line.index("0.8") < acc_line.index(_spread(BASE_ACC, 3))  # the run's value, then its group
        await pilot.press("escape")
        app.compare([rid("a"), rid("b"), rid("h")])
        await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        await wait_until(pilot, lambda: bool(compare.groups), what="the compared runs' groups")
        await settle(pilot)
        text = screen_text(app)
        line = next(line for line in text.splitlines() if "acc mean ± sd (n)" in line)
        assert _spread(BASE_ACC, 3) in line and _spread(CNN_ACC, 4) in line and "◆" in line
        assert compare.groups.keys() == {rid("b"), rid("h")}  # commit 1's run has no repeats

    run_app(lab, scenario, size=(160, 40))


def test_a_run_without_repeats_shows_no_group_column(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        app.open_run(rid("a"))
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.detail is not None)
        await settle(pilot)
        assert screen.group is None and "mean ± sd" not in screen_text(app)

    run_app(lab, scenario, size=(120, 30))


def test_the_key_bar_names_the_groups_key() -> None:
    bar = KeyBar("runs")
    assert ("m", "Group", "groups", False) in bar.entries


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_grouped_runs_table(lab: Path, size: tuple[int, int]) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("m")
        await settle(pilot)
        await pilot.pause()
        assert app.runs_screen.result is not None and app.runs_screen.result.groups is not None
        assert_snapshot(app, "runs-grouped", size)

    run_app(lab, scenario, size=size)
