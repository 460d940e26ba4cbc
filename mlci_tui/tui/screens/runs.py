"""The runs screen: the filter bar, the virtual runs table, marks, baseline, sort, export."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from mlci_tui.ledger.held import Interruptible, cache_looks_current
from mlci_tui.ledger.query import runs_view
from mlci_tui.ledger.query.baseline import DEFAULT_STAGE
from mlci_tui.ledger.query.filter import FilterError
from mlci_tui.ledger.query.groups import fold_view
from mlci_tui.ledger.query.runs_view import (
    LedgerInfo,
    ViewResult,
    ViewSpec,
    complete_view,
    load_view,
    sort_view,
)
from mlci_tui.sanitize import display
from mlci_tui.tui import actions, cells, export
from mlci_tui.tui.messages import RunsFailed, RunsLoaded, RunsProgress, post_answer
from mlci_tui.tui.screens.base import LedgerScreen
from mlci_tui.tui.settings import load_settings, save_settings
from mlci_tui.tui.theme import badge, tone
from mlci_tui.tui.widgets.keybar import KeyBar
from mlci_tui.tui.widgets.run_table import RunTable

if TYPE_CHECKING:
    import pyarrow
    from textual.timer import Timer


FILTER_HINT = 'filter: acc > 0.9 and lr in (0.1, 0.01) · model ~ "cnn.*" · min(loss) < 0.2 · sql: <predicate>'


class CompletionCancelled(Exception):
    """A background completion that a newer action overtook before it started reading."""


class FilterInput(Input):
    """The filter bar. Enter applies the filter and keeps the focus here, so the next try is
    one edit away (and the footer is not rebuilt while the query runs); the arrow and page
    keys move the table's cursor meanwhile; esc goes back to the table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Back to the table", show=False),
        Binding("up", "table('cursor_up')", show=False),
        Binding("down", "table('cursor_down')", show=False),
        Binding("pageup", "table('page_up')", show=False),
        Binding("pagedown", "table('page_down')", show=False),
    ]

    def action_leave(self) -> None:
        self.screen.query_one(RunTable).focus()

    def action_table(self, action: str) -> None:
        getattr(self.screen.query_one(RunTable), f"action_{action}")()


