"""The TUI at 80x24: what must be in sight (id, subject, the gate's metrics first), Compare's
columns sized by values, the plot legend outside the plot, and a key bar naming every key.
Real app, real ledger in a git repository, read through DuckDB (see tui_helpers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import git
from tui_helpers import AUTHOR, make_lab, promote, rid, run_app, screen_text, settle, wait_until

from mlci_tui.ledger.query.series import Series
from mlci_tui.tui import actions
from mlci_tui.tui.app import MlciApp
from mlci_tui.tui.screens.compare import CompareScreen
from mlci_tui.tui.screens.run import RunScreen
from mlci_tui.tui.widgets.keybar import KeyBar
from mlci_tui.tui.widgets.plot import Chart, build_chart

SMALL = (80, 24)

# loss is what the gate checks; acc has a direction; the other two have neither
GATED = """metrics:
  fields:
    acc: {direction: max}
    loss: {direction: min}
gate:
  rules:
    loss: {max_rise: 0.05}
"""


def _runs(n: int) -> list[dict[str, Any]]:
    return [
        dict(
            event_id=rid(letter),
            time=f"2025-03-0{i + 1}T09:00:00.000000Z",
            kind="commit",
            message=f"A rather long commit subject that says what run {i} changed in the model",
            author=AUTHOR,
            commit=str(i + 1) * 40,
            params={"lr": 0.1 / (i + 1), "model": "cnn"},
            metrics={"aaa_seconds": 10.0 + i, "acc": 0.7 + i / 100, "f1": 0.6 + i / 50, "loss": 0.5 - i / 20},
        )
        for i, letter in enumerate("abcdef"[:n])
    ]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_lab(root, _runs(4), config=GATED)
    promote(root, rid("a"))
    return root


def _header(app: MlciApp) -> str:
    table = app.runs_screen.table
    line = screen_text(app).splitlines()[table.region.y]
    return line


def test_at_80x24_the_runs_table_shows_id_subject_and_the_gates_metric_first(repo: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        header = _header(app)
        names = header.split()
        assert names[:2] == ["id", "subject"], header
        assert "loss" in names and "acc" in names, header  # two metrics in sight, not scrolled to
        assert names.index("loss") < names.index("acc"), header  # the gate's metric first
        assert "aaa_seconds" not in names, header  # no direction, not gated: after them
        assert len(header.rstrip()) <= 80
        text = screen_text(app)
        assert "A rather long commit" in text  # the subject, cut to leave the metrics room
        await pilot.press(*["right"] * 12)
        await settle(pilot)
        assert {"time", "branch"} & set(_header(app).split()), _header(app)  # the rest: scrolled to

    run_app(repo, scenario, size=SMALL)


def test_when_everything_fits_the_views_order_and_a_resize_rearranges(repo: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        table = app.runs_screen.table
        keys = [c.key for c in table.columns]
        assert keys[:4] == ["flags", "id", "time", "branch"], keys  # everything fits: nothing moves
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert [c.key for c in table.columns][:4] == ["flags", "id", "subject", "m:loss"]
        assert "loss" in _header(app).split()

    run_app(repo, scenario, size=(200, 40))


async def open_compare(app: MlciApp, pilot: Any, rows: tuple[int, ...]) -> CompareScreen:
    """Mark the runs table's `rows`, press c, and wait for Compare to show its result."""
    table = app.runs_screen.table
    for row in rows:
        table.move_cursor(row=row)
        await pilot.press("space")
    await pilot.press("c")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, CompareScreen)
    await wait_until(pilot, lambda: screen.result is not None)
    await pilot.pause()
    return screen


def test_compare_sizes_columns_by_values_not_by_the_author(repo: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await open_compare(app, pilot, (0, 1, 2))
        text = screen_text(app)
        for letter in "dcb":
            assert rid(letter)[:8] in text, text  # three runs side by side in 80 columns
        authors = [line for line in text.splitlines() if "Ada Lovelace" in line]
        assert len(authors) == 1 and "…" in authors[0] and "example.org" not in authors[0], text

    run_app(repo, scenario, size=SMALL)


def test_compare_marks_the_baseline_and_colours_against_it(repo: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        screen = await open_compare(app, pilot, (2, 3))  # run b and the baseline, run a
        assert "◆ " + rid("a")[:8] in screen_text(app)
        rows = {str(row[1]): row for row in (screen._row(r, 12, (1, True)) for r in screen.result.rows)}  # type: ignore[union-attr]
        loss, acc = rows["loss"], rows["acc"]
        green, red = app.theme_variables["success"], app.theme_variables["error"]
        assert green.lower() in str(loss[2].spans).lower()  # b's loss is lower: better
        assert green.lower() in str(acc[2].spans).lower()  # b's acc is higher: better
        assert red.lower() not in str(loss[2].spans).lower()

    run_app(repo, scenario, size=SMALL)


def test_the_plot_legend_is_below_the_plot_not_over_its_data() -> None:
    series = [
        Series(rid("a"), "first run", [0.0, 1.0, 2.0, 3.0], [0.9, 0.7, 0.5, 0.4]),
        Series(rid("b"), "second run", [0.0, 1.0, 2.0, 3.0], [0.8, 0.6, 0.45, 0.3]),
    ]
    lines = build_chart(Chart("line", "loss by step", "step", "loss", series), 60, 16).plain.splitlines()
    assert len(lines) == 16
    bottom = max(i for i, line in enumerate(lines) if "└" in line)  # the plot area's lower frame
    legend = [i for i, line in enumerate(lines) if "first run" in line or "second run" in line]
    assert legend and min(legend) > bottom, "\n".join(lines)
    assert "aaaaaaaa first run" in lines[legend[0]] and "bbbbbbbb second run" in lines[legend[0]]


@pytest.mark.parametrize("scope", ["runs", "run", "compare", "plot", "sweeps"])
def test_the_key_bar_names_every_action_and_widget_key_of_its_screen(scope: str) -> None:
    bar = KeyBar(scope)
    shown = [(key, label) for key, label, _action, _app in bar.entries]
    for a in actions.actions_for(scope) + actions.actions_for("app"):
        assert (a.first_key, a.label) in shown
    for m in actions.moves_for(scope):
        assert (m.key_display, m.description) in shown
    assert len(bar._layout(78)) <= 2  # 80 columns: two lines at most


def test_at_80x24_the_footer_shows_every_key_and_the_tabs(repo: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        text = screen_text(app)
        for entry in ("u Unmark", "r Refresh", "w Sweeps", "↑↓←→ Move", "q Quit", "^p"):
            assert entry in text, text
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "←→ Tabs" in text and "N Edit note" in text and "T Untag" in text, text

    run_app(repo, scenario, size=SMALL)
