"""The app driven by Textual's Pilot over real ledgers: every screen and binding."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import git, run_mlci
from tui_helpers import (
    append_runs,
    copy_repo,
    make_lab,
    promote,
    rid,
    run_app,
    screen_text,
    settle,
    wait_until,
)

from mlci_tui.gitio import Repo
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.tui.app import MlciApp
from mlci_tui.tui.screens.compare import CompareScreen
from mlci_tui.tui.screens.help import HelpScreen
from mlci_tui.tui.screens.modals import ExportScreen, PromptScreen
from mlci_tui.tui.screens.plot import PlotScreen
from mlci_tui.tui.screens.run import RunScreen
from mlci_tui.tui.widgets.plot import PlotView
from mlci_tui.tui.widgets.run_table import RunTable


@pytest.fixture(scope="module")
def lab_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lab") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    make_lab(root)
    with LedgerCache(Repo.find(root)).connect():  # build the cache once; copies start warm
        pass
    return root


@pytest.fixture
def lab(lab_master: Path, tmp_path: Path) -> Path:
    return copy_repo(lab_master, tmp_path / "repo")


def table(app: MlciApp) -> RunTable:
    return app.runs_screen.table


def ids(app: MlciApp) -> str:
    """The first letter of each run id, in table order (the lab's ids are aaaa…, bbbb…)."""
    return "".join(r[0] for r in table(app).run_ids())


def query(root: Path, sql: str, binds: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with LedgerCache(Repo.find(root)).connect() as con:
        return con.execute(sql, binds or []).fetchall()


async def goto_column(pilot: Any, app: MlciApp, key: str) -> None:
    t = table(app)
    target = [c.key for c in t.columns].index(key)
    while t.cursor_col != target:
        await pilot.press("right" if t.cursor_col < target else "left")


# ---------------------------------------------------------------------------- runs table


def test_runs_table_shows_runs_newest_first_with_metrics_and_differing_params(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        assert ids(app) == "fedcba"
        keys = [c.key for c in table(app).columns]
        # 120 columns do not hold them all: id, subject and the metrics first, the other fields after
        assert keys[:5] == ["flags", "id", "subject", "m:acc", "m:loss"]
        assert [k for k in keys if k in ("time", "branch", "kind", "status")] == ["time", "branch", "kind", "status"]
        assert [k for k in keys if k.startswith("p:")] == ["p:epochs", "p:lr", "p:model"]
        text = screen_text(app)
        assert "Switch to a small CNN" in text and "cnn-wide" in text
        assert "6 runs" in text

    run_app(lab, scenario)


def test_sort_by_key_and_by_header_click(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await goto_column(pilot, app, "m:acc")
        await pilot.press("s")
        await settle(pilot)
        assert ids(app) == "dcbaef"  # acc has direction max: best first; no acc (NaN run) last
        await pilot.press("s")
        await settle(pilot)
        assert ids(app) == "eabcdf"
        # a click on the loss header: direction min, best first
        t = table(app)
        n = [c.key for c in t.columns].index("m:loss")
        x = t.offsets[n] - t.fixed_width - int(t.scroll_x) + t.fixed_width + 2
        await pilot.click(RunTable, offset=(x, 0))
        await settle(pilot)
        assert app.runs_screen.spec.sort_key == "m:loss"
        assert ids(app) == "dcbaef"
        assert "sort loss ▲" in screen_text(app)

    run_app(lab, scenario)


def test_rows_are_read_page_by_page_as_they_scroll_into_sight(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The view reads the ordered ids and the first page of values; a page that scrolls into
    sight is read by a worker (its rows show their id meanwhile), and a refresh keeps the
    cursor's page read with the view."""
    from mlci_tui.ledger.query import runs_view
    from mlci_tui.ledger.query.runs_view import load_view
    from mlci_tui.tui.widgets import run_table

    monkeypatch.setattr(runs_view, "PAGE_ROWS", 4)
    monkeypatch.setattr(runs_view, "FULL_VIEW_RUNS", 10)  # a large ledger, as far as the view knows
    monkeypatch.setattr(runs_view, "COMPLETE_AFTER", 3600.0)  # (the rest of the values: at the end)
    monkeypatch.setattr(run_table, "PAGE", 4)
    append_runs(
        lab,
        [
            dict(name=f"old-{i:02d}", time=f"2024-{1 + i // 28:02d}-{1 + i % 28:02d}T09:00:00.000000Z")
            for i in range(60)
        ],
    )

    async def scenario(app: MlciApp, pilot: Any) -> None:
        t = table(app)
        result = app.runs_screen.result
        assert result is not None and result.count == 66 and sorted(result.pages) == [0]  # what the query read
        text = screen_text(app)  # rows 4-12 were read after the first paint, by a worker
        assert "old-59" in text and "old-53" in text and "old-00" not in text
        assert sorted(t._pages.keys()) == [0, 1, 2, 3, 4]  # the pages on screen, and the next one
        await pilot.press("end")
        await settle(pilot)
        rid_old_00 = t.run_ids()[-1]
        assert t.current_run_id == rid_old_00 and "old-00" in screen_text(app)
        assert 8 not in t._pages  # pages in between were never read
        await pilot.press("r")
        await settle(pilot)
        result = app.runs_screen.result
        assert result is not None and sorted(result.pages) == [0, 15, 16]  # the cursor's page came with the view
        assert t.current_run_id == t.run_ids()[-1] and "old-00" in screen_text(app)
        await goto_column(pilot, app, "subject")
        await pilot.press("s")  # a sort over a large ledger is a query
        await settle(pilot)
        result = app.runs_screen.result
        assert result is not None and result.table is None and result.spec.sort_key == "subject"
        at = [c.key for c in t.columns].index("subject")
        subjects = [t._cells(i)[at][0] for i in range(8)]  # pages 0 and 1: read with the view
        assert subjects[:3] == ["Baseline: logistic regression", "Raise learning rate", "Switch to a small CNN"]
        assert subjects == sorted(subjects) and t.current_run_id == rid_old_00  # the cursor kept its run
        # once the user pauses on a paged view, the rest of its values are read: a sort is then in memory
        monkeypatch.setattr(runs_view, "COMPLETE_AFTER", 0.05)
        await pilot.press("r")
        await wait_until(pilot, lambda: app.runs_screen.result and app.runs_screen.result.table is not None)
        await goto_column(pilot, app, "m:acc")
        await pilot.press("s")
        await settle(pilot)
        result = app.runs_screen.result
        assert result is not None and result.table is not None and result.spec.sort_key == "m:acc"
        by_sql = load_view(Repo.find(lab), result.spec, app.config, complete=False)
        assert result.ids.to_pylist() == by_sql.ids.to_pylist() and t.current_run_id == rid_old_00

    run_app(lab, scenario, size=(120, 20))


def test_mouse_click_moves_the_cursor_double_click_opens_flags_column_marks(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        t = table(app)
        await pilot.click(RunTable, offset=(20, 3))  # the third data row (row 0 is the header)
        assert t.cursor_row == 2 and t.current_run_id == rid("d")
        await pilot.click(RunTable, offset=(1, 4))  # the flags column of the fourth row
        assert app.marked == {rid("c")}
        await pilot.double_click(RunTable, offset=(20, 5))
        await settle(pilot)
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == rid("b")

    run_app(lab, scenario)


def test_filter_and_a_bad_filter_keep_the_previous_result(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("slash")
        await pilot.press(*'model !~ "q" and ')  # q and ? typed here are text, not quit or help
        await pilot.press(*'acc > 0.75 and model ~ "cnn.*"')
        await pilot.press("enter")
        await settle(pilot)
        assert app.is_running and ids(app) == "dc"
        assert "2 of 6 runs" in screen_text(app)
        assert app.runs_screen.error is None
        # the focus stays in the filter bar; the arrows move the table's cursor meanwhile
        assert app.focused is app.query_one("#filter")
        await pilot.press("down")
        assert table(app).current_run_id == rid("c")
        # a bad expression: inline error, previous rows stay
        await pilot.press("end")
        await pilot.press(*" and accx > 1")
        await pilot.press("enter")
        await settle(pilot)
        assert app.runs_screen.error is not None and "unknown name 'accx'" in app.runs_screen.error
        assert ids(app) == "dc"
        text = screen_text(app)
        assert "unknown name 'accx'" in text and "previous result" in text
        # raw SQL after the prefix; an error from DuckDB is shown the same way
        app.query_one("#filter").value = "sql: no_such_col > 1"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)
        assert "SQL:" in (app.runs_screen.error or "") and ids(app) == "dc"
        app.query_one("#filter").value = "sql: metrics['loss'] BETWEEN 1 AND 2"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)
        assert ids(app) == "e" and app.runs_screen.error is None
        await pilot.press("escape")
        assert app.focused is table(app)
        # a live refresh that overtakes a filter still running does not undo it
        screen = app.runs_screen
        screen.reload(screen.want(filter_text='kind = "commit"'))  # what enter does...
        screen.ledger_moved("a new tip")  # ...and the watcher, in the same tick
        await settle(pilot)
        assert ids(app) == "cba" and app.runs_screen.spec.filter_text == 'kind = "commit"'
        # nor does one after a bad filter bring the bad text back
        app.query_one("#filter").value = "kind ="  # type: ignore[attr-defined]
        await pilot.press("slash", "enter")
        await settle(pilot)
        app.runs_screen.ledger_moved("another tip")
        await settle(pilot)
        assert ids(app) == "cba" and app.runs_screen.error is not None

    run_app(lab, scenario)


def test_pin_baseline_adds_deltas_coloured_by_direction(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        t = table(app)
        assert not any(c.kind == "delta" for c in t.columns)
        t.move_cursor(row=ids(app).index("b"))
        await pilot.press("b")
        await settle(pilot)
        result = app.runs_screen.result
        assert result is not None and result.baseline is not None and result.baseline.run_id == rid("b")
        keys = [c.key for c in t.columns]
        assert "d:acc" in keys and "d:loss" in keys
        acc, loss = keys.index("d:acc"), keys.index("d:loss")
        row_c = ids(app).index("c")  # acc 0.91 vs 0.78 (max: better), loss 0.24 vs 0.51 (min: better)
        row_a = ids(app).index("a")  # acc 0.71 (worse), loss 0.62 (worse)
        cells_c, cells_a = t._cells(row_c), t._cells(row_a)
        assert cells_c[acc][:2] == ("+0.13", "better") and cells_c[loss][:2] == ("-0.27", "better")
        assert cells_a[acc][:2] == ("-0.07", "worse") and cells_a[loss][:2] == ("+0.11", "worse")
        assert t._cells(ids(app).index("b"))[acc][:2] == ("=", "muted")
        assert "baseline ◆ pinned bbbbbbbb" in screen_text(app)
        # b again on the pinned run unpins it
        await pilot.press("b")
        await settle(pilot)
        assert app.runs_screen.result is not None and app.runs_screen.result.baseline is None

    run_app(lab, scenario)


def test_the_deployed_run_is_the_default_baseline(lab: Path) -> None:
    promote(lab, rid("c"))

    async def scenario(app: MlciApp, pilot: Any) -> None:
        result = app.runs_screen.result
        assert result is not None and result.baseline is not None
        assert (result.baseline.run_id, result.baseline.how) == (rid("c"), "deployed")
        assert "baseline ◆ deployed cccccccc" in screen_text(app)

    run_app(lab, scenario)


def test_mark_and_compare_with_differences_only(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("c")  # nothing marked: a warning, no screen
        await settle(pilot)
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("space", "space", "space")  # marks f, e, d (space moves down)
        assert app.marked == {rid("f"), rid("e"), rid("d")}
        assert "3 marked" in screen_text(app)
        await pilot.press("up", "space")  # unmark d
        assert app.marked == {rid("f"), rid("e")}
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        assert screen.run_ids == [rid("f"), rid("e")]
        from textual.widgets import DataTable

        dt = screen.query_one(DataTable)
        assert len(dt.columns) == 4  # section, name, two runs
        all_rows = dt.row_count
        await pilot.press("d")
        assert 0 < dt.row_count < all_rows
        names = [str(dt.get_row_at(i)[1]) for i in range(dt.row_count)]
        assert "lr" in names and "model" not in names and "epochs" not in names  # same model, same epochs
        await pilot.press("d")
        assert dt.row_count == all_rows
        await pilot.press("escape")
        assert app.screen is app.runs_screen

    run_app(lab, scenario)


def test_open_a_run_and_add_a_note_and_a_tag(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        table(app).move_cursor(row=ids(app).index("c"))
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_id == rid("c")
        text = screen_text(app)
        assert "Switch to a small CNN" in text and "acc" in text and "0.91" in text
        # value at a step
        await pilot.click("#at-step")
        await pilot.press("2")
        await settle(pilot)
        assert "@ step 2" in screen_text(app)
        # a note, written as a ledger event
        screen.query_one("#metrics").focus()
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"wider net next")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await wait_until(pilot, lambda: screen.detail is not None and screen.detail.notes, what="the note")
        assert query(lab, "SELECT run_id, text FROM notes") == [(rid("c"), "wider net next")]
        screen.query_one("#run-tabs").active = "tab-notes"  # type: ignore[attr-defined]
        await pilot.pause()
        assert "wider net next" in screen_text(app)
        # edit it: a new note replaces the old one (which is redacted)
        await pilot.press("N")
        await settle(pilot)
        await pilot.press("end", *" (done)", "ctrl+s")
        await settle(pilot)
        await wait_until(pilot, lambda: screen.detail is not None and "(done)" in screen.detail.notes[-1][2])
        assert query(lab, "SELECT text FROM notes") == [("wider net next (done)",)]
        # a tag
        await pilot.press("t")
        await settle(pilot)
        await pilot.press(*"best", "enter")
        await settle(pilot)
        await wait_until(pilot, lambda: screen.detail is not None and screen.detail.tags == ["best"])
        assert query(lab, "SELECT run_id, name FROM tags") == [(rid("c"), "best")]
        # the runs table picks the change up (tags column appears)
        await pilot.press("escape")
        await wait_until(pilot, lambda: any(c.key == "tags" for c in table(app).columns), what="tags column")

    run_app(lab, scenario)


def test_run_detail_data_tab_shows_datasets_and_their_validation_results(lab: Path) -> None:
    """A run's datasets (path -> content hash), each with the latest validation of that
    content: status, failing checks (text from data shown literally), and older ones counted."""
    from tui_helpers import add_events, check, validation_event

    train, test = "md5:" + "1" * 32, "2" * 32  # (runs record a bare digest; validations `algo:digest`)
    commit = "c" * 40
    append_runs(
        lab,
        [
            dict(
                event_id=rid("g"),
                name="with-data",
                commit=commit,
                time="2025-03-09T09:00:00.000000Z",
                datasets={"data/train.csv": train, "data/test.csv": test, "data/[b]raw[/b].csv": "md5:" + "3" * 32},
            )
        ],
    )
    add_events(
        lab,
        validation_event(
            "data/train.csv", train, "a" * 40, "pass", [check("unique", "id", "pass")], "2025-03-08T09:00:00Z"
        ),
        validation_event(
            "data/train.csv",
            train,
            commit,
            "fail",
            [check("unique", "id", "fail", 3, "3 duplicate ids [red]x[/red]"), check("min", "age", "pass")],
            "2025-03-09T10:00:00Z",
        ),
        validation_event(
            "data/test.csv",
            "blake3:" + test,
            commit,
            "warn",
            [check("row_count", None, "warn", 0, "fewer rows")],
            "2025-03-09T10:00:00Z",
        ),
        validation_event("data/other.csv", "md5:" + "4" * 32, commit, "pass", [], "2025-03-09T10:00:00Z"),
        validation_event("data/unrelated.csv", "md5:" + "5" * 32, "b" * 40, "fail", [], "2025-03-09T10:00:00Z"),
    )

    async def scenario(app: MlciApp, pilot: Any) -> None:
        app.open_run(rid("g"))
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.detail is not None
        assert sorted(v.path for v in screen.detail.validations) == sorted(
            ["data/train.csv", "data/train.csv", "data/test.csv", "data/other.csv"]
        )
        screen.query_one("#run-tabs").active = "tab-data"  # type: ignore[attr-defined]
        await pilot.pause()
        text = screen_text(app)
        lines = [line.strip() for line in text.splitlines()]
        train_at = lines.index("data/train.csv  md5:111111111111")
        assert lines[train_at + 1].startswith("✗ fail  train · 1,200 rows · validated 2025-03-09 10:00 at cccccccccccc")
        assert lines[train_at + 1].endswith(" · 1 earlier validation of this content")
        assert lines[train_at + 2] == "✗ unique(id): 3 rows — 3 duplicate ids [red]x[/red]"  # literally
        test_at = lines.index("data/test.csv  2222222222222222")
        assert lines[test_at + 1].startswith("! warn") and lines[test_at + 2] == "! row_count — fewer rows"
        assert "data/[b]raw[/b].csv  md5:333333333333" in lines and "not validated" in lines
        assert "other validations at this commit" in lines and "data/other.csv  md5:444444444444" in lines
        assert "unrelated" not in text

    run_app(lab, scenario, size=(120, 60))


def test_plot_steps_commits_and_scatter(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        t = table(app)
        for letter in "cd":
            t.move_cursor(row=ids(app).index(letter))
            await pilot.press("space")
        await pilot.press("p")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PlotScreen)
        assert screen.mode == "steps" and screen.metric == "loss"  # acc has no series for run d; loss does
        await wait_until(pilot, lambda: screen.chart is not None)
        assert screen.chart is not None and len(screen.chart.series) == 2
        text = screen_text(app)
        assert "loss by step" in text and "step" in text
        assert "cccccccc Switch to a small" in text and "dddddddd cnn-wide" in text  # legend by run
        await pilot.press("m")
        await settle(pilot)
        assert screen.metric == "acc" and screen.chart is not None and len(screen.chart.series) == 1
        await pilot.press("2")
        await settle(pilot)
        assert "acc along the history of HEAD" in screen_text(app)
        assert screen.chart is not None and screen.chart.series[0].ticks == ["1111111", "2222222", "3333333"]
        await pilot.press("3")
        await settle(pilot)
        assert screen.mode == "scatter" and screen.chart is not None
        assert "against epochs" in screen_text(app)
        assert len(screen.chart.series[0].x) == 5
        # resize-aware: the chart is rebuilt at the new size
        view = screen.query_one(PlotView)
        assert view._cache is not None and view._cache[0][:2] == (120, view.content_region.height)
        await pilot.resize_terminal(100, 24)
        await pilot.pause()
        await pilot.pause()
        assert view._cache is not None and view._cache[0][:2] == (100, view.content_region.height)
        assert max(line.cell_len for line in view._cache[1].split()) == 100
        assert "acc against epochs" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is app.runs_screen

    run_app(lab, scenario)


def test_export_the_current_view_to_csv_json_and_markdown(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        app.query_one("#filter").value = "acc > 0.75"  # type: ignore[attr-defined]
        await pilot.press("slash", "enter", "escape")
        await settle(pilot)
        for fmt in ("csv", "json", "md"):
            await pilot.press("e")
            await settle(pilot)
            assert isinstance(app.screen, ExportScreen)
            await pilot.click(f"#format-{fmt}")
            path = app.screen.query_one("#export-path").value  # type: ignore[attr-defined]
            assert path.endswith(f".{fmt}")  # the suggested name follows the format
            app.screen.query_one("#export-path").value = str(lab / f"out.{fmt}")  # type: ignore[attr-defined]
            await pilot.click("#export-ok")
            await settle(pilot)
            await wait_until(pilot, (lab / f"out.{fmt}").exists, what=f"the {fmt} export")

    run_app(lab, scenario)
    rows = list(csv.DictReader((lab / "out.csv").read_text().splitlines()))
    assert [r["run_id"][0] for r in rows] == ["d", "c", "b"]
    assert rows[0]["acc"] == "0.93" and rows[0]["model"] == "cnn-wide"
    doc = json.loads((lab / "out.json").read_text())
    assert [r["run_id"] for r in doc] == [rid("d"), rid("c"), rid("b")]
    assert doc[1]["loss"] == 0.24 and doc[1]["lr"] == "0.01"
    lines = (lab / "out.md").read_text().splitlines()
    assert lines[0].startswith("| run\\_id | time | branch | subject |") and len(lines) == 5


def test_export_a_comparison(lab: Path) -> None:
    target = lab / "cmp.csv"

    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("space", "space", "c")
        await settle(pilot)
        await pilot.press("d", "e")
        await settle(pilot)
        app.screen.query_one("#export-path").value = str(target)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, target.exists, what="the export")

    run_app(lab, scenario)
    rows = list(csv.reader(target.read_text().splitlines()))
    assert rows[0] == ["section", "name", rid("f"), rid("e")]
    assert ["param", "lr", "1.0", "0.1"] in rows and not any(r[1] == "model" for r in rows)


def test_help_screen_and_command_palette(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "mlci tui: keys" in text and "Show every key binding" in text
        from mlci_tui.tui.screens.help import bindings_markdown

        assert "Compare the marked runs" in bindings_markdown()
        await pilot.press("escape")
        assert app.screen is app.runs_screen
        # every runs-screen action is in the palette; choosing one runs it
        commands = [c.title for c in app.get_system_commands(app.runs_screen)]
        from mlci_tui.tui.actions import actions_for

        for action in actions_for("runs"):
            assert any(title.startswith(action.description + " (") for title in commands), action
        # the screens' own actions are there too
        from mlci_tui.tui.actions import actions_for as scope_actions

        await pilot.press("enter")
        await settle(pilot)
        run_commands = [c.title for c in app.get_system_commands(app.screen)]
        for action in scope_actions("run"):
            assert any(title.startswith(action.description + " (") for title in run_commands), action
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"Help (")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help from the palette")
        await pilot.press("escape")
        # a screen's own action from the palette
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"Columns (")
        await pilot.pause(0.3)
        await pilot.press("enter")
        from mlci_tui.tui.screens.modals import ColumnsScreen

        await wait_until(pilot, lambda: isinstance(app.screen, ColumnsScreen), what="columns from the palette")

    run_app(lab, scenario)


def test_every_other_binding_and_every_screen_in_the_palette(lab: Path) -> None:
    """The bindings the other tests do not press: vim keys and paging, u, f1, b/space/T/p on a
    run, p on compare, 1/x/m on a plot, q; and each screen's actions in the command palette."""
    from mlci_tui.tui.actions import actions_for

    def in_palette(scope: str) -> None:
        titles = [c.title for c in app_ref[0].get_system_commands(app_ref[0].screen)]
        for action in actions_for(scope):
            assert any(title.startswith(action.description + " (") for title in titles), (scope, action)

    app_ref: list[MlciApp] = []

    async def scenario(app: MlciApp, pilot: Any) -> None:
        app_ref.append(app)
        t = table(app)
        await pilot.press("j", "j", "k")
        assert t.cursor_row == 1
        await pilot.press("G")
        assert t.cursor_row == 5
        await pilot.press("g")
        assert t.cursor_row == 0
        await pilot.press("pagedown")
        assert t.cursor_row == 5
        await pilot.press("pageup")
        assert t.cursor_row == 0
        col = t.cursor_col
        await pilot.press("l", "l", "h")
        assert t.cursor_col == col + 1
        await pilot.press("space", "space")
        assert len(app.marked) == 2
        await pilot.press("u")
        assert not app.marked and "marked" not in screen_text(app)
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        # one run: b pins it, space marks it, t then T tags and untags, p plots it
        await pilot.press("g", "j", "enter")
        await settle(pilot)
        run = app.screen
        assert isinstance(run, RunScreen) and run.run_id == rid("e")
        in_palette("run")
        await pilot.press("b")
        await settle(pilot)
        assert app.runs_screen.wanted.baseline == rid("e")
        await pilot.press("space")
        assert app.marked == {rid("e")}
        await pilot.press("t")
        await settle(pilot)
        await pilot.press(*"keep", "enter")
        await wait_until(pilot, lambda: run.detail is not None and run.detail.tags == ["keep"], what="the tag")
        await pilot.press("T")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("enter")  # the latest tag is proposed
        await wait_until(pilot, lambda: run.detail is not None and run.detail.tags == [], what="the tag removed")
        assert query(lab, "SELECT count(*) FROM tags")[0][0] == 0
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PlotScreen) and app.screen.run_ids == [rid("e")]
        await pilot.press("escape", "escape")
        # compare: p plots the compared runs
        await pilot.press("g", "space", "c")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        in_palette("compare")
        await pilot.press("p")
        await settle(pilot)
        plot = app.screen
        assert isinstance(plot, PlotScreen) and sorted(plot.run_ids) == sorted([rid("e"), rid("f")])
        in_palette("plot")
        # plot: 3 then x (next param), 1 back to steps, m (next metric)
        await pilot.press("3")
        await settle(pilot)
        before = plot.param
        await pilot.press("x")
        await settle(pilot)
        assert plot.mode == "scatter" and plot.param != before and plot.param is not None
        await pilot.press("1")
        await settle(pilot)
        assert plot.mode == "steps"
        metric = plot.metric
        await pilot.press("m")
        await settle(pilot)
        assert plot.metric != metric and plot.metric is not None
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert app.screen is app.runs_screen
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, what="quit")

    run_app(lab, scenario)


def test_column_picker_persists_per_repository(lab: Path) -> None:
    async def scenario(app: MlciApp, pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        from textual.widgets import SelectionList

        params = app.screen.query_one("#pick-params", SelectionList)
        params.deselect("model")
        params.select("lr")
        metrics = app.screen.query_one("#pick-metrics", SelectionList)
        metrics.deselect("acc")
        await pilot.press("ctrl+s")
        await settle(pilot)
        keys = [c.key for c in table(app).columns]
        assert "m:acc" not in keys and "p:model" not in keys and "p:lr" in keys

    run_app(lab, scenario)
    saved = json.loads((lab / ".git" / "mlci" / "tui.json").read_text())
    assert saved == {"metrics": ["loss"], "params": ["epochs", "lr"]}

    async def reopened(app: MlciApp, pilot: Any) -> None:
        keys = [c.key for c in table(app).columns]
        assert "m:acc" not in keys and "p:model" not in keys

    run_app(lab, reopened)


# ---------------------------------------------------------------------------- live refresh


def test_ledger_refreshed_while_the_app_is_open(lab: Path) -> None:
    """A commit captured by `mlci capture` in another process appears; the cursor stays on its
    run at the same height on screen, the table scrolled by the row that arrived above it."""
    older = [
        dict(name=f"old-{i:02d}", metrics={"acc": i / 100}, time=f"2025-02-{i + 1:02d}T09:00:00.000000Z")
        for i in range(28)
    ]
    append_runs(lab, older)

    async def scenario(app: MlciApp, pilot: Any) -> None:
        t = table(app)
        t.move_cursor(row=ids(app).index("b"))
        t.move_cursor(row=t.cursor_row + 20)  # scroll down into the old runs
        target = t.current_run_id
        scroll, screen_row = int(t.scroll_y), t.cursor_row - int(t.scroll_y)
        assert scroll > 0
        (lab / "params.yaml").write_text("lr: 0.005\nmodel: cnn-small\nepochs: 20\n")
        (lab / "metrics.json").write_text('{"acc": 0.95, "loss": 0.15}\n')
        git(lab, "add", "params.yaml", "metrics.json")
        git(lab, "commit", "-q", "-m", "Train for 20 epochs")
        proc = run_mlci(lab, "capture", "HEAD")
        assert proc.returncode == 0, proc.stderr
        await wait_until(pilot, lambda: len(t.run_ids()) == 35, what="the captured run")
        assert t.run_ids()[0] == query(lab, "SELECT run_id FROM runs WHERE message = 'Train for 20 epochs'")[0][0]
        assert t.current_run_id == target  # the cursor stayed on its run...
        assert (int(t.scroll_y), t.cursor_row - int(t.scroll_y)) == (scroll + 1, screen_row)  # ...at its height
        # a write from another writer (a sweep trial finishing) too
        append_runs(lab, [dict(name="trial-7", metrics={"acc": 0.5}, time="2025-03-09T09:00:00.000000Z")])
        await wait_until(pilot, lambda: len(t.run_ids()) == 36, what="the appended run")
        assert t.current_run_id == target and t.cursor_row - int(t.scroll_y) == screen_row

    run_app(lab, scenario)


# ---------------------------------------------------------------------------- hostile data


def test_markup_and_escapes_from_the_data_are_shown_literally(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    hostile = [
        dict(
            event_id=rid("h"),
            time="2025-03-01T09:00:00.000000Z",
            name="run-[/]",
            branch="[bold red]main",
            message="[link=https://evil.example]click[/link]",
            params={"[b]p": "[/]", "lr": 0.1},
            metrics={"\x1b[2Jx": 1.5, "acc": 0.5},
        ),
        dict(
            event_id=rid("i"),
            time="2025-03-02T09:00:00.000000Z",
            name="other\x1b]0;pwned\x07",
            params={"[b]p": "x", "lr": 0.2},
            metrics={"\x1b[2Jx": 2.5, "acc": 0.6},
            steps=[["s.tsv", "\x1b[2Jx", 0, 1.0], ["s.tsv", "\x1b[2Jx", 1, 2.0]],
        ),
    ]
    make_lab(root, hostile)

    async def scenario(app: MlciApp, pilot: Any) -> None:
        text = screen_text(app)
        assert "run-[/]" in text
        assert "\\x1b[2Jx" in text  # the metric name, escape made visible
        assert "[bold red]main" in text and "[b]p" in text
        assert "other\\x1b]0;pwned\\x07" in text
        svg = app.export_screenshot()
        assert "\x1b" not in svg
        await pilot.press("enter")  # newest first: the second run
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press(*"[red]note[/red]", "ctrl+s")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.detail is not None and screen.detail.notes)
        # a tag that looks like markup, echoed back in a notification
        await pilot.press("t")
        await settle(pilot)
        await pilot.press(*"[/]x", "enter")
        await settle(pilot)
        await wait_until(pilot, lambda: screen.detail is not None and screen.detail.tags == ["[/]x"], what="tag")
        assert app.is_running and "tag [/]x added" in screen_text(app)  # the toast, literally
        screen.query_one("#run-tabs").active = "tab-notes"  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: "[red]note[/red]" in screen_text(app), what="the notes tab")
        assert "[/]x" in screen_text(app)
        screen.query_one("#run-tabs").active = "tab-metrics"  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: "\\x1b[2Jx" in screen_text(app), what="the metrics tab")
        await pilot.press("p")
        await settle(pilot)
        plot = app.screen
        assert isinstance(plot, PlotScreen)
        await wait_until(pilot, lambda: plot.chart is not None)
        assert "\\x1b[2Jx by step" in screen_text(app)
        await pilot.press("escape", "escape", "space", "space", "c")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        assert "run-[/]" in screen_text(app) and "\\x1b[2Jx" in screen_text(app)
        await pilot.press("escape")
        app.query_one("#filter").value = "`\x1b[2Jx` > 2"  # type: ignore[attr-defined]
        await pilot.press("slash", "enter")
        await settle(pilot)
        assert app.runs_screen.error is None and len(table(app).run_ids()) == 1

    run_app(root, scenario, notifications=True)


# ---------------------------------------------------------------------------- imports


def test_mlci_tui_runs_in_a_real_terminal(lab: Path) -> None:
    """`mlci tui` as a real process on a pseudo-terminal: it paints the runs and quits on q."""
    import os
    import pty
    import select
    import struct
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns
        os.chdir(lab)
        os.environ["TERM"] = "xterm-256color"
        os.execvp(sys.executable, [sys.executable, "-m", "mlci_tui", "tui"])
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    out, sent, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"cnn-wide" in out:
            time.sleep(0.2)
            os.write(fd, b"q")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert sent, out[-2000:]
    assert os.waitstatus_to_exitcode(status) == 0 and b"Traceback" not in out


def test_cli_and_hooks_never_import_textual(repo: Path) -> None:
    probe = (
        "import sys, json\n"
        "import mlci_tui.cli.main, mlci_tui.hooks, mlci_tui.cli.runs\n"
        "mlci_tui.cli.main.build_parser()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'plotext', 'rich'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=repo)
    assert json.loads(out.stdout) == []
    # the control: the tui package does pull textual in
    out = subprocess.run(
        [sys.executable, "-c", probe.replace("mlci_tui.cli.runs\n", "mlci_tui.cli.runs, mlci_tui.tui.app\n")],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo,
    )
    assert "textual" in json.loads(out.stdout)


def test_mlci_tui_outside_a_repository_is_a_clean_error(tmp_path: Path) -> None:
    proc = run_mlci(tmp_path, "tui")
    assert proc.returncode != 0 and "not inside a git repository" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- ledger conflicts


def file_conflict(root: Path, record_id: str, body: bytes) -> None:
    """What a union merge files when a remote sends another body for a record: conflicts/<id>/<blob>.json."""
    tip = git(root, "rev-parse", "refs/mlci/ledger").strip()
    oid = git(root, "hash-object", "-w", "--stdin", input=body.decode()).strip()
    env = dict(os.environ, GIT_INDEX_FILE=str(root / ".git" / "conflict-index"))
    subprocess.run(["git", "read-tree", tip], cwd=root, env=env, check=True)
    subprocess.run(
        ["git", "update-index", "--add", "--cacheinfo", f"100644,{oid},conflicts/{record_id}/{oid}.json"],
        cwd=root,
        env=env,
        check=True,
    )
    tree = subprocess.run(["git", "write-tree"], cwd=root, env=env, check=True, capture_output=True, text=True)
    new = git(root, "commit-tree", tree.stdout.strip(), "-p", tip, "-m", "merge with a conflict").strip()
    git(root, "update-ref", "refs/mlci/ledger", new, tip)


def test_an_open_ledger_conflict_shows_in_the_status_bar(lab: Path) -> None:
    """A merge that kept this clone's body against another shows until `mlci ledger resolve`."""

    async def scenario(app: MlciApp, pilot: Any) -> None:
        assert "conflict" not in screen_text(app)
        file_conflict(lab, rid("a"), b'{"id":"forged"}\n')
        await wait_until(pilot, lambda: app.conflicts == 1, what="the conflict")
        await pilot.pause()
        assert "⚠ 1 ledger conflict(s)" in screen_text(app)
        proc = run_mlci(lab, "ledger", "resolve", rid("a"), "--keep", "ours")
        assert proc.returncode == 0, proc.stderr
        await wait_until(pilot, lambda: app.conflicts == 0, what="the resolution")
        await pilot.pause()
        assert "conflict" not in screen_text(app)

    run_app(lab, scenario)


def test_plot_mode_4_draws_the_dvc_plots_of_two_runs(repo: Path) -> None:
    """dvc.yaml's x/y plots (a ROC curve on fpr/tpr) for the marked runs: candidate and baseline overlaid."""
    import dvc_plot_project as project
    from conftest import commit

    shas = project.build(repo, commit)
    assert run_mlci(repo, "capture", "HEAD~1", "HEAD").returncode == 0

    async def scenario(app: MlciApp, pilot: Any) -> None:
        t = table(app)
        assert len(t.run_ids()) == 2
        for row in range(2):  # the newest (candidate) first, then the baseline
            t.move_cursor(row=row)
            await pilot.press("space")
        await pilot.press("p")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PlotScreen)
        await pilot.press("4")
        await settle(pilot)
        await wait_until(pilot, lambda: screen.chart is not None and screen.chart.series, what="the DVC plot")
        assert screen.dvc_plots == ["loss_and_acc", "eval/roc.json", "eval/prc.json", "logs/loss.csv"]
        assert screen.metric == "loss_and_acc" and screen.chart is not None and screen.chart.title == "training"
        await pilot.press("m")  # the next declared plot
        await settle(pilot)
        await wait_until(pilot, lambda: screen.metric == "eval/roc.json", what="the ROC plot")
        chart = screen.chart
        assert chart is not None and chart.title == "ROC curve" and (chart.xlabel, chart.ylabel) == ("fpr", "tpr")
        assert sorted(s.label.split()[0] for s in chart.series) == ["baseline", "candidate"]
        candidate = next(s for s in chart.series if s.label.startswith("candidate"))
        assert candidate.x == project.ROC_FPR
        assert "ROC curve" in screen_text(app)
        await pilot.press("m")
        await settle(pilot)
        await wait_until(pilot, lambda: screen.metric == "eval/prc.json", what="the PR plot")
        assert screen.chart is not None and screen.chart.xlabel == "recall"

    assert shas
    run_app(repo, scenario)


def test_D_in_a_run_diffs_its_datasets_against_the_baseline(repo: Path) -> None:
    """Rows added, removed and changed in the run's dataset against the baseline run's version."""
    from conftest import commit, write

    write(
        repo,
        {
            "mlci.yaml": "datasets:\n  t:\n    path: data/t.csv\n    primary_key: [id]\n",
            "data/t.csv": "id,v\n1,10\n2,20\n3,30\n",
            "metrics.json": '{"acc": 0.5}\n',
        },
    )
    assert run_mlci(repo, "data", "add", "data/t.csv").returncode == 0
    commit(repo, {}, "base data", no_verify=True)
    assert run_mlci(repo, "capture", "HEAD").returncode == 0
    assert run_mlci(repo, "promote", "HEAD").returncode == 0
    (repo / "data/t.csv").unlink()
    write(repo, {"data/t.csv": "id,v\n1,10\n2,21\n4,40\n", "metrics.json": '{"acc": 0.6}\n'})
    assert run_mlci(repo, "data", "add", "data/t.csv").returncode == 0
    commit(repo, {}, "new data", no_verify=True)
    assert run_mlci(repo, "capture", "HEAD").returncode == 0

    async def scenario(app: MlciApp, pilot: Any) -> None:
        t = table(app)
        t.move_cursor(row=0)  # the newest run: the candidate
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.detail is not None, what="the run")
        await pilot.press("D")
        await wait_until(pilot, lambda: "against the baseline" in screen.data_text.plain, what="the data diff")
        text = screen.data_text.plain
        assert "rows 3 -> 3: 1 added, 1 removed, 1 changed, 1 unchanged" in text, text
        assert "v: 1 changed: id=2: 20 -> 21" in text, text

    run_app(repo, scenario)
