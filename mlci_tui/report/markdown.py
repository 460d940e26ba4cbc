"""The report as GitHub/GitLab-flavoured Markdown, charts as Mermaid `xychart-beta` blocks.

Every name and value from the data goes through `markdown_cell` (the one Markdown escaper),
so markup, pipes, backticks and HTML stay inert text inside the tables; text inside the
Mermaid blocks keeps only characters Mermaid cannot read as syntax. Charts render in the
code host's own viewer: nothing is uploaded anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

from mlci_tui.output import cell_text
from mlci_tui.report import dvc_plots
from mlci_tui.report.build import MetricRow, Report, run_label, run_phrase
from mlci_tui.report.dvc_plots import BASE, HEAD, Confusion, Image, XYChart
from mlci_tui.sanitize import display, markdown_cell
from mlci_tui.scrub import scrub_text
from mlci_tui.validate import rowdiff
from mlci_tui.validate.rowdiff import RowDiff

MARKER = "<!-- mlci-report -->"
MAX_VALUE = 80  # longer param values and messages are cut in the tables
BASE_COLOUR, HEAD_COLOUR = "#9e9e9e", "#1f6feb"
# one shade per y column of a DVC plot: greys for the baseline, blues for the candidate
SHADES = {
    "baseline": ("#9e9e9e", "#5c5c5c", "#c8c8c8", "#3d3d3d"),
    "candidate": ("#1f6feb", "#0a3069", "#79c0ff", "#8250df"),
}

_MERMAID_UNSAFE = re.compile(r"[\"`<>&#;%{}\[\]\\|]")


def _cut(text: str, width: int = MAX_VALUE) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def md(value: object, width: int = MAX_VALUE) -> str:
    return markdown_cell(_cut(display(cell_text(value)), width))


def _num(value: float | None) -> str:
    return "—" if value is None else markdown_cell(cell_text(value))


def _run_text(run: dict[str, object], verb: str) -> str:
    return run_phrase(run, verb, code=md, message=lambda m: md(m, 72))


def verdict_line(report: Report) -> str:
    return f"**{report.verdict.upper()}**: {report.summary()}"  # words and numbers mlci wrote


def _metric_table(rows: Iterable[MetricRow], *, gate_column: bool) -> list[str]:
    head = ["metric", "baseline", "candidate", "change", "trend"] + (["gate"] if gate_column else [])
    lines = ["| " + " | ".join(head) + " |", "|---|--:|--:|--:|---|" + ("---|" if gate_column else "")]
    for m in rows:
        gate = m.gate_text  # verdicts, reasons and limits mlci wrote from numbers: no escaping needed
        if gate and m.rule is not None and m.rule.verdict == "fail":
            gate = f"**{gate}**"
        cells = [md(m.name, 120), _num(m.base), _num(m.head), m.change, m.trend]
        lines.append("| " + " | ".join(cells + ([gate] if gate_column else [])) + " |")
    return lines


def mermaid_text(value: object, width: int = 60) -> str:
    """Text for a Mermaid title or label: no quotes, brackets, entities, comments or markup."""
    return _cut(_MERMAID_UNSAFE.sub("_", display(value)), width)


def mermaid_number(value: float) -> str:
    """Plain decimal (Mermaid reads no exponents), 6 significant digits, no binary noise."""
    text = format(Decimal(repr(float(f"{value:.6g}"))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _xychart(
    title: str,
    labels: list[str] | tuple[float, float],
    lines: list[list[float]],
    *,
    x_title: str,
    y_title: str,
    y_range: tuple[float, float] | None = None,
    colours: list[str] | None = None,
) -> list[str]:
    """One `xychart-beta` block: `labels` are the x axis's categories, or its (min, max) when
    the lines' values lie evenly over a numeric axis."""
    out = ["```mermaid"]
    palette = ", ".join(colours or ([BASE_COLOUR, HEAD_COLOUR] if len(lines) > 1 else [HEAD_COLOUR]))
    out.append('%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%')
    if isinstance(labels, tuple):
        x_axis = f"{mermaid_number(labels[0])} --> {mermaid_number(labels[1])}"
    else:
        x_axis = "[" + ", ".join(f'"{mermaid_text(v, 16)}"' for v in labels) + "]"
    y_axis = f" {mermaid_number(y_range[0])} --> {mermaid_number(y_range[1])}" if y_range else ""
    out += [
        "xychart-beta",
        f'    title "{mermaid_text(title, 90)}"',
        f'    x-axis "{mermaid_text(x_title)}" {x_axis}',
        f'    y-axis "{mermaid_text(y_title)}"{y_axis}',
    ]
    for values in lines:
        out.append("    line [" + ", ".join(mermaid_number(v) for v in values) + "]")
    out.append("```")
    return out


def history_charts(report: Report) -> list[str]:
    out: list[str] = []
    for name in report.history_names:
        points = report.history_series(name)
        title = f"{name}, last {len(points)} commits with a run (first-parent)"
        out += _xychart(title, [c[:7] for c, _ in points], [[v for _, v in points]], x_title="commit", y_title=name)
        out.append("")
    return out


