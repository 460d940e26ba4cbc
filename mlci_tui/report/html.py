"""The report as one self-contained HTML file: inline CSS and SVG charts, no scripts, no assets.

Every name and value is `display()`-sanitised and HTML-escaped (attributes included), so a
metric named `<script>` is text. The file loads nothing from anywhere: DVC's image plots are
embedded as data URIs (the page's policy allows images from `data:` only).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

from mlci_tui.output import cell_text
from mlci_tui.report import axes, dvc_plots
from mlci_tui.report.build import DataRow, MetricRow, Report, run_label, run_phrase
from mlci_tui.report.dvc_plots import BASE, HEAD, Confusion, Image, XYChart
from mlci_tui.report.markdown import DIFF_COLUMNS, line_colours, mermaid_number
from mlci_tui.sanitize import display
from mlci_tui.validate import rowdiff

BASE_COLOUR, HEAD_COLOUR = "#8a8a8a", "#1f6feb"

CSS = """
body{font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#1f2328;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:3px 8px;vertical-align:top}
th{background:#f6f8fa;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.fail{color:#cf222e;font-weight:600}.pass{color:#1a7f37}.warn,.nobaseline{color:#9a6700}
.better{color:#1a7f37}.worse{color:#cf222e}.muted{color:#656d76}code{font-size:90%}
svg{display:block;margin:.5em 0 1em}svg text{font:11px sans-serif;fill:#57606a}
.verdict{font-size:1.1em;padding:.6em .8em;border-radius:6px;background:#f6f8fa;display:inline-block}
@media (prefers-color-scheme: dark){body{background:#0d1117;color:#e6edf3}th{background:#161b22}
th,td{border-color:#30363d}.verdict{background:#161b22}svg text{fill:#8b949e}}
h3{font-size:1em}.sides{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}figure{margin:0}
img{max-width:480px;image-rendering:auto}table.confusion caption{text-align:left;color:#656d76}
"""


def _data_diff(report: Report, d: DataRow) -> list[str]:
    """A changed dataset's row diff: counts, schema changes, changed columns with examples."""
    if d.diff is None:
        return [f"<p class='muted'><code>{esc(d.path)}</code>: {esc(d.diff_note, 300)}</p>"] if d.diff_note else []
    r = d.diff
    commit = (report.base.commit or "")[:12] if report.base else ""
    how = "matched on " + ", ".join(f"<code>{esc(k)}</code>" for k in r.key) if r.key else esc(r.notes[0], 300)
    out = [
        f"<h3><code>{esc(d.path)}</code></h3>",
        f"<p class='muted'>Against the baseline run's version (commit {esc(commit)}).</p>",
        f"<p><b>{esc(rowdiff.counts_text(r))}</b> ({how})</p>",
    ]
    out += [f"<p>{esc(t, 300)}</p>" for t in rowdiff.schema_texts(r.schema)]
    if r.columns:
        out += ["<table>", "<tr><th>column</th><th>changed</th><th>examples (key: old → new)</th></tr>"]
        for c in r.columns[:DIFF_COLUMNS]:
            shown = "<br>".join(esc(rowdiff.example_text(e).replace(" -> ", " → "), 160) for e in c.examples)
            out.append(
                f"<tr><td><code>{esc(rowdiff.column_name(c))}</code></td><td>{c.changed:,}</td><td>{shown}</td></tr>"
            )
        out.append("</table>")
        if len(r.columns) > DIFF_COLUMNS:
            out.append(f"<p class='muted'>… {len(r.columns) - DIFF_COLUMNS} more columns changed.</p>")
    for kind, rows, count in (("Added", r.added_examples, r.added), ("Removed", r.removed_examples, r.removed)):
        if rows:
            text = "; ".join(esc(rowdiff.key_text(x), 160) for x in rows)
            out.append(f"<p>{kind} (first {len(rows)} of {count:,}): {text}</p>")
    return out


def esc(value: object, width: int = 200) -> str:
    text = display(cell_text(value))
    if len(text) > width:
        text = text[: width - 1] + "…"
    return html.escape(text, quote=True)


def _num(value: float | None) -> str:
    return "—" if value is None else esc(value)


def _trend(m: MetricRow) -> str:
    better = m.better
    cls = "" if better is None else (" class='better'" if better else " class='worse'")
    return f"<td{cls}>{esc(m.trend)}</td>"


def _metric_table(rows: Sequence[MetricRow], *, gate_column: bool) -> list[str]:
    head = ["metric", "baseline", "candidate", "change", "trend"] + (["gate"] if gate_column else [])
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for m in rows:
        cells = [
            f"<td><code>{esc(m.name)}</code></td>",
            f"<td class='num'>{_num(m.base)}</td>",
            f"<td class='num'>{_num(m.head)}</td>",
            f"<td class='num'>{esc(m.change)}</td>",
            _trend(m),
        ]
        if gate_column:
            cls = f" class='{m.rule.verdict}'" if m.rule and m.rule.verdict in ("fail", "pass", "warn") else ""
            cells.append(f"<td{cls}>{esc(m.gate_text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return out


def _run(run: dict[str, object], verb: str) -> str:
    return run_phrase(run, verb, code=lambda t: f"<code>{esc(t)}</code>", message=lambda m: esc(m, 100))


def svg_chart(
    title: str,
    lines: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    x_labels: dict[float, str] | None = None,
    *,
    x_title: str = "",
    y_title: str = "",
    x_domain: tuple[float, float] | None = None,
    y_domain: tuple[float, float] | None = None,
    scatter: bool = False,
) -> str:
    """A chart as inline SVG: lines are (colour, [(x, y)]), drawn exactly (finite values only);
    round ticks on both axes (`x_labels`: category labels at given x instead), thinned so that
    no two labels overlap; `scatter` draws points without lines."""
    w, h, right, top = 640, 240, 24, 28
    pts = [(x, y) for _c, line in lines for x, y in line if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    y0, y1, y_ticks = axes.nice_ticks(*(y_domain or (min(ys), max(ys))), 5)
    y_texts = [mermaid_number(t) for t in y_ticks]
    left = 16 + (14 if y_title else 0) + max(axes.label_px(t) for t in y_texts)
    bottom = 22 + (16 if x_title else 0)
    plot_w = w - left - right
    if x_labels:
        x0, x1 = min(xs), max(xs)
        x_ticks = sorted(x_labels)
    else:
        whole = all(float(x).is_integer() for x in xs)
        x0, x1, x_ticks = axes.fitting_ticks(*(x_domain or (min(xs), max(xs))), plot_w, integer=whole)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (h - top - bottom)

    most = int((w - 20) / axes.CHAR_PX)
    out = [
        f"<svg width='{w}' height='{h}' viewBox='0 0 {w} {h}' role='img' aria-label='{esc(title)}'>",
        f"<text x='{w / 2:.0f}' y='16' text-anchor='middle'>{esc(title, most)}</text>",
        f"<rect x='{left:.0f}' y='{top}' width='{plot_w:.0f}' height='{h - top - bottom}' fill='none' stroke='#d0d7de'/>",
    ]
    for y, text in zip(y_ticks, y_texts):
        out.append(f"<text x='{left - 6:.0f}' y='{sy(y) + 4:.1f}' text-anchor='end'>{esc(text)}</text>")
        out.append(
            f"<line x1='{left:.0f}' x2='{w - right}' y1='{sy(y):.1f}' y2='{sy(y):.1f}' stroke='#d0d7de' stroke-width='0.5'/>"
        )
    if x_labels:
        texts = [x_labels[x] for x in x_ticks]
        every = axes.every_nth(texts, plot_w * (x_ticks[-1] - x_ticks[0]) / (x1 - x0) if len(x_ticks) > 1 else plot_w)
        shown = [i for i in range(0, len(x_ticks), every)]
        if len(x_ticks) - 1 not in shown and len(x_ticks) - 1 - shown[-1] >= every:
            shown.append(len(x_ticks) - 1)
        x_marks = [(x_ticks[i], texts[i]) for i in shown]
    else:
        x_marks = [(x, mermaid_number(x)) for x in x_ticks]
    for x, text in x_marks:
        out.append(f"<text x='{sx(x):.1f}' y='{h - bottom + 16}' text-anchor='middle'>{esc(text)}</text>")
    if x_title:
        out.append(f"<text x='{left + plot_w / 2:.0f}' y='{h - 4}' text-anchor='middle'>{esc(x_title, 80)}</text>")
    if y_title:
        mid = top + (h - top - bottom) / 2
        out.append(
            f"<text x='12' y='{mid:.0f}' text-anchor='middle' transform='rotate(-90 12 {mid:.0f})'>{esc(y_title, 40)}</text>"
        )
    for colour, line in lines:
        finite = [(x, y) for x, y in line if math.isfinite(x) and math.isfinite(y)]
        if not finite:
            continue
        if not scatter:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
            out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>")
        for x, y in finite if scatter or len(finite) <= 30 else []:
            out.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='2.5' fill='{colour}'/>")
    out.append("</svg>")
    return "\n".join(out)


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return (
        "<p class='muted'>"
        + " ".join(f"<span style='color:{c}'>&#9632; {esc(t, 80)}</span>" for c, t in items)
        + "</p>"
    )


def _xy_plot(chart: XYChart) -> list[str]:
    colours = line_colours(chart)
    lines = [(c, dvc_plots.drawn(chart, ln)) for ln, c in zip(chart.lines, colours)]
    unit = (0.0, 1.0) if chart.kind in ("roc", "pr") else None
    svg = svg_chart(
        chart.title,
        lines,
        x_title=chart.x_label,
        y_title=chart.y_label,
        x_domain=unit,
        y_domain=unit,
        scatter=chart.kind == "scatter",
    )
    out = [svg, _legend([(c, f"{ln.side} {ln.name}") for ln, c in zip(chart.lines, colours)])]
    if chart.kind == "smooth":
        out.append("<p class='muted'>Smoothed as DVC's smooth template does (a moving average).</p>")
    return out


def _confusion_plot(chart: Confusion) -> list[str]:
    out = [f"<h3>{esc(chart.title)}</h3>", "<div class='sides'>"]
    for side in (BASE, HEAD):
        if side not in chart.counts:
            continue
        values = {
            (r, c): (chart.share(side, r, c) if chart.normalized else chart.count(side, r, c))
            for r in chart.classes
            for c in chart.classes
        }
        top = max(values.values(), default=0) or 1
        rows = [
            f"<table class='confusion'><caption>{side}</caption>",
            f"<tr><th>{esc(chart.y_label, 40)} &#8595; {esc(chart.x_label, 40)} &#8594;</th>"
            + "".join(f"<th>{esc(c, 30)}</th>" for c in chart.classes)
            + "</tr>",
        ]
        for r in chart.classes:
            cells = []
            for c in chart.classes:
                value = values[(r, c)]
                alpha = 0.08 + 0.8 * value / top if value else 0.0
                ink = "#fff" if alpha > 0.5 else "inherit"
                text = f"{value * 100:.1f}%" if chart.normalized else str(value)
                cells.append(f"<td class='num' style='background:rgba(31,111,235,{alpha:.2f});color:{ink}'>{text}</td>")
            rows.append(f"<tr><th>{esc(r, 30)}</th>" + "".join(cells) + "</tr>")
        out += rows + ["</table>"]
    out.append("</div>")
    return out


def _image_plot(chart: Image) -> list[str]:
    out = [f"<h3>{esc(chart.path)}</h3>", "<div class='sides'>"]
    for side in (BASE, HEAD):
        got = chart.sides.get(side)
        if got is None:
            continue
        where = f"{side}: {chart.path} at {got.commit[:7]}"
        if got.data is None:
            body = f"<p class='muted'>{esc(where)} ({got.size:,} bytes): not embedded</p>"
        else:
            uri = f"data:{got.mime};base64," + base64.b64encode(got.data).decode("ascii")
            body = f"<img src='{uri}' alt='{esc(where)}'>"
        out.append(f"<figure>{body}<figcaption>{esc(where)}</figcaption></figure>")
    out.append("</div>")
    return out


def _plots(report: Report) -> list[str]:
    plots = report.plots
    if not plots.charts and not plots.notes:
        return []
    body = ["<h2>Plots</h2>"]
    for chart in plots.charts:
        if isinstance(chart, XYChart):
            body += _xy_plot(chart)
        elif isinstance(chart, Confusion):
            body += _confusion_plot(chart)
        else:
            body += _image_plot(chart)
    left = plots.declared - len(plots.charts)
    if left > 0 and not plots.explicit:
        body.append(f"<p class='muted'>{left} more plots in dvc.yaml not drawn (name them in report.plots).</p>")
    body += [f"<p class='muted'>note: {esc(n, 400)}</p>" for n in plots.notes]
    return body


def render(report: Report) -> str:
    verdict = report.verdict
    cls = verdict.replace(" ", "")
    body = [
        f"<h1>mlci report: <span class='{cls}'>{esc(verdict.upper())}</span></h1>",
        f"<p class='verdict'><span class='{cls}'>{esc(verdict.upper())}</span>: {esc(report.summary())}</p>",
        "<ul>",
        f"<li>{_run(run_label(report.head), 'candidate')}</li>",
        f"<li>{_run(run_label(report.base), 'baseline')}</li>",
    ]
    body += [f"<li class='fail'>fail: {esc(f, 400)}</li>" for f in report.gate.failures]
    body += [f"<li class='warn'>warning: {esc(w, 400)}</li>" for w in report.gate.warnings]
    body.append("</ul>")

    body.append("<h2>Metrics</h2>")
    if not report.metric_count:
        body.append("<p>No metrics in either run.</p>")
    else:
        body += _metric_table(report.metrics, gate_column=any(m.rule for m in report.metrics))
    if report.folded:
        changed = sum(1 for m in report.folded if m.changed)
        summary = f"{len(report.folded)} more metrics" + (f" ({changed} changed)" if report.base else "")
        body += [f"<details><summary>{summary}</summary>"]
        body += _metric_table(report.folded, gate_column=False)
        body.append("</details>")

    body.append("<h2>Params</h2>")
    note = report.params_note()
    if note:
        body.append(f"<p>{note}</p>")
    else:
        body += ["<table>", "<tr><th>param</th><th>baseline</th><th>candidate</th></tr>"]
        for c in report.params:
            base = "—" if c.base is None else esc(c.base)
            head = "—" if c.head is None else esc(c.head)
            body.append(f"<tr><td><code>{esc(c.name)}</code></td><td>{base}</td><td>{head}</td></tr>")
        body.append("</table>")

    body.append("<h2>Data</h2>")
    note = report.datasets_note()
    if note:
        body.append(f"<p>{note}</p>")
    else:
        body += ["<table>", "<tr><th>dataset</th><th>baseline</th><th>candidate</th><th></th></tr>"]
        for d in report.datasets:
            base = "—" if d.base is None else esc(d.base[:19])
            head = "—" if d.head is None else esc(d.head[:19])
            body.append(
                f"<tr><td><code>{esc(d.path)}</code></td><td>{base}</td><td>{head}</td><td>{d.status}</td></tr>"
            )
        body.append("</table>")
        body += [line for d in report.datasets for line in _data_diff(report, d)]

    body += _plots(report)
    if report.history_names:
        body.append("<h2>History</h2><p class='muted'>Commits on this branch (first-parent), oldest first.</p>")
        for name in report.history_names:
            points = report.history_series(name)
            labels = {float(i): c[:7] for i, (c, _v) in enumerate(points)}
            line = [(float(i), v) for i, (_c, v) in enumerate(points)]
            body.append(
                svg_chart(f"{name}, last {len(points)} commits with a run", [(HEAD_COLOUR, line)], labels, y_title=name)
            )
    if report.steps:
        body.append(
            "<h2>Step curves</h2><p class='muted'>"
            f"<span style='color:{BASE_COLOUR}'>&#9632; baseline</span> "
            f"<span style='color:{HEAD_COLOUR}'>&#9632; candidate</span></p>"
        )
        for s in report.steps:
            lines = [
                (BASE_COLOUR, [(float(k), v) for k, v in s.base]),
                (HEAD_COLOUR, [(float(k), v) for k, v in s.head]),
            ]
            body.append(svg_chart(f"{s.name} by step", lines, x_title="step", y_title=s.name))
    body.append(f"<p class='muted'>mlci {esc(report.version)} · mlci report</p>")
    title = esc(f"mlci report: {verdict.upper()}")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
