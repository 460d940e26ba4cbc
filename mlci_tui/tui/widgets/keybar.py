"""The key bar: every key of the screen, from the action registry, wrapped onto as many lines
as the width needs.

Textual's Footer shows one scrolling line of the focused widget's bindings: at 80 columns
the runs screen's keys ran off the edge, and keys that widgets bind (the cursor, the tabs)
were never named. This bar names the screen's actions, the keys its widgets bind
(`actions.MOVES`) and the app-wide ones, in that order; a click on an entry runs it.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.widget import Widget

from mlci_tui.tui import actions

GAP = "  "
Entry = tuple[str, str, "str | None", bool]  # key, label, action (None: a widget's own keys), app-wide


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: auto;
        background: $panel;
        color: $text-muted;
        padding: 0 1;
    }
    """

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope
        own: list[Entry] = [(a.first_key, a.label, a.action, False) for a in actions.actions_for(scope)]
        moves: list[Entry] = [(m.key_display, m.description, None, False) for m in actions.moves_for(scope)]
        app: list[Entry] = [(a.first_key, a.label, a.action, True) for a in actions.actions_for("app")]
        self.entries = own + moves + app
        self._spans: list[tuple[int, int, int, int]] = []  # line, start, end, entry index

    def _layout(self, width: int) -> list[list[int]]:
        """Entries packed greedily into lines of `width` cells (one entry never splits)."""
        lines: list[list[int]] = [[]]
        used = 0
        for n, (key, description, _action, _app) in enumerate(self.entries):
            size = cell_len(f"{key} {description}")
            if lines[-1] and used + len(GAP) + size > width:
                lines.append([])
                used = 0
            used += (len(GAP) if lines[-1] else 0) + size
            lines[-1].append(n)
        return lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._layout(max(width, 1)))

    def render(self) -> Text:
        key_style = self.app.theme_variables.get("footer-key-foreground") or self.app.theme_variables["accent"]
        text = Text(no_wrap=True, overflow="crop")
        self._spans = []
        for y, line in enumerate(self._layout(max(self.content_size.width, 1))):
            if y:
                text.append("\n")
            x = 0
            for i, n in enumerate(line):
                key, description, _action, _app = self.entries[n]
                if i:
                    text.append(GAP)
                    x += len(GAP)
                start = x
                text.append(key, style=f"bold {key_style}")
                text.append(" " + description)
                x += cell_len(f"{key} {description}")
                self._spans.append((y, start, x, n))
        return text

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        for y, start, end, n in self._spans:
            if y == offset.y and start <= offset.x < end:
                _key, _description, action, app_wide = self.entries[n]
                if action is not None:
                    await (self.app if app_wide else self.screen).run_action(action)
                return