def step_charts(report: Report) -> list[str]:
    out: list[str] = []
    for s in report.steps:
        base = dict(s.base)
        head = dict(s.head)
        if base and head and list(base) == list(head):
            title = f"{s.name} by step: baseline (grey) vs candidate (blue)"
            out += _xychart(
                title,
                [str(k) for k in head],
                [list(base.values()), list(head.values())],
                x_title="step",
                y_title=s.name,
            )
        else:
            # different steps on each side: Mermaid has no gaps in a line, so one chart per side
            for side, points in (("baseline", s.base), ("candidate", s.head)):
                if len(points) < 2:
                    continue
                out += _xychart(
                    f"{s.name} by step: {side}",
                    [str(k) for k, _ in points],
                    [[v for _, v in points]],
                    x_title="step",
                    y_title=s.name,
                )
        out.append("")
    return out


def line_colours(chart: XYChart) -> list[str]:
    """A colour per line: the side's shade for the line's y column (the same name, the same shade)."""
    names = list(dict.fromkeys(ln.name for ln in chart.lines))
    return [SHADES[ln.side][names.index(ln.name) % len(SHADES[ln.side])] for ln in chart.lines]


def _xy_plot(chart: XYChart) -> list[str]:
    grid, resampled = dvc_plots.mermaid_grid(chart)
    values = [dvc_plots.resample(dvc_plots.drawn(chart, ln), grid, chart.kind) for ln in chart.lines]
    colours = line_colours(chart)
    y_range = (0.0, 1.0) if chart.kind in ("roc", "pr") else None
    out = _xychart(
        chart.title,
        (grid[0], grid[-1]),
        values,
        x_title=chart.x_label,
        y_title=chart.y_label,
        y_range=y_range,
        colours=colours,
    )
    legend = ", ".join(f"{ln.side} {md(ln.name, 60)} ({c})" for ln, c in zip(chart.lines, colours))
    caption = f"Lines: {legend}."
    if chart.kind == "smooth":
        caption += f" Smoothed as DVC's `smooth` template does: a moving average of {max(dvc_plots.smoothed(ln.points)[1] for ln in chart.lines)} points."
    if resampled:
        caption += f" Mermaid draws y over one shared x axis: {resampled}; the HTML report draws the exact points."
    return out + ["", f"<sub>{caption}</sub>"]


def _confusion_plot(chart: Confusion) -> list[str]:
    sides = [s for s in (HEAD, BASE) if s in chart.counts]
    head = sides[0]
    base = BASE if head != BASE and BASE in chart.counts else None

    def cell(row: str, column: str) -> str:
        if chart.normalized:
            value = chart.share(head, row, column) * 100
            text = f"{value:.1f}%"
            if base is not None:
                delta = value - chart.share(base, row, column) * 100
                text += f" ({delta:+.1f})" if round(delta, 1) else ""
            return text
        count = chart.count(head, row, column)
        delta = count - chart.count(base, row, column) if base is not None else 0
        return f"{count} ({delta:+d})" if delta else str(count)

    what = "share of the row" if chart.normalized else "rows counted"
    change = ", the change against the baseline in brackets" if base else ""
    out = [
        f"**{md(chart.title, 90)}**: confusion matrix, {head} ({what}{change}); "
        f"rows {md(chart.y_label, 40)}, columns {md(chart.x_label, 40)}",
        "",
        "| " + " | ".join([md(f"{chart.y_label} ↓ {chart.x_label} →", 60)] + [md(c, 30) for c in chart.classes]) + " |",
        "|---|" + "--:|" * len(chart.classes),
    ]
    for row in chart.classes:
        out.append("| " + " | ".join([md(row, 30)] + [cell(row, c) for c in chart.classes]) + " |")
    return out


def _image_plot(chart: Image) -> list[str]:
    parts = []
    for side in (BASE, HEAD):
        got = chart.sides.get(side)
        if got is None:
            continue
        label = f"{side}: {md(chart.path, 100)} at {md(got.commit[:7])}"
        parts.append(f"[{label}]({got.url})" if got.url else label)
    changed = " (changed)" if chart.changed else ""
    return [f"- image{changed}: " + " · ".join(parts) + " (embedded in the HTML report)"]


def plot_blocks(report: Report) -> list[str]:
    """The DVC plots: x/y charts, confusion tables, image links, and what was left out."""
    plots = report.plots
    out: list[str] = []
    for chart in plots.charts:
        if isinstance(chart, XYChart):
            out += _xy_plot(chart)
        elif isinstance(chart, Confusion):
            out += _confusion_plot(chart)
        else:
            out += _image_plot(chart)
        out.append("")
    left = plots.declared - len(plots.charts)
    if left > 0 and not plots.explicit:
        out += [f"{left} more plot{'s' if left != 1 else ''} in dvc.yaml not drawn (name them in `report.plots`).", ""]
    for note in plots.notes:
        out.append(f"- note: {md(note, 300)}")
    if plots.notes:
        out.append("")
    return out