class RunsScreen(LedgerScreen):
    SCOPE = "runs"
    BINDINGS: ClassVar[list[BindingType]] = actions.bindings("runs")  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.spec = ViewSpec()  # what the table shows
        self.wanted = self.spec  # what the user asked for last (a query may still be running)
        self.info: LedgerInfo | None = None
        self.result: ViewResult | None = None
        self.shown_generation = 0
        self.error: str | None = None
        self.busy = False
        self.note: str | None = None  # what a slow load is doing
        self._completion: Timer | None = None  # reads the rest of a paged view, once the user pauses
        self._completing: Interruptible | None = None  # the connection reading it
        self._complete_token: object | None = None  # the completion allowed to run (None: none)
        self.grouped = False  # one row per group of repeats (`m`)

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield FilterInput(placeholder=FILTER_HINT, id="filter")
        yield Static(id="filter-error", classes="error")
        yield RunTable(id="runs")
        yield KeyBar(self.SCOPE)

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    def on_mount(self) -> None:
        settings = load_settings(self.mlci.repo)
        if isinstance(settings.get("metrics"), list):
            self.wanted.metrics = [str(m) for m in settings["metrics"]]
        if isinstance(settings.get("params"), list):
            self.wanted.params = [str(p) for p in settings["params"]]
        self.table.marked = self.mlci.marked
        self.table.focus()
        self.reload()
        self.update_status()

    # ------------------------------------------------------------------ loading
    def want(self, **changes: object) -> ViewSpec:
        """The spec the user asked for last, with some changes."""
        return ViewSpec(**{**self.wanted.__dict__, **changes})

    def reload(self, spec: ViewSpec | None = None) -> None:
        """Query again (in a worker); the answer arrives as a RunsLoaded or RunsFailed message.

        Without a spec (a live refresh), the last one asked for: a filter still running is
        not undone by a refresh that overtakes it."""
        if spec is not None:
            self.wanted = spec
        self._cancel_completion()
        self.generation += 1
        self.busy = True
        self._load(self.generation, self.wanted, self.info, self.table.current_run_id, self.grouped)

    @work(thread=True, group="view", exit_on_error=False)
    def _load(
        self, generation: int, spec: ViewSpec, known: LedgerInfo | None, keep: str | None = None, grouped: bool = False
    ) -> None:
        """`keep`: the run under the cursor, whose rows the query reads along with the first;
        `grouped`: the view folded into groups of repeats."""
        app = self.mlci
        if not cache_looks_current(app.repo):  # tell the user why it takes a while
            self.post_message(RunsProgress(generation, "reading new ledger records into the query cache…"))

        def load() -> ViewResult:
            result = load_view(app.repo, spec, app.config, known=known, keep=keep)
            return fold_view(app.repo, result, app.config) if grouped else result

        post_answer(self, generation, RunsLoaded, RunsFailed, load, expected=(FilterError,))

    def on_runs_progress(self, message: RunsProgress) -> None:
        message.stop()
        if message.generation == self.generation:
            self.note = message.value
            self.update_status()

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        message.stop()
        if message.generation < self.shown_generation:
            return
        self.note = None
        self.shown_generation = message.generation
        self.busy = message.generation != self.generation
        result: ViewResult = message.value
        keep = self.table.current_run_id
        if result.groups is not None and keep is not None and result.groups.group(keep) is None:
            keep = next((row for row, g in result.groups.by_row.items() if keep in {r.run_id for r in g.runs}), keep)
        self.result = result
        self.spec = result.spec
        self.info = result.info
        self.table.set_result(result, keep=keep)
        self._cancel_completion()
        if result.table is None:  # a paged view: read the rest once the user pauses on it
            self._completion = self.set_timer(runs_view.COMPLETE_AFTER, lambda: self._start_completion(result))
        if result.spec.filter_text == self.query_one("#filter", Input).value:
            self._set_error(None)  # (a live refresh under a bad filter being typed keeps its error)
        self.update_status()
        self.mlci.view_painted(result)

    def _cancel_completion(self) -> None:
        """A new action goes first: stop reading the rest of the last view."""
        if self._completion is not None:
            self._completion.stop()
            self._completion = None
        self._complete_token = None  # a completion not yet reading stops when it opens
        con, self._completing = self._completing, None
        if con is not None:
            try:
                con.interrupt()
            except Exception:  # already closed
                pass

    def _start_completion(self, result: ViewResult) -> None:
        self._completion = None
        if result is self.result and not self.busy:
            token = self._complete_token = object()
            self._complete(result, token)

    @work(thread=True, group="complete", exclusive=True, exit_on_error=False)
    def _complete(self, result: ViewResult, token: object) -> None:
        """Read every row of a paged view, never after the action that cancelled it. A
        completion cancelled before it had opened its connection (nothing to interrupt yet)
        used to read the whole view anyway, beside the next query and the next completion:
        full reads of 100k runs held at once (issue 19's suspect for a 897 MB peak)."""
        mine: list[Interruptible] = []

        def opened(con: Interruptible) -> None:
            mine.append(con)
            self._completing = con
            if self._complete_token is not token:  # cancelled meanwhile (checked after publishing `con`)
                raise CompletionCancelled

        try:
            table = complete_view(self.mlci.repo, result, self.mlci.config, opened)
        except Exception:  # interrupted, or the ledger moved: only an optimisation (a sort then queries)
            return
        finally:
            if mine and self._completing is mine[0]:
                self._completing = None
        if table is not None:
            self.app.call_from_thread(self._completed, result, table)

    def _completed(self, result: ViewResult, table: pyarrow.Table) -> None:
        if result is self.result:
            result.table = table

    def on_runs_failed(self, message: RunsFailed) -> None:
        message.stop()
        if message.generation < self.shown_generation:
            return
        self.shown_generation = message.generation
        self.busy = message.generation != self.generation
        if not self.busy:
            self.wanted = self.spec  # later refreshes use the last spec that worked
        self.note = None
        self._set_error(message.value)
        self.update_status()
        if self.result is None:
            self.table.empty_text = "could not read the ledger"
            self.table.refresh()

    def _set_error(self, error: str | None) -> None:
        if error == self.error:
            return  # no layout pass when nothing changed
        self.error = error
        box = self.query_one("#filter-error", Static)
        box.update(Text(f"✗ {error}  (the table still shows the previous result)") if error else Text(""))
        box.set_class(bool(error), "-visible")

    def marks_changed(self) -> None:
        """The app's set of marked runs changed: repaint the flags and the count."""
        self.table.repaint()
        self.update_status()

    def update_status(self) -> None:
        app = self.app
        status = badge(app, "mlci")
        status.append(f" {display(self.mlci.repo.root.name)} ", style=f"bold {tone(app, 'foreground')}")
        if self.mlci.conflicts:  # first: a narrow terminal cuts the end of the line, never this
            status.append(f" ⚠ {self.mlci.conflicts} ledger conflict(s) ", style=f"bold {tone(app, 'warning')}")
        result = self.result
        if result is None:
            status.append(" · loading…")
        else:
            shown, total = result.count, result.info.total
            if result.groups is not None:  # one row a group
                runs = result.groups.runs
                status.append(f" · {runs:,} of {total:,} runs" if runs != total else f" · {total:,} runs")
                status.append(f" in {shown:,} groups", style=f"bold {tone(app, 'key')}")
            else:
                status.append(f" · {shown:,} of {total:,} runs" if shown != total else f" · {total:,} runs")
            if result.spec.sort_key:
                label = next((c.label for c in result.columns if c.key == result.spec.sort_key), result.spec.sort_key)
                status.append(f" · sort {display(label)} {'▼' if result.spec.descending else '▲'}")
            base = result.baseline
            if base:
                status.append(" · baseline ")
                status.append(f"◆ {base.how} {base.run_id[:8]}", style=f"bold {tone(app, 'baseline')}")
                room = self.size.width - status.cell_len - 36  # the label only where it leaves room for the rest
                if base.label and room >= 8:
                    status.append(" " + cells.fit(display(base.label), min(30, room)).rstrip())
            if self.mlci.timings:
                status.append(f" · {result.seconds * 1000:.0f} ms", style="dim")
        if self.mlci.marked:
            status.append(" · ")
            status.append(f"● {len(self.mlci.marked)} marked", style=f"bold {tone(app, 'key')}")
        if self.note:
            status.append(f" · {self.note}", style="italic")
        elif self.busy and result is not None:
            status.append(" · refreshing…", style="dim")
        self.query_one("#status", Static).update(status, layout=False)  # one fixed line: no layout pass

    # ------------------------------------------------------------------ filter
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        event.stop()
        self.reload(self.want(filter_text=event.value))

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    # ------------------------------------------------------------------ table actions
    def on_run_table_opened(self, event: RunTable.Opened) -> None:
        self.mlci.open_run(event.run_id)

    def action_open_run(self) -> None:
        run_id = self.table.current_run_id
        if run_id:
            self.mlci.open_run(run_id)

    def on_run_table_sort_requested(self, event: RunTable.SortRequested) -> None:
        self.sort_by(event.key)

    def action_sort(self) -> None:
        column = self.table.current_column
        if column is not None:
            self.sort_by(column.key)

    def sort_by(self, key: str) -> None:
        if key == self.wanted.sort_key:
            descending = not self.wanted.descending
        else:
            column = next((c for c in self.table.columns if c.key == key), None)
            direction = column.direction if column else None
            descending = (
                key == "time" or direction == "max" or (column is not None and direction is None and column.numeric)
            )
        if self.result is not None and self.result.table is not None and not self.busy:
            self.wanted = self.want(sort_key=key, descending=descending)
            self.generation += 1
            self.busy = True
            self._sort(self.generation, self.result, key, descending)
        else:
            self.reload(self.want(sort_key=key, descending=descending))

    @work(thread=True, group="view", exit_on_error=False)
    def _sort(self, generation: int, result: ViewResult, key: str, descending: bool) -> None:
        """Sort a complete view in memory; a query when it is not complete or lacks the column."""
        try:
            sorted_result = sort_view(result, key, descending)
        except Exception as exc:  # (a None result asks for a query instead: not post_answer's shape)
            self.post_message(RunsFailed(generation, display(f"{type(exc).__name__}: {exc}")))
            return
        if sorted_result is None:
            spec = ViewSpec(**{**result.spec.__dict__, "sort_key": key, "descending": descending})
            keep = self.table.current_run_id
            self.app.call_from_thread(self._load, generation, spec, self.info, keep, result.groups is not None)
            return
        self.post_message(RunsLoaded(generation, sorted_result))

    def action_mark(self) -> None:
        if self.table.toggle_mark():
            self.table.action_cursor_down()
        self.update_status()

    def action_clear_marks(self) -> None:
        self.table.clear_marks()
        self.update_status()

    def marked_in_order(self) -> list[str]:
        """The marked runs in table order (marked runs the filter hides come last)."""
        ids = [r for r in self.table.run_ids() if r in self.mlci.marked] if len(self.mlci.marked) else []
        return ids + sorted(self.mlci.marked - set(ids))

    def action_compare(self) -> None:
        ids = self.marked_in_order()
        if len(ids) < 2:
            self.notify("Mark two or more runs with space, then compare", severity="warning", markup=False)
            return
        self.mlci.compare(ids)

    def action_plot(self) -> None:
        ids = self.marked_in_order() or [r for r in [self.table.current_run_id] if r]
        if not ids:
            self.notify("No run to plot", severity="warning", markup=False)
            return
        self.mlci.plot(ids)

    def action_baseline(self) -> None:
        run_id = self.table.current_run_id
        if not run_id:
            return
        self.pin_baseline(None if self.wanted.baseline == run_id else run_id)

    def pin_baseline(self, run_id: str | None) -> None:
        if run_id is None:
            deployed = self.info.stages.get(DEFAULT_STAGE) if self.info else None
            self.notify(
                f"Baseline: the {DEFAULT_STAGE} run" if deployed else "Baseline cleared",
                title="Baseline",
                markup=False,
            )
        else:
            self.notify(f"Baseline pinned: {run_id[:8]}", title="Baseline", markup=False)
        self.reload(self.want(baseline=run_id))

    def action_groups(self) -> None:
        self.grouped = not self.grouped
        self.notify(
            "One row per group of repeats: mean ± sd (n)" if self.grouped else "One row per run",
            title="Groups",
            markup=False,
        )
        self.reload()

    def action_refresh(self) -> None:
        self.mlci.query_cache.recheck()  # the ledger tip from git, not only the ref files' stat
        self.reload()

    # ------------------------------------------------------------------ columns
    def action_columns(self) -> None:
        from mlci_tui.tui.screens.modals import ColumnsScreen

        if self.result is None or self.info is None:
            return
        shown_metrics = [c.name for c in self.result.columns if c.kind == "metric"]
        shown_params = [c.name for c in self.result.columns if c.kind == "param"]

        def chosen(answer: tuple[list[str], list[str]] | None) -> None:
            if answer is None:
                return
            metrics, params = answer
            settings = load_settings(self.mlci.repo)
            settings.update({"metrics": metrics, "params": params})
            try:
                save_settings(self.mlci.repo, settings)
            except OSError as exc:
                self.notify(display(f"could not save the columns: {exc}"), severity="error", markup=False)
            self.reload(self.want(metrics=metrics, params=params))

        self.app.push_screen(ColumnsScreen(self.info.metrics, self.info.params, shown_metrics, shown_params), chosen)

    # ------------------------------------------------------------------ export
    def action_export(self) -> None:
        from mlci_tui.tui.screens.modals import ExportScreen

        result = self.result
        if result is None:
            return
        stem = "mlci-runs-" + time.strftime("%Y%m%d-%H%M%S")

        def chosen(answer: tuple[str, Path] | None) -> None:
            if answer is not None:
                self._export(result, *answer)

        self.app.push_screen(ExportScreen(self.mlci.repo.root, stem, f"{result.count:,} runs"), chosen)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, result: ViewResult, fmt: str, path: Path) -> None:
        try:
            count = export.write_view(self.mlci.repo, result, fmt, path)
        except Exception as exc:
            self.app.call_from_thread(self.notify, display(f"export failed: {exc}"), severity="error", markup=False)
            return
        self.app.call_from_thread(
            self.notify,
            display(f"{count:,} runs written to {path}"),
            title=f"Exported {fmt.upper()}",
            markup=False,
        )
