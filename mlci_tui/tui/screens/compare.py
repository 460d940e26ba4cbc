"""Two or more runs side by side, transposed: one column per run, one row per field, param
and metric; `d` keeps only the rows that differ. A metric's value is green or red as it is
better or worse than the baseline's (◆, when compared; else the first run's), by the
metric's direction; the best value is bold.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import DataTable, Static

from mlci_tui.ledger.query.compare import CompareResult, CompareRow, load_compare
from mlci_tui.ledger.query.groups import Group, load_groups
from mlci_tui.numbers import digits_to_tell_apart
from mlci_tui.output import Spread
from mlci_tui.sanitize import display
from mlci_tui.tui import actions, cells, export
from mlci_tui.tui.messages import CompareFailed, CompareLoaded, GroupsFailed, GroupsLoaded, post_answer
from mlci_tui.tui.screens.base import LedgerScreen
from mlci_tui.tui.theme import badge, tone
from mlci_tui.tui.widgets.keybar import KeyBar
from mlci_tui.tui.widgets.tables import refill

if TYPE_CHECKING:
    pass


MIN_WIDTH, MAX_WIDTH = 12, 28  # a run's column: never narrower than its header, never wider than this


def column_width(result: CompareResult, rows: list[CompareRow]) -> int:
    """One width for every run's column, from the values compared (params, metrics, short
    fields), not from long free text such as the author's e-mail or the subject, which are
    cut to it: three runs fit in 80 columns."""
    values = [
        cells.plain(v, digits_to_tell_apart(row.values))
        for row in rows
        if row.section != "run" or row.name in ("kind", "status", "commit", "time")
        for v in row.values
    ]
    return max(MIN_WIDTH, min(MAX_WIDTH, max((cell_len(v) for v in values), default=0)))


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
        self.groups: dict[str, Group] = {}  # each compared run's group, where it has repeats

    def compose(self) -> ComposeResult:
        yield Static(Text(f" compare {len(self.run_ids)} runs  loading…"), id="compare-title")
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True, header_height=2)
        yield KeyBar(self.SCOPE)

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
        self._load_groups(self.generation)

    @work(thread=True, group="groups", exit_on_error=False)
    def _load_groups(self, generation: int) -> None:
        seed = self.mlci.config.section("train")["repeats"]["seed_param"]
        load = lambda: load_groups(self.mlci.repo, self.run_ids, seed)  # noqa: E731
        post_answer(self, generation, GroupsLoaded, GroupsFailed, load)

    def on_groups_loaded(self, message: GroupsLoaded) -> None:
        message.stop()
        if message.generation != self.generation:
            return
        self.groups = {run_id: g for run_id, g in message.value.items() if g.n > 1}
        if self.groups:
            self._show()

    def on_groups_failed(self, message: GroupsFailed) -> None:
        message.stop()
        self.notify(message.value, title="Error", severity="error", markup=False)

    def on_compare_failed(self, message: CompareFailed) -> None:
        message.stop()
        self.notify(message.value, title="Error", severity="error", markup=False)

    def _show(self) -> None:
        result = self.result
        if result is None:
            return
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        reference = self._reference(result)
        shown = [row for row in result.rows if not (self.differences_only and not row.differs)]
        width = column_width(result, shown)
        rows = []
        for row in shown:
            rows.append(self._row(row, width, reference))
            spreads = self._spreads(result, row)
            if spreads:
                rows.append(self._group_row(row, spreads, reference))
        keys = ["section", "name", *(f"run{n}" for n in range(len(result.runs)))]
        refill(table, [Text(""), Text("name"), *self._labels(result, width, reference)], rows, column_keys=keys)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        title = badge(self.app, f"compare {len(result.runs)} runs")
        title.append(f"  {len(shown)} of {len(result.rows)} rows")
        title.append("  · differences only" if self.differences_only else "  · all rows (d: differences only)")
        against = "◆ baseline" if reference[1] else result.runs[0]["run_id"][:8] if result.runs else ""
        if against:
            title.append(f"  · colour: vs {against}")
        missing = len(self.run_ids) - len(result.runs)
        if missing:
            title.append(f"  · {missing} run(s) no longer in the ledger", style=tone(self.app, "warning"))
        self.query_one("#compare-title", Static).update(title)

    def _reference(self, result: CompareResult) -> tuple[int, bool]:
        """The column others are coloured against: the baseline when compared (True), else the first run."""
        shown = self.mlci.runs_screen.result
        base = shown.baseline.run_id if shown is not None and shown.baseline is not None else None
        ids = [run["run_id"] for run in result.runs]
        return (ids.index(base), True) if base in ids else (0, False)

    def _labels(self, result: CompareResult, width: int, reference: tuple[int, bool]) -> list[Text]:
        """Two header lines a run: its short id (◆ on the baseline), its subject cut to the column."""
        labels = []
        for n, run in enumerate(result.runs):
            label = Text()
            if reference == (n, True):
                label.append("◆ ", style=f"bold {tone(self.app, 'baseline')}")
            label.append(run["run_id"][:8], style="bold")
            label.append("\n" + cells.fit(display(run["label"]), width).rstrip(), style="")
            labels.append(label)
        return labels

    def _row(self, row: CompareRow, width: int, reference: tuple[int, bool]) -> list[Text]:
        """A row's cells: run fields cut to the column (one line each); a metric's value green or
        red as it is better or worse than the reference column, the best one bold."""
        best = best_index(row.values, row.direction)
        digits = digits_to_tell_apart(row.values)
        base = row.values[reference[0]]
        values = []
        for i, v in enumerate(row.values):
            text = Text(
                cells.fit(cells.plain(v, digits), width).rstrip() if row.section == "run" else cells.plain(v, digits)
            )
            if (
                row.section == "metric"
                and i != reference[0]
                and isinstance(v, (int, float))
                and isinstance(base, (int, float))
            ):
                kind = cells.verdict(cells.delta(v, base)[1], row.direction)
                if kind:
                    text.stylize(tone(self.app, kind))
            if i == best or row.differs and row.section == "param":
                text.stylize("bold")
            values.append(text)
        return [Text(row.section, style="dim"), cells.safe(row.name), *values]

    def _spreads(self, result: CompareResult, row: CompareRow) -> list[Spread | None]:
        """A metric row's group summaries, one per run (None: the run has no repeats of it)."""
        if row.section != "metric" or not self.groups:
            return []
        out: list[Spread | None] = []
        for run in result.runs:
            group = self.groups.get(run["run_id"])
            found = group.summary(row.name) if group is not None else None
            out.append(Spread(*found) if found else None)
        return out if any(out) else []

    def _group_row(self, row: CompareRow, spreads: list[Spread | None], reference: tuple[int, bool]) -> list[Text]:
        """Under a metric, each run's group as `mean ± sd (n)`; ◆ on the baseline's group."""
        digits = digits_to_tell_apart([s.mean for s in spreads if s is not None])
        cells_: list[Text] = []
        for i, found in enumerate(spreads):
            text = Text(found.text(digits) if found else "")
            if found and reference == (i, True):
                text = Text.assemble(("◆ ", f"bold {tone(self.app, 'baseline')}"), text)
            cells_.append(text)
        return [Text("group", style="dim"), Text(f"  {display(row.name)} mean ± sd (n)", style="dim"), *cells_]

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
