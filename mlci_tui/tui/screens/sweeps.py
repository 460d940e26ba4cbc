"""The sweeps screen: sweeps with their progress, the trials of the one under the cursor
(status, attempts, params, key metric), a best-so-far line, a trial's log, and start,
cancel, retry and a form that creates and queues a sweep.

Reads go through `mlci_tui.sweep.queue` in thread workers that post `SweepsLoaded`; writes are
the same core functions the `mlci sweep` commands call. Every string from the ledger
reaches a widget as `rich.text.Text` after `sanitize.display`.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static, TextArea

from mlci_tui.output import cell_text
from mlci_tui.sanitize import display
from mlci_tui.sweep import operations
from mlci_tui.sweep.config_schema import as_number
from mlci_tui.sweep.events import Sweep, Trial
from mlci_tui.sweep.queue import QueueState
from mlci_tui.sweep.runner import log_path
from mlci_tui.tui import actions
from mlci_tui.tui.messages import SweepsFailed, SweepsLoaded, post_answer
from mlci_tui.tui.screens.base import LedgerScreen
from mlci_tui.tui.theme import badge
from mlci_tui.tui.widgets.keybar import KeyBar
from mlci_tui.tui.widgets.tables import refill

BAR = 12
SPARK = "▁▂▃▄▅▆▇█"
SWEEP_COLUMNS = ("sweep", "method", "progress", "queued", "running", "failed", "metric", "best", "created")
STATE_STYLE = {"done": "green", "failed": "red", "running": "yellow", "queued": "", "cancelled": "dim"}


def progress_bar(done: int, total: int, width: int = BAR) -> str:
    filled = round(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


def best_so_far(sweep: Sweep) -> list[float]:
    """The best metric value after each finished trial, in trial order."""
    sign = 1.0 if sweep.spec.get("direction", "max") == "max" else -1.0
    out: list[float] = []
    best: float | None = None
    for trial in sweep.ordered():
        if trial.state == "done" and trial.value is not None:
            best = trial.value if best is None or sign * trial.value > sign * best else best
            out.append(best)
    return out


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1)))] for v in values)


def parse_params(text: str) -> dict[str, dict[str, list[Any]]]:
    """Form lines `name: kind a b c` (kind: values, range, uniform, loguniform, int) → a params space."""
    space: dict[str, dict[str, list[Any]]] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        words = rest.replace(",", " ").split()
        if not sep or not name.strip() or not words:
            raise ValueError(f"line {n}: write `name: kind values...`, e.g. `lr: range 0.1 0.4 0.1`")
        kind, args = words[0], words[1:]
        values: list[Any] = [v if (num := as_number(v)) is None else num for v in args]
        space[name.strip()] = {kind: values}
    if not space:
        raise ValueError("add at least one param, e.g. `lr: values 0.1 0.01`")
    return space


class SweepFormScreen(ModalScreen[dict[str, Any] | None]):
    """Create a sweep: name, params and their ranges, method, trials, metric, executor."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Queue")]
    DEFAULT_CSS = """
    SweepFormScreen #form-params { height: 6; }
    SweepFormScreen Input, SweepFormScreen Select { margin-bottom: 0; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(Text("New sweep"), classes="dialog-title")
            yield Input(placeholder="name, e.g. lr-search", id="form-name")
            yield Label(
                Text("params, one a line: name: values|range|uniform|loguniform|int ..."), classes="dialog-hint"
            )
            yield TextArea("lr: range 0.1 0.4 0.1\n", id="form-params")
            with Horizontal():
                yield Select(
                    [(m, m) for m in ("grid", "random", "tpe")], value="grid", allow_blank=False, id="form-method"
                )
                yield Select(
                    [(e, e) for e in ("local", "dask", "ci")], value="local", allow_blank=False, id="form-executor"
                )
            yield Input(placeholder="max trials (random/tpe; default 10)", id="form-trials")
            yield Input(placeholder="metric to rank trials by, e.g. acc", id="form-metric")
            yield Label(Text("ctrl+s queues it · esc cancels"), classes="dialog-hint")
            yield Static("", id="form-error", classes="error -visible")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Queue", id="form-save", variant="primary")
                yield Button("Cancel", id="form-cancel")

    def on_mount(self) -> None:
        self.query_one("#form-name", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "form-save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        name = self.query_one("#form-name", Input).value.strip()
        error = self.query_one("#form-error", Static)
        if not name:
            error.update(Text("give the sweep a name"))
            return
        try:
            params = parse_params(self.query_one("#form-params", TextArea).text)
        except ValueError as exc:
            error.update(Text(display(str(exc))))
            return
        data: dict[str, Any] = {
            "params": params,
            "method": self.query_one("#form-method", Select).value,
            "executor": self.query_one("#form-executor", Select).value,
        }
        trials = self.query_one("#form-trials", Input).value.strip()
        if trials:
            if not trials.isdigit() or int(trials) < 1:
                error.update(Text("max trials: a whole number, at least 1"))
                return
            data["max_trials"] = int(trials)
        metric = self.query_one("#form-metric", Input).value.strip()
        if metric:
            data["metric"] = metric
        self.dismiss({"name": name, "data": data})

    def show_error(self, message: str) -> None:
        self.query_one("#form-error", Static).update(Text(display(message)))

    def action_cancel(self) -> None:
        self.dismiss(None)


class SweepsScreen(LedgerScreen):
    SCOPE = "sweeps"
    BINDINGS: ClassVar[list[BindingType]] = actions.bindings("sweeps")  # type: ignore[assignment]
    DEFAULT_CSS = """
    SweepsScreen #sweeps-table { height: auto; max-height: 8; }
    SweepsScreen #trials-table { height: 1fr; }
    SweepsScreen #sweep-best { height: 1; padding: 0 1; }
    SweepsScreen #sweep-log { height: 8; border-top: solid $surface-lighten-1; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: dict[str, Sweep] = {}
        self.order: list[str] = []
        self.current: str | None = None
        self.log_trial: str | None = None
        self.started: list[subprocess.Popen[bytes]] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(" sweeps  loading…"), id="sweeps-title")
        yield DataTable(id="sweeps-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sweep-best")
        yield DataTable(id="trials-table", cursor_type="row", zebra_stripes=True)
        yield Static(Text("l: the log of the trial under the cursor"), id="sweep-log")
        yield KeyBar(self.SCOPE)

    def on_mount(self) -> None:
        self.query_one("#sweeps-table", DataTable).focus()
        self.reload()

    # ------------------------------------------------------------------ loading
    @work(thread=True, group="sweeps", exit_on_error=False)
    def request(self, generation: int) -> None:
        post_answer(self, generation, SweepsLoaded, SweepsFailed, lambda: QueueState(self.mlci.repo).sweeps)

    def on_sweeps_failed(self, message: SweepsFailed) -> None:
        message.stop()
        self.notify(message.value, severity="error", markup=False)

    def on_sweeps_loaded(self, message: SweepsLoaded) -> None:
        message.stop()
        if message.generation != self.generation:
            return
        self.sweeps = message.value
        self._show_sweeps()

    def _show_sweeps(self) -> None:
        table = self.query_one("#sweeps-table", DataTable)
        row = table.cursor_row
        self.order = [s.sweep_id for s in sorted(self.sweeps.values(), key=lambda s: s.created, reverse=True)]
        rows: list[list[Text]] = []
        for sid in self.order:
            s = self.sweeps[sid]
            counts = s.counts()
            top = s.best()
            rows.append(
                [
                    Text(display(s.name)),
                    Text(display(s.spec.get("method", ""))),
                    Text(progress_bar(counts["done"], len(s.trials)), style="green" if counts["done"] else ""),
                    Text(str(counts["queued"])),
                    Text(str(counts["running"])),
                    Text(str(counts["failed"]), style="red" if counts["failed"] else ""),
                    Text(display(s.spec.get("metric") or "")),
                    Text(cell_text(top.value) if top else ""),
                    Text(s.created[:19].replace("T", " ")),
                ]
            )
        refill(table, [Text(c) for c in SWEEP_COLUMNS], rows, row_keys=self.order)
        title = badge(self.app, "sweeps")
        title.append(f" {len(self.order)} sweep(s)", style="bold")
        self.query_one("#sweeps-title", Static).update(title)
        if self.order:
            table.move_cursor(row=min(max(row, 0), len(self.order) - 1))
            self.current = self.order[table.cursor_row]
            self._show_trials()
        else:
            self.current = None
            self.query_one("#trials-table", DataTable).clear(columns=True)
            self.query_one("#sweep-best", Static).update(Text("no sweeps yet: n creates one"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if event.data_table.id == "sweeps-table" and key and key != self.current:
            self.current = key
            self._show_trials()

    def _show_trials(self) -> None:
        sweep = self.sweeps.get(self.current or "")
        table = self.query_one("#trials-table", DataTable)
        row = table.cursor_row
        if sweep is None:
            table.clear(columns=True)
            return
        metric = sweep.spec.get("metric") or "value"
        names = list(sweep.spec.get("params", {}))
        labels = [Text(display(c)) for c in ("trial", "state", "attempts", "retries", *names, metric, "note")]
        trials = sweep.ordered()
        rows = [
            [
                Text(display(f"{sweep.name}-{t.number}")),
                Text(t.state, style=STATE_STYLE.get(t.state, "")),
                Text(str(t.attempts)),
                Text(str(t.requeues)),
                *[Text(display(cell_text(t.params.get(n)))) for n in names],
                Text(cell_text(t.value)),
                Text(display((t.reason or "")[:40])),
            ]
            for t in trials
        ]
        refill(table, labels, rows, row_keys=[t.trial_id for t in trials])
        if sweep.trials:
            table.move_cursor(row=min(max(row, 0), len(sweep.trials) - 1))
        series = best_so_far(sweep)
        best = self.query_one("#sweep-best", Static)
        if series:
            best.update(
                Text(f"best {display(metric)} so far: {sparkline(series)} {cell_text(series[-1])}", style="bold")
            )
        else:
            best.update(Text(f"best {display(metric)} so far: no finished trial yet"))
        if self.log_trial:
            self._show_log(self.log_trial)

    # ------------------------------------------------------------------ actions
    def _trial_under_cursor(self) -> Trial | None:
        sweep = self.sweeps.get(self.current or "")
        table = self.query_one("#trials-table", DataTable)
        if sweep is None or not sweep.trials or table.row_count == 0:
            return None
        return sweep.ordered()[min(table.cursor_row, len(sweep.trials) - 1)]

    def action_switch_table(self) -> None:
        sweeps = self.query_one("#sweeps-table", DataTable)
        (self.query_one("#trials-table", DataTable) if sweeps.has_focus else sweeps).focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_logs(self) -> None:
        trial = self._trial_under_cursor()
        if trial is None:
            self.notify("no trial under the cursor", markup=False)
            return
        self.log_trial = trial.trial_id
        self._show_log(trial.trial_id)

    def _show_log(self, tid: str) -> None:
        sweep = self.sweeps.get(self.current or "")
        trial = sweep.trials.get(tid) if sweep else None
        if sweep is None or trial is None:
            return
        path = log_path(self.mlci.repo, tid)
        head = f"log of {sweep.name}-{trial.number} ({trial.state})"
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - 4096))
                lines = fh.read().decode("utf-8", "replace").splitlines()[-6:]
        except OSError:
            lines = (trial.stderr_tail or "not on this machine; no stderr recorded").splitlines()[-6:]
            head += ", stderr tail from the ledger"
        self.query_one("#sweep-log", Static).update(Text(display(head + "\n" + "\n".join(lines), multiline=True)))

    def action_start(self) -> None:
        sweep = self.sweeps.get(self.current or "")
        if sweep is None:
            return
        # the same command as the CLI, detached: the sweep goes on if the TUI closes
        self.started.append(
            subprocess.Popen(
                [sys.executable, "-m", "mlci_tui", "sweep", "start", sweep.sweep_id],
                cwd=self.mlci.repo.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        self.notify(f"started sweep {display(sweep.name)}", markup=False)

    def action_cancel_sweep(self) -> None:
        self._write("cancel")

    def action_retry(self) -> None:
        self._write("retry")

    def _write(self, what: str) -> None:
        if self.current is None:
            return
        self._do_write(what, self.current)

    @work(thread=True, group="sweep-write", exit_on_error=False)
    def _do_write(self, what: str, sweep_id: str) -> None:
        try:
            if what == "cancel":
                sweep, count = operations.cancel_sweep(self.mlci.repo, sweep_id)
                text = f"sweep {sweep.name}: {count} queued trial(s) cancelled"
            else:
                sweep, count = operations.retry_sweep(self.mlci.repo, sweep_id)
                text = f"sweep {sweep.name}: {count} trial(s) queued again"
        except Exception as exc:
            self.app.call_from_thread(self.notify, display(str(exc)), severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, display(text), markup=False)
        self.app.call_from_thread(self.reload)

    def action_new_sweep(self) -> None:
        def created(result: dict[str, Any] | None) -> None:
            if result is not None:
                self._create(result["name"], result["data"])

        self.app.push_screen(SweepFormScreen(), created)

    @work(thread=True, group="sweep-write", exit_on_error=False)
    def _create(self, name: str, data: dict[str, Any]) -> None:
        try:
            sweep, count = operations.create_sweep(self.mlci.repo, name, data=data)
        except Exception as exc:
            self.app.call_from_thread(self.notify, display(str(exc)), severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, display(f"sweep {sweep.name}: {count} trial(s) queued"), markup=False)
        self.app.call_from_thread(self.reload)
