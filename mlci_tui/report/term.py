"""The report for a terminal: plain tables, arrows coloured by direction, plotext charts.

Every name and value passes `display()` before it is measured or drawn (plotext included),
so the only escape sequences in the output are the colours added here and by plotext, and
only when colour is on. plotext is imported lazily, only when a chart is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mlci_tui.output import cell_text
from mlci_tui.report import dvc_plots
from mlci_tui.report.build import MetricRow, Report, run_label, run_phrase
from mlci_tui.report.dvc_plots import BASE, HEAD, Confusion, XYChart
from mlci_tui.sanitize import display

MAX_CELL = 48
MAX_OTHER = 40  # changed metrics outside the key ones listed in the terminal, biggest moves first
RED, GREEN, YELLOW, GREY, BLUE, BOLD = "31", "32", "33", "90", "34", "1"
BASE_MARK, HEAD_MARK = "·", "braille"
BASE_PIXEL, HEAD_PIXEL = 8, 12  # plotext colours: grey baseline, blue candidate


class Painter:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, code: str | None) -> str:
        if not self.colour or not code or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


def _cell(value: object, width: int = MAX_CELL) -> str:
    text = display(cell_text(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def table(
    header: Sequence[str], rows: Sequence[Sequence[tuple[str, str | None]]], paint: Painter, numeric: Sequence[int] = ()
) -> list[str]:
    """Rows of (already sanitised text, colour code); widths from the visible text."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, (text, _code) in enumerate(row):
            widths[i] = max(widths[i], len(text))
    out = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(header)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = []
        for i, (text, code) in enumerate(row):
            pad = " " * (widths[i] - len(text))
            cells.append(pad + paint(text, code) if i in numeric else paint(text, code) + pad)
        out.append("  ".join(cells).rstrip())
    return out


def _movement(m: MetricRow) -> float:
    """How far a metric moved: relative change, and new, removed or non-finite ones first."""
    if m.status not in ("up", "down"):
        return math.inf
    pct = m.pct
    return abs(pct) if pct is not None else math.inf


def _trend_code(m: MetricRow) -> str | None:
    better = m.better
    if better is None:
        return None
    return GREEN if better else RED


def _gate_code(m: MetricRow) -> str | None:
    if m.rule is None:
        return None
    return {"fail": RED, "warn": YELLOW, "pass": GREEN}.get(m.rule.verdict)


def _metric_rows(rows: Sequence[MetricRow], gate_column: bool) -> list[list[tuple[str, str | None]]]:
    out = []
    for m in rows:
        row: list[tuple[str, str | None]] = [
            (_cell(m.name), None),
            ("—" if m.base is None else _cell(m.base), None),
            ("—" if m.head is None else _cell(m.head), None),
            (m.change, None),
            (m.trend, _trend_code(m)),
        ]
        if gate_column:
            row.append((_cell(m.gate_text, 160), _gate_code(m)))  # an interval is read whole
        out.append(row)
    return out


def _run_line(run: dict[str, object], verb: str) -> str:
    return display(run_phrase(run, verb, code=str, message=lambda m: _cell(m, 72)))


def render(report: Report, *, colour: bool = False, width: int = 100) -> str:
    paint = Painter(colour)
    verdict_code = {"fail": RED, "pass": GREEN}.get(report.verdict, YELLOW)
    lines = [
        paint(f"mlci report: {report.verdict.upper()}", f"{BOLD};{verdict_code}") + f" - {report.summary()}",
        _run_line(run_label(report.head), "candidate"),
        _run_line(run_label(report.base), "baseline "),
    ]
    for failure in report.gate.failures:
        lines.append(paint("fail: ", RED) + display(failure))
    for warning in report.gate.warnings:
        lines.append(paint("warning: ", YELLOW) + display(warning))

    lines += ["", paint("Metrics", BOLD)]
    if not report.metric_count:
        lines.append("no metrics in either run")
    else:
        gate_column = any(m.rule for m in report.metrics)
        header = ["metric", "baseline", "candidate", "change", "trend"] + (["gate"] if gate_column else [])
        lines += table(header, _metric_rows(report.metrics, gate_column), paint, numeric=(1, 2, 3))
    if report.folded:
        changed = [m for m in report.folded if m.changed]
        if report.base is None:
            lines += ["", f"{len(report.folded)} more metrics (no baseline; --format md, html or json lists them)"]
        else:
            unchanged = len(report.folded) - len(changed)
            shown = sorted(changed, key=_movement, reverse=True)[:MAX_OTHER]
            which = "below" if len(shown) == len(changed) else f"the {len(shown)} that moved most below"
            lines += [
                "",
                f"{len(report.folded)} more metrics: {len(changed)} changed ({which}), {unchanged} unchanged "
                "(--format md, html or json lists them all)",
            ]
            if shown:
                header = ["metric", "baseline", "candidate", "change", "trend"]
                lines += table(header, _metric_rows(shown, False), paint, numeric=(1, 2, 3))

    lines += ["", paint("Params", BOLD)]
    note = report.params_note()
    if note:
        lines.append(note)
    else:
        rows = [
            [
                (_cell(c.name), None),
                ("—" if c.base is None else _cell(c.base), None),
                ("—" if c.head is None else _cell(c.head), None),
            ]
            for c in report.params
        ]
        lines += table(["param", "baseline", "candidate"], rows, paint)

    lines += ["", paint("Data", BOLD)]
    note = report.datasets_note()
    if note:
        lines.append(note)
    else:
        rows = [
            [
                (_cell(d.path), None),
                ("—" if d.base is None else _cell(d.base[:19]), None),
                ("—" if d.head is None else _cell(d.head[:19]), None),
                (d.status, None),
            ]
            for d in report.datasets
        ]
        lines += table(["dataset", "baseline", "candidate", "status"], rows, paint)

    lines += _plot_tables(report, paint)
    charts = _charts(report, colour=colour, width=min(width, 100))
    if charts:
        lines += [""] + charts
    return "\n".join(lines).rstrip() + "\n"


