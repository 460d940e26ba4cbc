"""The help screen: every binding (from the action registry) and the filter language."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from mlci_tui.tui import actions

SCOPES = {
    "app": "Everywhere",
    "runs": "Runs table",
    "run": "One run",
    "compare": "Compare",
    "plot": "Plots",
    "sweeps": "Sweeps",
}

FILTER_HELP = """\
## The filter (press `/`, type, `enter`)

| write | means |
|---|---|
| `acc > 0.9 and lr in (0.1, 0.01)` | a metric, a param (numbers compare as numbers) |
| `model ~ "cnn.*"`, `branch !~ "^exp/"` | regular expression match (anywhere in the value) |
| `not (status = "failed") or stale` | `and`, `or`, `not`, parentheses |
| `min(loss) < 0.2`, `max(acc)`, `last(loss)`, `first`, `avg`, `count` | over a run's step series |
| `loss@step=100 < 0.5` (or `loss@100`) | a step series at one step |
| `kind = "commit"`, `id = "ab12cd34"`, `tag = "best"`, `time > "2025-01-01"` | run fields |
| `metric(name)`, `param(name)`, `` `odd name` `` | when a name is ambiguous or unusual |
| `lr` for `train.lr` | a unique last part of a dotted name is enough |
| `sql: metrics['acc'] > 0.9` (or `:`) | raw DuckDB SQL over the `runs` view |

Values are bound as query parameters, never pasted into SQL. A filter that does not
compile or run shows its error under the bar; the table keeps the previous result.

## Columns and colours

`◆` (amber) marks the baseline (pinned with `b`, else the run promoted to `deployed`); `●`
a marked run. `Δ` columns are differences from the baseline, green when better and red when
worse, by the direction of the metric in `mlci.yaml` (`metrics.fields.NAME.direction`).
When the columns do not fit, id, subject and the metrics come first; `→` scrolls to the rest.
Params shown are those that differ between runs; `o` picks columns (saved per repository in
`.git/mlci/tui.json`). The table refreshes by itself when the ledger changes.

Every action is also in the command palette (`ctrl+p`).
"""


def bindings_markdown(first: str = "runs") -> str:
    """Every binding, the section of the screen help was asked from first."""
    lines = ["# mlci tui: keys", ""]
    order = ["app", first] + [s for s in SCOPES if s not in ("app", first)]
    for scope in order:
        title = SCOPES.get(scope)
        if title is None:
            continue
        lines += [f"## {title}", "", "| key | action | |", "|---|---|---|"]
        for a in actions.actions_for(scope):
            lines.append(f"| `{a.key_display}` | {a.description} | {a.help} |")
        for m in actions.moves_for(scope):
            lines.append(f"| `{m.key_display}` | {m.description} | {m.help} |")
        lines.append("")
    return "\n".join(lines) + "\n" + FILTER_HELP


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
    ]

    def __init__(self, scope: str = "runs") -> None:
        super().__init__()
        self.scope = scope

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(bindings_markdown(self.scope))

    def on_mount(self) -> None:
        self.query_one("#help").focus()

    def action_close(self) -> None:
        self.dismiss(None)
