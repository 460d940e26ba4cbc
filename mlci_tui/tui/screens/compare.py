"""Two or more runs side by side, transposed: one column per run, one row per field, param
and metric; `d` keeps only the rows that differ. The best value of a metric with a known
direction is highlighted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import DataTable, Footer, Static

from mlci_tui.ledger.query.compare import CompareResult, load_compare
from mlci_tui.numbers import digits_to_tell_apart
from mlci_tui.sanitize import display
from mlci_tui.tui import actions, cells, export
from mlci_tui.tui.messages import CompareFailed, CompareLoaded, post_answer
from mlci_tui.tui.screens.base import LedgerScreen
from mlci_tui.tui.widgets.tables import refill

if TYPE_CHECKING:
    pass


def best_index(values: list[Any], direction: str | None) -> int | None:
    numbers = [(v, i) for i, v in enumerate(values) if isinstance(v, (int, float)) and v == v]
    if direction not in ("max", "min") or len(numbers) < 2 or len({v for v, _ in numbers}) < 2:
        return None
    return (max(numbers) if direction == "max" else min(numbers))[1]


class CompareScreen(LedgerScreen):
    SCOPE = "compare"
    BINDINGS: ClassVar[list[BindingType]] = actions.bindings("compare")  # type: ignore[assignment]

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = run_ids
        self.result: CompareResult | None = None
        self.differences_only = False

    def compose(self) -> ComposeResult:
        yield Static(Text(f" compare {len(self.run_ids)} runs  loading…"), id="compare-title")
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one(DataTable).focus()

    @work(thread=True, group="compare", exit_on_error=False)
    def request(self, generation: int) -> None:
        post_answer(
            self,
            generation,
            CompareLoaded,
            CompareFailed,
            lambda: load_compare(self.mlci.repo, self.run_ids, self.mlci.config.direction),
        )

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        message.stop()
        if message.generation != self.generation:
            return
        self.result = message.value
        self._show()

    def on_compare_failed(self, message: CompareFailed) -> None:
        message.stop()
        self.notify(message.value, title="Error", severity="error", markup=False)

    def _show(self) -> None:
        result = self.result
        if result is None:
            return
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        labels = [Text(""), Text("name")]
        for run in result.runs:
            label = Text(f"{run['run_id'][:8]} ", style="bold")
            label.append(display(run["label"])[:24])
            labels.append(label)
        rows: list[list[Text]] = []
        for row in result.rows:
            if self.differences_only and not row.differs:
                continue
            best = best_index(row.values, row.direction)
            values = []
            digits = digits_to_tell_apart(row.values)
            for i, v in enumerate(row.values):
                text = Text(cells.plain(v, digits))
                if i == best:
                    text.stylize("bold green")
                elif row.differs and row.section != "run":
                    text.stylize("bold")
                values.append(text)
            rows.append([Text(row.section, style="dim"), cells.safe(row.name), *values])
        keys = ["section", "name", *(f"run{n}" for n in range(len(result.runs)))]
        refill(table, labels, rows, column_keys=keys)
        shown = len(rows)
        if shown:
            table.move_cursor(row=min(cursor, shown - 1))
        title = Text()
        title.append(f" compare {len(result.runs)} runs ", style="bold reverse")
        title.append(f"  {shown} of {len(result.rows)} rows")
        title.append("  · differences only" if self.differences_only else "  · all rows (d: differences only)")
        missing = len(self.run_ids) - len(result.runs)
        if missing:
            title.append(f"  · {missing} run(s) no longer in the ledger", style="yellow")
        self.query_one("#compare-title", Static).update(title)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_toggle_differences(self) -> None:
        self.differences_only = not self.differences_only
        self._show()

    def action_plot(self) -> None:
        self.mlci.plot(self.run_ids)

    def action_export(self) -> None:
        from mlci_tui.tui.screens.modals import ExportScreen

        result = self.result
        if result is None:
            return
        only = self.differences_only

        def chosen(answer: tuple[str, Path] | None) -> None:
            if answer is not None:
                self._export(result, only, *answer)

        stem = "mlci-compare-" + time.strftime("%Y%m%d-%H%M%S")
        self.app.push_screen(
            ExportScreen(self.mlci.repo.root, stem, f"a comparison of {len(result.runs)} runs"), chosen
        )

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, result: CompareResult, only: bool, fmt: str, path: Path) -> None:
        try:
            count = export.write_compare(result, fmt, path, differences_only=only)
        except OSError as exc:
            self.app.call_from_thread(self.notify, display(f"export failed: {exc}"), severity="error", markup=False)
            return
        self.app.call_from_thread(
            self.notify, display(f"{count} rows written to {path}"), title="Exported", markup=False
        )