def _plot_tables(report: Report, paint: Painter) -> list[str]:
    """DVC plots that are not drawn as lines: confusion matrices as tables, images by path."""
    plots = report.plots
    if not plots.charts and not plots.notes:
        return []
    out = ["", paint("Plots", BOLD) + " (dvc.yaml)"]
    for chart in plots.charts:
        if isinstance(chart, Confusion):
            side = HEAD if HEAD in chart.counts else BASE
            out.append(
                f"{_cell(chart.title, 60)}: confusion matrix, {side} (rows {_cell(chart.y_label)}, "
                f"columns {_cell(chart.x_label)})"
            )
            rows = []
            for r in chart.classes:
                cells = []
                for c in chart.classes:
                    n = chart.count(side, r, c)
                    text = f"{chart.share(side, r, c) * 100:.1f}%" if chart.normalized else str(n)
                    if side == HEAD and BASE in chart.counts and not chart.normalized and n != chart.count(BASE, r, c):
                        text += f" ({n - chart.count(BASE, r, c):+d})"
                    cells.append((text, None))
                rows.append([(_cell(r, 20), None), *cells])
            out += table(
                ["", *(_cell(c, 20) for c in chart.classes)], rows, paint, numeric=range(1, len(chart.classes) + 1)
            )
        elif not isinstance(chart, XYChart):
            where = ", ".join(f"{side} at {s.commit[:7]}" for side, s in chart.sides.items())
            out.append(f"image {_cell(chart.path, 80)}: {where} (--format html embeds it)")
    out += [f"note: {display(n)}" for n in plots.notes]
    return out


def _charts(report: Report, *, colour: bool, width: int) -> list[str]:
    xy = [c for c in report.plots.charts if isinstance(c, XYChart)]
    if not report.history_names and not report.steps and not xy:
        return []
    import plotext as plt

    plt.terminal.limit(False, False)
    fig = plt.figure
    paint = Painter(colour)
    out: list[str] = []

    def start(title: str, height: int) -> None:
        fig.clear()
        if colour:
            plt.add_theme("mlci-report", sequence=[HEAD_PIXEL, BASE_PIXEL])
            fig.theme("mlci-report")
        else:
            fig.theme("colorless")
        fig.plot_size(width, height)
        fig.title(_cell(title, width - 4))

    def finish() -> list[str]:
        text = fig.build().string()
        if not colour:
            text = plt.uncolorize(text)
        return [line.rstrip() for line in text.splitlines()]

    for chart in xy:
        start(chart.title, 16)
        for line in chart.lines:
            pixel = BASE_PIXEL if line.side == BASE else HEAD_PIXEL
            pts = dvc_plots.drawn(chart, line)
            marker = plt.marker(
                "●" if chart.kind == "scatter" else (BASE_MARK if line.side == BASE else HEAD_MARK), pixel=pixel
            )
            signal = fig.signal([p[0] for p in pts], [p[1] for p in pts], marker=marker)
            if chart.kind != "scatter":
                signal.lines()
            signal.label(_cell(f"{line.side} {line.name}", 30))
            fig.draw(signal)
        fig.label(_cell(chart.x_label, 40), "x")
        fig.label(_cell(chart.y_label, 40), "y")
        out += finish() + [""]

    if report.history_names:
        out.append(paint("History", BOLD) + " (commits on this branch, first-parent, oldest first)")
    for name in report.history_names:
        history = report.history_series(name)
        start(f"{name} over the last {len(history)} commits with a run", 12)
        signal = fig.signal(
            list(range(len(history))), [v for _, v in history], marker=plt.marker("braille", pixel=HEAD_PIXEL)
        )
        signal.lines()
        fig.draw(signal)
        step = max(1, len(history) // max(1, width // 10))
        positions = [float(i) for i in range(0, len(history), step)]
        fig.ruler("x").ticks(positions, [history[int(p)][0][:7] for p in positions])
        out += finish() + [""]

    if report.steps:
        legend = paint(BASE_MARK + " baseline", GREY) + "   " + paint("⢕ candidate", BLUE)
        out.append(paint("Step curves", BOLD) + " (" + legend + ")")
    for s in report.steps:
        start(f"{s.name} by step", 14)
        for points, mark, pixel in ((s.base, BASE_MARK, BASE_PIXEL), (s.head, HEAD_MARK, HEAD_PIXEL)):
            if not points:
                continue
            signal = fig.signal(
                [float(k) for k, _ in points], [v for _, v in points], marker=plt.marker(mark, pixel=pixel)
            )
            signal.lines()
            fig.draw(signal)
        fig.label("step", "x")
        out += finish() + [""]
    return out
