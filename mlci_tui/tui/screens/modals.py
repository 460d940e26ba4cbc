"""Small dialogs: a text prompt, the export dialog, the column picker."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, SelectionList, Static, TextArea
from textual.widgets.selection_list import Selection

from mlci_tui.sanitize import display

EXPORT_FORMATS = {"csv": "CSV", "json": "JSON", "md": "Markdown"}


class PromptScreen(ModalScreen[str | None]):
    """Ask for a line (a tag) or a text (a note); returns None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, title: str, *, initial: str = "", multiline: bool = False, placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.initial = initial
        self.multiline = multiline
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text), classes="dialog-title")
            if self.multiline:
                yield TextArea(self.initial, id="prompt-text", soft_wrap=True)
                yield Label("ctrl+s saves · esc cancels", classes="dialog-hint")
            else:
                yield Input(self.initial, placeholder=self.placeholder, id="prompt-input")
                yield Label("enter saves · esc cancels", classes="dialog-hint")
            yield Static("", id="prompt-error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#prompt-text" if self.multiline else "#prompt-input").focus()

    def show_error(self, message: str) -> None:
        self.query_one("#prompt-error", Static).update(Text(display(message)))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        if self.multiline:
            value = self.query_one("#prompt-text", TextArea).text
        else:
            value = self.query_one("#prompt-input", Input).value
        if not value.strip():
            self.show_error("empty: type something, or esc to cancel")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    """Choose a format and a file; returns (format, path) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, directory: Path, stem: str, what: str) -> None:
        super().__init__()
        self.directory = directory
        self.stem = stem
        self.what = what
        self.fmt = "csv"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(f"Export {self.what}"), classes="dialog-title")
            with RadioSet(id="export-format"):
                for n, (key, label) in enumerate(EXPORT_FORMATS.items()):
                    yield RadioButton(label, value=n == 0, id=f"format-{key}")
            yield Input(str(self.directory / f"{self.stem}.csv"), id="export-path")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", id="export-ok")
                yield Button("Cancel", id="export-cancel")
            yield Static("", id="export-error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        fmt = (event.pressed.id or "format-csv").removeprefix("format-")
        path_input = self.query_one("#export-path", Input)
        path = Path(path_input.value)
        if path.suffix.lstrip(".") in EXPORT_FORMATS:
            path_input.value = str(path.with_suffix(f".{fmt}"))
        self.fmt = fmt

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._finish()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export-ok":
            self._finish()
        else:
            self.dismiss(None)

    def _finish(self) -> None:
        value = self.query_one("#export-path", Input).value.strip()
        if not value:
            self.query_one("#export-error", Static).update("give a file name")
            return
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.directory / path
        if path.is_dir():
            self.query_one("#export-error", Static).update(Text(f"{display(str(path))} is a folder"))
            return
        self.dismiss((self.fmt, path))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ColumnsScreen(ModalScreen[tuple[list[str], list[str]] | None]):
    """Pick the metric and param columns of the runs table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(
        self, metrics: list[str], params: list[str], chosen_metrics: list[str], chosen_params: list[str]
    ) -> None:
        super().__init__()
        self.metrics = metrics
        self.params = params
        self.chosen_metrics = chosen_metrics
        self.chosen_params = chosen_params

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Columns (space toggles · ctrl+s saves · esc cancels)", classes="dialog-title")
            with Horizontal(classes="columns-lists"):
                yield SelectionList[str](
                    *[Selection(Text(display(m)), m, m in self.chosen_metrics) for m in self.metrics],
                    id="pick-metrics",
                )
                yield SelectionList[str](
                    *[Selection(Text(display(p)), p, p in self.chosen_params) for p in self.params],
                    id="pick-params",
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="columns-ok")
                yield Button("Cancel", id="columns-cancel")

    def on_mount(self) -> None:
        self.query_one("#pick-metrics", SelectionList).border_title = "metrics"
        self.query_one("#pick-params", SelectionList).border_title = "params"
        self.query_one("#pick-metrics").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "columns-ok":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        metrics = list(self.query_one("#pick-metrics", SelectionList).selected)
        params = list(self.query_one("#pick-params", SelectionList).selected)
        # keep the order the lists show
        self.dismiss(([m for m in self.metrics if m in metrics], [p for p in self.params if p in params]))

    def action_cancel(self) -> None:
        self.dismiss(None)
