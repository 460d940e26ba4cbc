"""A virtual table of runs: paints only the rows on screen, straight from a pyarrow result.

A stock DataTable builds a row object and measures every cell of every row it is given;
with 100,000 runs that alone blows the time and memory budget. This widget keeps the
view's ordered run ids and the pages of rows read so far (the query read the pages
around the cursor); a page that scrolls into sight is read from DuckDB by a worker, its
rows showing their id meanwhile. Cells are formatted when a line is first painted, as
sanitised text in plain segments: no string from the ledger is ever parsed as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mlci_tui.ledger.query.runs_view import PAGE_ROWS, Column, Row, ViewResult, load_pages
from mlci_tui.numbers import HUMAN_DIGITS, digits_to_tell_apart
from mlci_tui.output import Spread
from mlci_tui.tui import cells

if TYPE_CHECKING:
    from mlci_tui.tui.app import MlciApp

PAGE = PAGE_ROWS
PAGE_CACHE = 64  # pages kept (8,192 rows)
WIDTH_SAMPLE = 120  # rows measured for column widths (the first ones shown)
MAX_WIDTH = {"subject": 44, "branch": 18, "param": 18, "tags": 24, "time": 16, "id": 8, "kind": 16, "status": 8}
GROUP_WIDTH = 24  # a metric column of the grouped view: `0.91233 ± 0.0041 (12)`
FLAGS = "flags"
FIXED_COLUMNS = 2  # flags, id


LEAD_METRICS = 2  # metrics (with their Δ) a narrow table still shows beside id and subject
MIN_SUBJECT = 12


def arrange_columns(columns: list[Column], widths: list[int], viewport: int) -> tuple[list[Column], list[int]]:
    """The view's columns as they fit `viewport` cells.

    When every column fits (or the width is not known yet), the view's order. When not,
    what answers "which run is best" comes first: flags, id, the subject (cut to leave room),
    the metrics in the view's order (the gate's, then those with a direction) with their Δ,
    then the rest (time, branch, kind, status, params, tags), reached by scrolling sideways.
    """
    if not viewport or sum(w + 2 for w in widths) <= viewport:
        return columns, widths
    pairs = list(zip(columns, widths))
    lead = [p for p in pairs if p[0].kind in ("flags",) or p[0].key in ("id", "subject")]
    metrics = [p for p in pairs if p[0].kind in ("metric", "delta")]
    rest = [p for p in pairs if p not in lead and p not in metrics]
    names = list(dict.fromkeys(c.name for c, _w in metrics))[:LEAD_METRICS]
    needed = sum(w + 2 for c, w in lead if c.key != "subject") + sum(w + 2 for c, w in metrics if c.name in names)
    lead = [(c, max(MIN_SUBJECT, min(w, viewport - needed - 2))) if c.key == "subject" else (c, w) for c, w in lead]
    arranged = lead + metrics + rest
    return [c for c, _w in arranged], [w for _c, w in arranged]


class RunTable(ScrollView, can_focus=True):
    """Runs: a row cursor, a column cursor (for sorting by key), marks and baseline deltas."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("left,h", "cursor_left", "Left", show=False),
        Binding("right,l", "cursor_right", "Right", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("enter", "open", "Open", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "runtable--header",
        "runtable--header-cursor",
        "runtable--cursor",
        "runtable--cell-cursor",
        "runtable--marked",
        "runtable--baseline",
        "runtable--better",
        "runtable--worse",
        "runtable--muted",
        "runtable--flag-marked",
        "runtable--flag-baseline",
    }

    DEFAULT_CSS = """
    RunTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .runtable--header { text-style: bold; background: $surface; color: $text-muted; }
        & > .runtable--header-cursor { background: $surface; color: $primary; text-style: bold underline; }
        & > .runtable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        & > .runtable--cell-cursor { text-style: underline; }
        &:focus > .runtable--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
        }
        & > .runtable--marked { color: $primary; text-style: bold; }
        & > .runtable--baseline { color: $accent; text-style: italic; }
        & > .runtable--flag-marked { color: $primary; text-style: bold; }
        & > .runtable--flag-baseline { color: $accent; text-style: bold; }
        & > .runtable--better { color: $success; }
        & > .runtable--worse { color: $error; }
        & > .runtable--muted { color: $text-muted; }
    }
    """

    class Opened(Message):
        """The user asked to open a run (enter or double click)."""

        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    class SortRequested(Message):
        """The user asked to sort by a column (`s` on it, or a click on its header)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.result: ViewResult | None = None
        self.columns: list[Column] = []
        self.widths: list[int] = []
        self.digits: dict[int, int] = {}  # a number column's source -> the digits its sampled values need
        self.offsets: list[int] = []
        self.cursor_row = 0
        self.cursor_col = 1
        self.marked: set[str] = set()
        self.sort_key: str | None = None
        self.descending = True
        self.empty_text = "loading runs…"
        self._pages: LRUCache[int, list[Row]] = LRUCache(PAGE_CACHE)
        self._pending: set[int] = set()  # pages a worker is reading
        self._missing: set[int] = set()  # pages painted before they were read
        self._fetch_scheduled = False
        self._lines: LRUCache[tuple[Any, ...], Strip] = LRUCache(512)
        self._generation = 0
        self._viewport = Size(0, 0)
        self._measured_keys: list[str] = []
        self._total_width = 0
        self._row_cells: LRUCache[int, list[tuple[str, str | None, bool]]] = LRUCache(1024)
        self._natural_columns: list[Column] = []  # the view's order, before `arrange_columns`
        self._natural_widths: list[int] = []
        self._arranged_for = 0  # the viewport width the columns were arranged for

    # ------------------------------------------------------------------ data
    @property
    def row_count(self) -> int:
        return self.result.count if self.result is not None else 0

    def run_id_at(self, row: int) -> str | None:
        if self.result is None or not 0 <= row < self.row_count:
            return None
        return str(self.result.ids[row].as_py())

    @property
    def current_run_id(self) -> str | None:
        return self.run_id_at(self.cursor_row)

    def index_of(self, run_id: str) -> int | None:
        return self.result.index_of(run_id) if self.result is not None else None

    def run_ids(self) -> list[str]:
        if self.result is None:
            return []
        return [str(r) for r in self.result.ids.to_pylist()]

    def is_baseline(self, run_id: str) -> bool:
        """The baseline's row; in the grouped view, the row of the baseline's group."""
        if self.result is None or self.result.baseline is None:
            return False
        if self.result.groups is not None:
            return self.result.groups.baseline_row == run_id
        return self.result.baseline.run_id == run_id

    def _page(self, number: int) -> list[Row] | None:
        """A page of rows, or None while it is being read (a worker is asked to)."""
        page = self._pages.get(number)
        if page is None and self.result is not None:
            page = self.result.page(number)  # read with the view (a complete view has every page)
            if page is None:
                self._want(number)
            else:
                self._pages[number] = page
        return page

    def _want(self, number: int) -> None:
        if number in self._pending:
            return
        self._missing.add(number)
        if not self._fetch_scheduled:
            self._fetch_scheduled = True
            self.call_after_refresh(self._fetch_missing)

    def _fetch_missing(self) -> None:
        self._fetch_scheduled = False
        if self.result is None or not self._missing:
            return
        last = (self.row_count - 1) // PAGE
        wanted = set(self._missing)
        for n in self._missing:  # and the neighbours, so scrolling on finds them read
            wanted |= {n - 1, n + 1}
        wanted = {n for n in wanted if 0 <= n <= last and n not in self._pages and n not in self._pending}
        self._missing.clear()
        if wanted:
            self._pending |= wanted
            self._read_pages(self.result, wanted)

    @work(thread=True, group="pages", exit_on_error=False)
    def _read_pages(self, result: ViewResult, numbers: set[int]) -> None:
        app: MlciApp = self.app  # type: ignore[assignment]
        try:
            pages = load_pages(app.repo, result, numbers)
        except Exception:  # the cache is being rebuilt: the next paint asks again
            app.call_from_thread(self._pages_read, result, numbers, {})
            return
        app.call_from_thread(self._pages_read, result, numbers, pages)

    def _pages_read(self, result: ViewResult, numbers: set[int], pages: dict[int, list[Row]]) -> None:
        self._pending -= numbers
        if result is not self.result:
            return
        if not pages:
            self.set_timer(0.5, self.repaint)
            return
        for n, rows in pages.items():
            self._pages[n] = rows
        self.repaint()

    def set_result(self, result: ViewResult, *, keep: str | None = None) -> None:
        """Show a new result; the cursor stays on run `keep` (at the same height on screen)."""
        old_screen_row = self.cursor_row - int(self.scroll_y)
        old_key = self.columns[self.cursor_col].key if 0 <= self.cursor_col < len(self.columns) else None
        regrouped = self.result is not None and (self.result.groups is None) != (result.groups is None)
        self.result = result
        self._pages.clear()
        self._pending.clear()
        self._missing.clear()
        for n, rows in result.pages.items():
            self._pages[n] = rows
        self._row_cells.clear()
        self.columns = [Column(FLAGS, "", "flags"), *result.columns]
        self.sort_key = result.spec.sort_key
        self.descending = result.spec.descending
        self.digits = self._digits()
        widths = self._measure()
        if [c.key for c in self.columns] == self._measured_keys and not regrouped:
            # same columns (a sort, a refresh): never narrower, so nothing jumps sideways
            natural = dict(zip(self._measured_keys, self._natural_widths))
            widths = [max(w, natural[c.key]) for c, w in zip(self.columns, widths)]
        self._measured_keys = [c.key for c in self.columns]
        self._natural_columns, self._natural_widths = list(self.columns), widths
        self._arrange(old_key)
        row = self.index_of(keep) if keep else None
        self.cursor_row = row if row is not None else min(self.cursor_row, max(self.row_count - 1, 0))
        self.empty_text = (
            "no runs match the filter"
            if result.spec.filter_text.strip()
            else "no runs in the ledger yet: commit params/metrics files with the hooks installed (mlci init), "
            "or run `mlci capture`"
        )
        self.repaint()
        if row is not None:
            self.scroll_to(y=max(0, self.cursor_row - old_screen_row), animate=False, immediate=True)
        self._scroll_cursor_into_view()

    def _arrange(self, keep_key: str | None) -> None:
        """Columns in the order and widths that fit the viewport (`arrange_columns`); the
        column cursor stays on `keep_key`."""
        self._arranged_for = self.viewport.width
        self.columns, self.widths = arrange_columns(self._natural_columns, self._natural_widths, self._arranged_for)
        self.offsets = []
        x = 0
        for w in self.widths:
            self.offsets.append(x)
            x += w + 2
        self._total_width = x
        keys = [c.key for c in self.columns]
        self.cursor_col = keys.index(keep_key) if keep_key in keys else min(max(self.cursor_col, 1), len(keys) - 1)
        self._row_cells.clear()
        self.virtual_size = Size(x, self.row_count + 1)

    def on_resize(self) -> None:
        if self.result is not None and self.viewport.width != self._arranged_for:
            current = self.current_column
            self._arrange(current.key if current else None)
            self.repaint()
            self._scroll_cursor_into_view()

    def _digits(self) -> dict[int, int]:
        """Per metric column, the digits at which the rows read with the view print differently."""
        if self.result is None:
            return {}
        rows = [r for n in range(min(self.row_count, WIDTH_SAMPLE) // PAGE + 1) for r in (self.result.page(n) or [])]
        return {
            col.source: digits_to_tell_apart(r[col.source] for r in rows[:WIDTH_SAMPLE])
            for col in self.columns
            if col.kind == "metric"
        }

    def _measure(self) -> list[int]:
        widths = []
        rows = range(min(self.row_count, WIDTH_SAMPLE))
        # the rows read with the view (measuring never asks for more)
        sample = [self._cells(i) for i in rows if self.result is not None and self.result.page(i // PAGE) is not None]
        for n, col in enumerate(self.columns):
            if col.kind == "flags":
                widths.append(2)
                continue
            label = cell_len(cells.display(col.label)) + 1  # room for the sort arrow
            widest = max((cell_len(row[n][0]) for row in sample), default=0)
            limit = MAX_WIDTH.get(col.key, MAX_WIDTH.get(col.kind, 14))
            if col.kind == "metric" and self.result is not None and self.result.groups is not None:
                limit = GROUP_WIDTH
            widths.append(max(min(max(widest, 1), limit), min(label, 24)))
        return widths

    # ------------------------------------------------------------------ cells
    def _cells(self, row: int) -> list[tuple[str, str | None, bool]]:
        """(text, style class or None, right-aligned) for every column of `row` (cached)."""
        found = self._row_cells.get(row)
        if found is None:
            found = self._format(row)
            if found is None:
                return self._placeholder(row)
            self._row_cells[row] = found
        return found

    def _placeholder(self, row: int) -> list[tuple[str, str | None, bool]]:
        """A row whose page is being read: its flag and id (both known), empty cells."""
        run_id = self.run_id_at(row) or ""
        out: list[tuple[str, str | None, bool]] = [(("●" if run_id in self.marked else " ") + " ", "marked", False)]
        out.append((cells.display(run_id[:8]), None, False))
        return out + [("", None, False)] * (len(self.columns) - 2)

    def _format(self, row: int) -> list[tuple[str, str | None, bool]] | None:
        """None while the row's page is being read."""
        assert self.result is not None
        page = self._page(row // PAGE)
        if page is None:
            return None
        values = page[row % PAGE]
        base = self.result.baseline
        groups = self.result.groups
        group = groups.group(str(values[0])) if groups is not None else None
        base_means = base.metrics if base else None
        if groups is not None and groups.baseline_means is not None:
            base_means = groups.baseline_means  # Δ against the baseline's group, as the gate compares
        run_id = str(values[0])
        out: list[tuple[str, str | None, bool]] = []
        for col in self.columns:
            if col.kind == "flags":
                flag = ("●" if run_id in self.marked else " ") + ("◆" if self.is_baseline(run_id) else " ")
                out.append((flag, "marked", False))
                continue
            value = values[col.source]
            if col.key == "id":
                out.append((cells.display(run_id[:8]), None, False))
            elif col.key == "time":
                out.append((cells.when(value), None, False))
            elif col.kind == "metric":
                digits = self.digits.get(col.source, HUMAN_DIGITS)
                summary = group.summary(col.name) if group is not None and group.n > 1 else None
                text = Spread(*summary).text(digits) if summary else cells.number(value, digits)
                out.append((text, None, True))
            elif col.kind == "delta":
                text, diff = cells.delta(value, base_means.get(col.name) if base_means else None)
                kind = cells.verdict(diff, col.direction)
                out.append((text, kind or ("muted" if diff == 0 else None), True))
            elif col.kind == "param":
                text = cells.plain(value)
                out.append((text, None, cells.looks_numeric(text)))
            else:
                out.append((cells.plain(value), None, False))
        return out

    # ------------------------------------------------------------------ painting
    def repaint(self) -> None:
        """Forget every painted line (marks, baseline or data changed) and paint again."""
        self._generation += 1
        self._lines.clear()
        self._row_cells.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"runtable--{name}", partial=True)

    def render_line(self, y: int) -> Strip:
        width = self.viewport.width
        scroll_x, scroll_y = self.scroll_offset
        base = self.rich_style
        if y == 0:
            key: tuple[Any, ...] = ("header", self._generation, self.cursor_col, self.has_focus)
            strip = self._lines.get(key)
            if strip is None:
                strip = self._render_header(base)
                self._lines[key] = strip
        else:
            row = scroll_y + y - 1
            if row >= self.row_count:
                if row == 0:
                    return Strip([Segment(cells.fit(" " + self.empty_text, width), base + self._style("muted"))])
                return Strip.blank(width, base)
            is_cursor = row == self.cursor_row
            key = ("row", self._generation, row, is_cursor, self.cursor_col if is_cursor else -1, self.has_focus)
            strip = self._lines.get(key)
            if strip is None:
                strip = self._render_row(row, base, is_cursor)
                self._lines[key] = strip
        fixed = self.fixed_width
        if fixed >= width:
            return strip.crop_extend(0, width, base)
        left = strip.crop_extend(0, fixed, base)
        right = strip.crop_extend(fixed + scroll_x, scroll_x + width, base)
        return Strip.join([left, right])

    @property
    def fixed_width(self) -> int:
        """The flags and id columns stay put when the table scrolls sideways."""
        return self.offsets[FIXED_COLUMNS] if len(self.offsets) > FIXED_COLUMNS else 0

    def _render_header(self, base: Style) -> Strip:
        header = base + self._style("header")
        segments: list[Segment] = []
        for n, (col, w) in enumerate(zip(self.columns, self.widths)):
            label = cells.display(col.label)
            if col.key == self.sort_key:
                label += "▼" if self.descending else "▲"
            style = header + self._style("header-cursor") if n == self.cursor_col else header
            segments.append(Segment(" " + cells.fit(label, w, right=col.numeric) + " ", style))
        return Strip(segments, self._total_width)

    def _render_row(self, row: int, base: Style, is_cursor: bool) -> Strip:
        values = self._cells(row)
        run_id = self.run_id_at(row) or ""
        row_style = base
        if run_id in self.marked:
            row_style += self._style("marked")
        if self.is_baseline(run_id):
            row_style += self._style("baseline")
        if is_cursor:
            row_style += self._style("cursor")
        segments: list[Segment] = []
        plain: list[str] = []  # neighbouring cells in the row's own style go out as one segment
        for n, ((text, klass, right), w) in enumerate(zip(values, self.widths)):
            if n == 0 and self.columns[0].kind == "flags":  # ● in the mark's colour, ◆ in the baseline's
                segments.append(Segment(" ", row_style))
                for char, name in zip(cells.fit(text, w), ("flag-marked", "flag-baseline")):
                    segments.append(Segment(char, row_style + self._style(name) if char != " " else row_style))
                plain = [" "]
                continue
            cell = cells.fit(text, w, right=right)
            special = (klass and klass != "marked") or (is_cursor and n == self.cursor_col)
            if not special:
                plain.append(f" {cell} ")
                continue
            style = row_style
            if klass and klass != "marked":
                style += self._style(klass)
            if is_cursor and n == self.cursor_col:
                style += self._style("cell-cursor")
            plain.append(" ")
            segments.append(Segment("".join(plain), row_style))
            segments.append(Segment(cell, style))
            plain = [" "]
        if plain:
            segments.append(Segment("".join(plain), row_style))
        return Strip(segments, self._total_width)

    # ------------------------------------------------------------------ cursor
    @property
    def viewport(self) -> Size:
        """The visible content size, without scrollbars (the last known one while the screen
        is being laid out and the widget's region reads as empty)."""
        region = self.scrollable_content_region
        if region.area:
            self._viewport = region.size
        return self._viewport

    @property
    def _page_height(self) -> int:
        return max(1, self.viewport.height - 1)

    def move_cursor(self, row: int | None = None, col: int | None = None) -> None:
        if row is not None:
            self.cursor_row = max(0, min(row, self.row_count - 1))
        if col is not None:
            self.cursor_col = max(1, min(col, len(self.columns) - 1))
        self._lines.clear()
        self.refresh()
        self._scroll_cursor_into_view()

    def _scroll_cursor_into_view(self) -> None:
        if not self.columns:
            return
        height = self._page_height
        y = int(self.scroll_y)
        if self.cursor_row < y:
            y = self.cursor_row
        elif self.cursor_row >= y + height:
            y = self.cursor_row - height + 1
        x = int(self.scroll_x)
        fixed = self.fixed_width
        width = self.viewport.width - fixed
        if FIXED_COLUMNS <= self.cursor_col < len(self.offsets):
            left = self.offsets[self.cursor_col] - fixed
            right = left + self.widths[self.cursor_col] + 2
            if left < x:
                x = left
            elif right > x + width:
                x = right - width
        self.scroll_to(x=x, y=y, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_cursor_left(self) -> None:
        self.move_cursor(col=self.cursor_col - 1)

    def action_cursor_right(self) -> None:
        self.move_cursor(col=self.cursor_col + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self.cursor_row - self._page_height)

    def action_page_down(self) -> None:
        self.move_cursor(row=self.cursor_row + self._page_height)

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=self.row_count - 1)

    def action_open(self) -> None:
        run_id = self.current_run_id
        if run_id:
            self.post_message(self.Opened(run_id))

    @property
    def current_column(self) -> Column | None:
        return self.columns[self.cursor_col] if 0 < self.cursor_col < len(self.columns) else None

    # ------------------------------------------------------------------ marks
    def toggle_mark(self, run_id: str | None = None) -> bool:
        run_id = run_id or self.current_run_id
        if not run_id:
            return False
        if run_id in self.marked:
            self.marked.discard(run_id)
        else:
            self.marked.add(run_id)
        self.repaint()
        return run_id in self.marked

    def clear_marks(self) -> None:
        self.marked.clear()
        self.repaint()

    # ------------------------------------------------------------------ mouse
    def _column_at(self, x: int) -> int | None:
        for n, left in enumerate(self.offsets):
            if left <= x < left + self.widths[n] + 2:
                return n
        return None

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self.result is None:
            return
        x = offset.x if offset.x < self.fixed_width else offset.x + int(self.scroll_x)
        col = self._column_at(x)
        if offset.y == 0:
            if col is not None and col > 0:
                self.cursor_col = col
                self.post_message(self.SortRequested(self.columns[col].key))
            return
        row = int(self.scroll_y) + offset.y - 1
        if row >= self.row_count:
            return
        self.move_cursor(row=row, col=col if col else None)
        if col == 0:
            self.toggle_mark()
        if event.chain >= 2:
            self.action_open()
