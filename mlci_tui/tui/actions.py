"""Every user action in one registry: key bindings, the key bar (footer), the command palette
and the help screen are all built from it, so they cannot disagree. `MOVES` lists the keys a
screen's widgets bind themselves (cursor, tabs): the key bar and help name them too, so the
footer names every key of the screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    scope: str  # "app" or a screen's scope name: runs, run, compare, plot
    keys: str  # Textual key names, comma separated
    action: str  # the action method (without `action_`), on the screen or the app
    description: str  # short: footer and palette title
    help: str  # one line: palette help and help screen
    short: str = ""  # the key bar's label when the description is too long for 80 columns

    @property
    def label(self) -> str:
        return self.short or self.description

    @property
    def key_display(self) -> str:
        return " ".join(KEY_NAMES.get(k, k) for k in self.keys.split(","))

    @property
    def first_key(self) -> str:
        """The key the key bar shows (help and the palette show them all)."""
        return KEY_NAMES.get(self.keys.split(",")[0], self.keys.split(",")[0])


@dataclass(frozen=True)
class Move:
    """Keys a widget of the screen binds (not an action of the screen): shown, never bound here."""

    scope: str
    key_display: str
    description: str
    help: str


KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "esc", "enter": "⏎", "space": "␣", "ctrl+p": "^p"}


ACTIONS: list[Action] = [
    # app-wide
    Action("app", "question_mark,f1", "help", "Help", "Show every key binding and the filter language"),
    Action("app", "q", "quit", "Quit", "Leave mlci tui"),
    Action("app", "w", "sweeps", "Sweeps", "Sweeps: progress, trials, logs; start, cancel, retry; create one"),
    Action("app", "ctrl+p", "command_palette", "Palette", "Every action by name (Textual's command palette)", "Cmds"),
    # the runs table
    Action(
        "runs",
        "slash",
        "focus_filter",
        "Filter",
        "Type a filter (acc > 0.9 and lr in (0.1, 0.01)); enter applies it, ↑↓ move the cursor, esc to the table",
    ),
    Action("runs", "enter", "open_run", "Open", "Open the run under the cursor: params, metrics, steps, notes"),
    Action("runs", "s", "sort", "Sort", "Sort by the column under the cursor (again: reverse); or click a header"),
    Action("runs", "space", "mark", "Mark", "Mark or unmark the run under the cursor (for compare and plot)"),
    Action("runs", "u", "clear_marks", "Unmark", "Clear every mark"),
    Action("runs", "c", "compare", "Compare", "Compare the marked runs side by side"),
    Action("runs", "p", "plot", "Plot", "Plot the marked runs (or the run under the cursor)"),
    Action(
        "runs",
        "b",
        "baseline",
        "Baseline",
        "Pin the run under the cursor as baseline (again: back to deployed)",
        "Base",
    ),
    Action(  # (before Export: at 80 columns the key bar keeps its two lines)
        "runs",
        "m",
        "groups",
        "Groups",
        "One row per group of repeats (a commit's runs, params equal but the seed): mean ± sd (n); again: every run",
        "Group",
    ),
    Action("runs", "e", "export", "Export", "Export the current view to CSV, JSON or Markdown"),
    Action(
        "runs", "o", "columns", "Columns", "Choose the metric and param columns (saved for this repository)", "Cols"
    ),
    Action("runs", "r", "refresh", "Refresh", "Re-read the ledger now (it also refreshes by itself)"),
    # one run
    Action("run", "escape", "back", "Back", "Back to the runs table"),
    Action("run", "n", "add_note", "Note", "Add a note to this run (written to the ledger)"),
    Action("run", "N", "edit_note", "Edit note", "Edit the latest note (a new note replaces it)"),
    Action("run", "t", "add_tag", "Tag", "Tag this run"),
    Action("run", "T", "remove_tag", "Untag", "Remove a tag from this run"),
    Action("run", "b", "baseline", "Baseline", "Pin this run as the baseline of the runs table"),
    Action("run", "space", "mark", "Mark", "Mark or unmark this run"),
    Action("run", "p", "plot", "Plot", "Plot this run's step series"),
    Action(
        "run",
        "D",
        "data_diff",
        "Data diff",
        "Rows added, removed and changed in this run's datasets against the baseline's",
    ),
    # compare
    Action("compare", "escape", "back", "Back", "Back to the runs table"),
    Action("compare", "d", "toggle_differences", "Differences", "Show only the rows that differ between the runs"),
    Action("compare", "e", "export", "Export", "Export this comparison to CSV, JSON or Markdown"),
    Action("compare", "p", "plot", "Plot", "Plot the compared runs"),
    # plots
    Action("plot", "escape", "back", "Back", "Back to where you came from"),
    Action("plot", "1", "mode('steps')", "Steps", "A metric against step, one line per run"),
    Action("plot", "2", "mode('commits')", "Commits", "A metric along the commit history of HEAD"),
    Action("plot", "3", "mode('scatter')", "Scatter", "A param against a metric over the filtered runs"),
    Action("plot", "4", "mode('dvc')", "DVC", "The x/y plots dvc.yaml declares (ROC, PR, ...): run vs baseline"),
    Action("plot", "m", "next_metric", "Metric", "Plot the next metric"),
    Action("plot", "j", "jump_change", "Suspect", "Compare the next change point's commit with the one before it"),
    Action("plot", "x", "next_param", "Param", "Scatter against the next param"),
    # sweeps
    Action("sweeps", "escape", "back", "Back", "Back to where you came from"),
    Action("sweeps", "n", "new_sweep", "New", "Create a sweep and queue its trials"),
    Action("sweeps", "S", "start", "Start", "Start the queued trials of the sweep under the cursor"),
    Action("sweeps", "x", "cancel_sweep", "Cancel", "Cancel the sweep under the cursor"),
    Action("sweeps", "R", "retry", "Retry", "Queue the failed trials of the sweep again"),
    Action("sweeps", "l", "logs", "Logs", "Show the log of the trial under the cursor"),
    Action("sweeps", "tab", "switch_table", "Sweeps/trials", "Move between the sweeps and the trials table"),
]

MOVES: list[Move] = [
    Move(
        "runs",
        "↑↓←→",
        "Move",
        "the row and the column cursor (also k j h l, pgup pgdn, home end); click a header to sort",
    ),
    Move("run", "←→", "Tabs", "switch tabs while the tab bar has focus (tab moves into the table)"),
    Move("compare", "↑↓", "Move", "the row cursor"),
    Move("sweeps", "↑↓", "Move", "the row cursor of the focused table"),
]


def actions_for(scope: str) -> list[Action]:
    return [a for a in ACTIONS if a.scope == scope]


def moves_for(scope: str) -> list[Move]:
    return [m for m in MOVES if m.scope == scope]


def bindings(scope: str) -> list[Binding]:
    return [Binding(a.keys, a.action, a.description) for a in actions_for(scope)]
