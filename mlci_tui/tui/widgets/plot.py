"""A plotext chart as a widget: redrawn at the widget's size, so it follows resizes.

plotext keeps one global figure, so charts are built on the UI thread only (a build takes
milliseconds). Titles, axis labels and legend entries come from the ledger: they are
sanitised before plotext sees them, so the only escape sequences in its output are its
own colours, which `Text.from_ansi` turns into styles. The legend is not plotext's (drawn
inside the plot area, over the data) but lines of text below the plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from mlci_tui.ledger.query.series import Series
from mlci_tui.sanitize import display

PALETTE = [12, 10, 9, 14, 13, 11, 3, 5, 6, 4, 2, 1]
MAX_LABEL = 28
MARKER = 9  # change points: red


@dataclass
class Chart:
    kind: str  # "line" or "scatter"
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    empty: str = "nothing to plot"
    markers: list[float] = field(default_factory=list)  # x of detected change points: vertical lines
    suspects: list[tuple[str, str]] = field(default_factory=list)  # their (run before, run after), largest first


def _label(text: str) -> str:
    clean = display(text)
    return clean if len(clean) <= MAX_LABEL else clean[: MAX_LABEL - 1] + "…"


def legend(chart: Chart, width: int) -> list[Text]:
    """The legend as lines below the plot, never over its data: one entry a series (its
    colour's swatch, short id and label) and the change points' marker, packed into `width`."""
    entries: list[Text] = []
    for n, s in enumerate(s for s in chart.series if s.x):
        if s.label or s.run_id:
            entry = Text("━━ ", style=Style(color=Color.from_ansi(PALETTE[n % len(PALETTE)]), bold=True))
            entry.append(_label(f"{s.run_id[:8]} {s.label}".strip()))
            entries.append(entry)
    if chart.markers:
        entry = Text("│ ", style=Style(color=Color.from_ansi(MARKER), bold=True))
        entry.append("change point (j: compare)")
        entries.append(entry)
    lines: list[Text] = []
    for entry in entries:
        if lines and lines[-1].cell_len + 3 + entry.cell_len <= width:
            lines[-1].append("   ")
            lines[-1].append_text(entry)
        else:
            lines.append(entry)
    return lines


def build_chart(chart: Chart, width: int, height: int) -> Text:
    """The chart as styled text of exactly the given size (or a message when empty): the
    plot, then its legend below it."""
    points = [s for s in chart.series if s.x]
    if not points:
        return Text(display(chart.empty), style="italic")
    below = legend(chart, width)
    height -= len(below)
    if width < 20 or height < 6:
        return Text("(too small to plot)")
    plot = _plot(chart, points, width, height)
    return Text("\n").join([plot, *below]) if below else plot


def _plot(chart: Chart, points: list[Series], width: int, height: int) -> Text:
    import plotext as plt

    plt.terminal.limit(False, False)  # the widget, not the terminal, sets the size
    fig = plt.figure
    fig.clear()
    plt.add_theme("mlci", sequence=PALETTE)  # no canvas colour: the widget's background shows
    fig.theme("mlci")
    fig.plot_size(width, height)
    for n, s in enumerate(points):
        color = PALETTE[n % len(PALETTE)]
        marker = plt.marker("braille" if chart.kind == "line" else "●", pixel=color)
        signal = fig.signal(s.x, s.y, marker=marker)
        if chart.kind == "line":
            signal.lines()
        fig.draw(signal)  # unlabelled: the legend is drawn below the plot (`legend`)
    for x in chart.markers:
        fig.line(x, orientation="vertical", pixel=MARKER)
    ticks = points[0].ticks
    if ticks:
        step = max(1, len(ticks) // max(1, width // 10))
        positions = [float(i) for i in range(0, len(ticks), step)]
        fig.ruler("x").ticks(positions, [display(ticks[int(p)]) for p in positions])
    fig.title(display(chart.title))
    fig.label(display(chart.xlabel), "x")
    fig.label(display(chart.ylabel), "y")
    text = Text.from_ansi(fig.build().string(), no_wrap=True)
    while text.plain.endswith("\n"):  # plotext ends with a line break: the legend's line would be cut
        text.right_crop(1)
    return text


class PlotView(Widget):
    """Shows one Chart, rebuilt when its data or the widget's size changes."""

    DEFAULT_CSS = """
    PlotView { height: 1fr; width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.chart: Chart | None = None
        self._cache: tuple[tuple[int, int, int], Text] | None = None
        self._version = 0

    def show(self, chart: Chart) -> None:
        self.chart = chart
        self._version += 1
        self.refresh()

    def render(self) -> Text:
        if self.chart is None:
            return Text("loading…", style="italic")
        width, height = self.content_region.size
        key = (width, height, self._version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, build_chart(self.chart, width, height))
        return self._cache[1]