def render(report: Report, *, marker: bool = False) -> str:
    lines: list[str] = [MARKER] if marker else []
    lines += [f"## mlci report: {report.verdict.upper()}", "", verdict_line(report), ""]
    lines.append("- " + _run_text(run_label(report.head), "candidate"))
    lines.append("- " + _run_text(run_label(report.base), "baseline"))
    for failure in report.gate.failures:
        lines.append(f"- **fail**: {md(failure, 300)}")
    for warning in report.gate.warnings:
        lines.append(f"- warning: {md(warning, 300)}")
    lines.append("")

    lines += ["### Metrics", ""]
    if not report.metric_count:
        lines += ["No metrics in either run.", ""]
    else:
        gate_column = any(m.rule for m in report.metrics)
        lines += _metric_table(report.metrics, gate_column=gate_column) + [""]
        if report.folded:
            changed = sum(1 for m in report.folded if m.changed)
            what = "changed" if report.base else "shown"
            summary = f"{len(report.folded)} more metrics ({changed} {what})" if report.base else None
            summary = summary or f"{len(report.folded)} more metrics"
            lines += [f"<details><summary>{summary}</summary>", ""]
            lines += _metric_table(report.folded, gate_column=False)
            lines += ["", "</details>", ""]

    lines += ["### Params", ""]
    note = report.params_note()
    if note:
        lines.append(note)
    else:
        lines += ["| param | baseline | candidate |", "|---|---|---|"]
        for c in report.params:
            base = "—" if c.base is None else md(c.base)
            head = "—" if c.head is None else md(c.head)
            lines.append(f"| {md(c.name, 120)} | {base} | {head} |")
        unchanged = report.params_total - len(report.params)
        if unchanged:
            lines += ["", f"{unchanged} other param{'s' if unchanged != 1 else ''} unchanged."]
    lines.append("")

    lines += ["### Data", ""]
    lines += _data_lines(report) + [""]

    plots = plot_blocks(report)
    if plots:
        lines += ["### Plots", ""] + plots
    charts = history_charts(report)
    if charts:
        lines += ["### History", ""] + charts
    steps = step_charts(report)
    if steps:
        lines += ["### Step curves", ""] + steps
    lines.append(f"<sub>mlci {markdown_cell(report.version)} · `mlci report`</sub>")
    # the PR comment is public: names and values from an older ledger are scrubbed again here
    return scrub_text("\n".join(lines) + "\n")


def _data_lines(report: Report) -> list[str]:
    note = report.datasets_note()
    if note:
        return [note]
    lines = ["| dataset | baseline | candidate | |", "|---|---|---|---|"]
    for d in report.datasets:
        base = "—" if d.base is None else md(d.base[:19])
        head = "—" if d.head is None else md(d.head[:19])
        lines.append(f"| {md(d.path, 120)} | {base} | {head} | {d.status} |")
    for d in report.datasets:
        if d.diff is not None:
            commit = (report.base.commit or "")[:12] if report.base else ""
            lines += ["", f"#### {md(d.path, 120)}", "", f"Against the baseline run's version (commit {md(commit)})."]
            lines += [""] + data_diff_lines(d.diff)
        elif d.diff_note:
            lines += ["", f"{md(d.path, 120)}: {md(d.diff_note, 300)}"]
    return lines


DIFF_COLUMNS = 10  # per-column rows of a data diff in Markdown and HTML; the rest counted


def data_diff_lines(d: RowDiff) -> list[str]:
    """A dataset's row diff in Markdown: counts, schema changes, changed columns with examples."""
    how = f"matched on {', '.join(f'`{md(k)}`' for k in d.key)}" if d.key else md(d.notes[0], 300)
    lines = [f"**{md(rowdiff.counts_text(d).replace(' -> ', ' → '))}** ({how})", ""]
    lines += [f"- {md(t.replace(' -> ', ' → '), 300)}" for t in rowdiff.schema_texts(d.schema)]
    if d.columns:
        lines += ["", "| column | changed | examples (key: old → new) |", "|---|---|---|"]
        for c in d.columns[:DIFF_COLUMNS]:
            shown = "<br>".join(md(rowdiff.example_text(e).replace(" -> ", " → "), 160) for e in c.examples)
            lines.append(f"| {md(rowdiff.column_name(c), 120)} | {c.changed:,} | {shown} |")
        if len(d.columns) > DIFF_COLUMNS:
            lines.append(f"| … {len(d.columns) - DIFF_COLUMNS} more columns changed | | |")
    for kind, shown_rows, count in (("Added", d.added_examples, d.added), ("Removed", d.removed_examples, d.removed)):
        if shown_rows:
            rows = "; ".join(md(rowdiff.key_text(r), 160) for r in shown_rows)
            lines += ["", f"{kind} (first {len(shown_rows)} of {count:,}): {rows}"]
    return lines
