"""Plots with plotext: a metric against step for the marked runs (overlay), a metric along
the commit history of HEAD, a param against a metric over the filtered runs (scatter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.widgets import Label, Select, Static

from mlci_tui.ledger.query.changepoints import commit_changes
from mlci_tui.ledger.query.runs_view import LedgerInfo
from mlci_tui.ledger.query.series import (
    Series,
    load_commit_series,
    load_scatter,
    load_step_series,
    series_coverage,
)
from mlci_tui.sanitize import display
from mlci_tui.tui import actions
from mlci_tui.tui.messages import PlotFailed, PlotLoaded
from mlci_tui.tui.screens.base import LedgerScreen
from mlci_tui.tui.theme import badge, tone
from mlci_tui.tui.widgets.keybar import KeyBar
from mlci_tui.tui.widgets.plot import Chart, PlotView

if TYPE_CHECKING:
    pass

MODES = {
    "steps": "metric by step",
    "commits": "metric along commits",
    "scatter": "param against metric",
    "dvc": "DVC plots",
}


class PlotScreen(LedgerScreen):
    SCOPE = "plot"
    BINDINGS: ClassVar[list[BindingType]] = actions.bindings("plot")  # type: ignore[assignment]

    def __init__(self, run_ids: list[str], info: LedgerInfo | None, filter_text: str) -> None:
        super().__init__()
        self.run_ids = run_ids
        self.info = info or LedgerInfo(tip="")
        self.filter_text = filter_text
        self.mode = "steps" if self.info.steps else "commits"
        self.metric: str | None = None
        self.metric_chosen = False  # by the user; until then the steps plot picks the best-covered series
        self.param: str | None = None
        self.chart: Chart | None = None
        self.dvc_plots: list[str] | None = None  # the x/y plots dvc.yaml declares, once read
        self.jumps = 0  # `j` presses: which change point is next

    def metric_choices(self) -> list[str]:
        if self.mode == "dvc":
            return list(self.dvc_plots or [])
        return list(self.info.steps if self.mode == "steps" else self.info.metrics)

    def compose(self) -> ComposeResult:
        yield Static(id="plot-title")
        with Horizontal(id="plot-controls"):
            yield Label("metric")
            yield Select[str]([], id="plot-metric", allow_blank=True, prompt="metric")
            yield Label("param", id="param-label")
            yield Select[str](
                [(Text(display(p)), p) for p in self.info.params], id="plot-param", allow_blank=True, prompt="param"
            )
        yield PlotView(id="plot")
        yield KeyBar(self.SCOPE)

    def on_mount(self) -> None:
        numeric = [p for p in self.info.differing if p in self.info.params] or self.info.params
        self.param = numeric[0] if numeric else None
        if self.param is not None:
            self.query_one("#plot-param", Select).value = self.param
        self._set_mode(self.mode)

    def _preferred_metric(self) -> str | None:
        choices = self.metric_choices()
        if self.metric in choices:
            return self.metric
        configured = [m for m in choices if self.mlci.config.direction(m)]
        ranked = configured or choices
        return ranked[0] if ranked else None

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        self.metric = None if mode == "steps" and not self.metric_chosen else self._preferred_metric()
        select = self.query_one("#plot-metric", Select)
        with self.prevent(Select.Changed):
            select.set_options([(Text(display(m)), m) for m in self.metric_choices()])
            if self.metric is not None:
                select.value = self.metric
        scatter = mode == "scatter"
        self.query_one("#plot-param", Select).display = scatter
        self.query_one("#param-label", Label).display = scatter
        self.reload()

    def reload(self) -> None:
        self.generation += 1
        title = badge(self.app, "plot")
        for n, (key, label) in enumerate(MODES.items(), 1):
            chosen = key == self.mode
            title.append(f"  {n} ", style=f"bold {tone(self.app, 'key')}")
            title.append(label, style=f"bold underline {tone(self.app, 'foreground')}" if chosen else "")
        if self.mode == "steps":
            title.append(f"   · {len(self.run_ids)} run(s)")
        elif self.mode == "scatter" and self.filter_text.strip():
            title.append(f"   · filter: {display(self.filter_text)[:40]}")
        self.query_one("#plot-title", Static).update(title)
        self._load(self.generation, self.mode, self.metric, self.param)

    @work(thread=True, group="plot", exit_on_error=False)
    def _load(self, generation: int, mode: str, metric: str | None, param: str | None) -> None:
        repo = self.mlci.repo
        try:
            if metric is None and mode == "steps" and self.metric_choices():
                coverage = series_coverage(repo, self.run_ids)
                choices = self.metric_choices()
                metric = max(
                    choices,
                    key=lambda m: (coverage.get(m, 0), self.mlci.config.direction(m) is not None, -choices.index(m)),
                )
            if mode == "dvc":
                chart, metric = self._dvc_chart(metric)
            elif metric is None:
                chart = Chart("line", "", "", "", empty="no metrics to plot: the ledger has none of this kind yet")
            elif mode == "steps":
                series = load_step_series(repo, self.run_ids, metric)
                chart = Chart(
                    "line",
                    f"{metric} by step",
                    "step",
                    metric,
                    series,
                    empty=f"no step series {metric!r} for these runs (mark runs with steps, or press 2)",
                )
            elif mode == "commits":
                chart = self._commit_chart(metric)
            else:
                if param is None:
                    chart = Chart("scatter", "", "", "", empty="no params to plot against")
                else:
                    one = load_scatter(repo, param, metric, self.filter_text, self.info)
                    one.label = f"{len(one.x)} runs"
                    chart = Chart(
                        "scatter",
                        f"{metric} against {param}",
                        param,
                        metric,
                        [one],
                        empty=f"no run has both a numeric {param!r} and {metric!r}",
                    )
        except Exception as exc:  # (the chart is built in steps: not post_answer's one call)
            self.post_message(PlotFailed(generation, display(f"{type(exc).__name__}: {exc}")))
            return
        self.post_message(PlotLoaded(generation, (metric, chart)))

    def _commit_chart(self, metric: str) -> Chart:
        """The metric along HEAD's history, its change points marked (`j` jumps to their commits)."""
        points, changes = commit_changes(self.mlci.repo, metric)
        one = (
            Series(
                "",
                metric,
                [float(i) for i in range(len(points))],
                [p.value for p in points],
                [p.commit[:7] for p in points],
            )
            if points
            else load_commit_series(self.mlci.repo, metric)
        )
        where = {p.commit: i for i, p in enumerate(points)}
        chart = Chart(
            "line",
            f"{metric} along the history of HEAD" + (f" · {len(changes)} change point(s): j jumps" if changes else ""),
            "commit",
            metric,
            [one] if one else [],
            empty=f"no commit of HEAD's history has a run with {metric!r}",
            markers=[where[c.after.commit] - 0.5 for c in changes],
            suspects=[(c.before.run_id, c.after.run_id) for c in changes],
        )
        return chart

    def _dvc_chart(self, plot: str | None) -> tuple[Chart, str | None]:
        """The x/y plot `plot` (default: the first) of the runs' commits, as dvc.yaml draws it:
        the first run as candidate, the second as baseline, their lines overlaid."""
        from mlci_tui.capture.readers import Limits
        from mlci_tui.report.dvc_plots import XYChart, read_run_plots

        runs = list(self.run_ids)
        if len(runs) == 1:  # one run: against the runs table's baseline, as the report would
            shown = self.mlci.runs_screen.result
            if shown is not None and shown.baseline is not None and shown.baseline.run_id != runs[0]:
                runs.append(shown.baseline.run_id)
        plots, why = read_run_plots(self.mlci.repo, Limits.from_config(self.mlci.config.limits), runs)
        charts = [c for c in plots.charts if isinstance(c, XYChart)]
        self.dvc_plots = [c.id for c in charts]
        others = len(plots.charts) - len(charts)
        chosen = next((c for c in charts if c.id == plot), charts[0] if charts else None)
        if chosen is None:
            said = why or "no x/y plot declared in dvc.yaml at this run's commit"
            if others:
                said += f" ({others} confusion or image plot(s): `mlci report` draws them)"
            return Chart("line", "", "", "", empty=said), None
        series = [
            Series("", f"{line.side} {line.name}", [x for x, _y in line.points], [y for _x, y in line.points])
            for line in chosen.lines
        ]
        kind = "scatter" if chosen.kind == "scatter" else "line"
        return Chart(kind, chosen.title or chosen.id, chosen.x_label, chosen.y_label, series), chosen.id

    def on_plot_loaded(self, message: PlotLoaded) -> None:
        message.stop()
        if message.generation != self.generation:
            return
        metric, self.chart = message.value
        if self.mode == "dvc":  # the plot ids are known once dvc.yaml was read
            with self.prevent(Select.Changed):
                self.query_one("#plot-metric", Select).set_options(
                    [(Text(display(m)), m) for m in self.metric_choices()]
                )
            self.metric = None
        if metric is not None and metric != self.metric:
            self.metric = metric
            with self.prevent(Select.Changed):
                self.query_one("#plot-metric", Select).value = metric
        self.query_one(PlotView).show(self.chart)

    def on_plot_failed(self, message: PlotFailed) -> None:
        message.stop()
        self.query_one(PlotView).show(Chart("line", "", "", "", empty=message.value))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = event.value if isinstance(event.value, str) else None
        if event.select.id == "plot-metric" and value is not None and value != self.metric:
            self.metric = value
            self.metric_chosen = True
            self.reload()
        elif event.select.id == "plot-param" and value is not None and value != self.param:
            self.param = value
            self.reload()

    # ------------------------------------------------------------------ actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_mode(self, mode: str) -> None:
        if mode in MODES:
            self._set_mode(mode)

    def _cycle(self, choices: list[str], current: str | None) -> str | None:
        if not choices:
            return None
        return choices[(choices.index(current) + 1) % len(choices)] if current in choices else choices[0]

    def action_next_metric(self) -> None:
        self.metric = self._cycle(self.metric_choices(), self.metric)
        self.metric_chosen = True
        if self.metric is not None:
            with self.prevent(Select.Changed):
                self.query_one("#plot-metric", Select).value = self.metric
        self.reload()

    def action_jump_change(self) -> None:
        """The next change point's suspect run against the run of the commit before (largest step first)."""
        suspects = self.chart.suspects if self.chart is not None and self.mode == "commits" else []
        if not suspects:
            self.notify("No change point detected in this plot (2: metric along commits)", markup=False)
            return
        before, after = suspects[self.jumps % len(suspects)]
        self.jumps += 1
        self.mlci.compare([before, after])

    def action_next_param(self) -> None:
        if self.mode != "scatter":
            self._set_mode("scatter")
            return
        self.param = self._cycle(self.info.params, self.param)
        if self.param is not None:
            with self.prevent(Select.Changed):
                self.query_one("#plot-param", Select).value = self.param
        self.reload()
