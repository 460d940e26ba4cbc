"""The TUI's theme: colour carries meaning, chrome stays quiet.

Green and red say a value moved in the metric's better or worse direction; amber marks the
baseline (`◆`) and warnings; teal is focus, keys and marks; everything else (headers, bars,
labels) is muted grey on a dark slate, so the numbers are what the eye finds. Textual widgets
take these colours through the CSS variables (`$success`, `$accent`, ...); text built in
code takes them through `tone()`, so one palette serves both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.theme import Theme

if TYPE_CHECKING:
    from textual.app import App

TEAL, AMBER, GREEN, RED = "#4fb3bf", "#e5b567", "#8fc77d", "#e8736f"

MLCI_THEME = Theme(
    name="mlci",
    primary=TEAL,
    secondary="#6c7a89",
    accent=AMBER,
    warning=AMBER,
    error=RED,
    success=GREEN,
    foreground="#d5dde5",
    background="#101418",
    surface="#151a20",
    panel="#1d242c",
    dark=True,
    variables={
        "block-cursor-background": "#264a52",
        "block-cursor-foreground": "#eef5f7",
        "block-cursor-text-style": "none",
        "block-cursor-blurred-background": "#1f2c33",
        "block-cursor-blurred-text-style": "none",
        "footer-key-foreground": TEAL,
        "border": TEAL,
        "border-blurred": "#2a333d",
        "scrollbar": "#2a333d",
        "scrollbar-hover": "#3a4654",
        "scrollbar-active": TEAL,
        "scrollbar-background": "#151a20",
        "input-selection-background": "#4fb3bf 35%",
    },
)

# meaning -> theme colour name (what `tone` and the CSS agree on)
MEANINGS = {"better": "success", "worse": "error", "baseline": "accent", "warning": "warning", "key": "primary"}


def tone(app: App[object], meaning: str) -> str:
    """The colour of a meaning (`better`, `worse`, `baseline`, `warning`, `key`) in the app's theme."""
    name = MEANINGS.get(meaning, meaning)
    return str(app.theme_variables.get(name) or app.get_css_variables().get(name, ""))


def badge(app: App[object], label: str) -> Text:
    """A screen's name at the left of its title bar: the one bright spot of the chrome."""
    text = Text()
    text.append(f" {label} ", style=f"bold {app.theme_variables.get('background', 'black')} on {tone(app, 'key')}")
    return text
