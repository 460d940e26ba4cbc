"""One run: params, metrics (last, min, max, at a step), step series, notes and tags,
datasets and validation results, commit information. Notes and tags are written here as
ledger events.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Label, Static, TabbedContent, TabPane

from mlci_tui.errors import InputError, MlciError
from mlci_tui.ledger.annotate import add_note, add_tag
from mlci_tui.ledger.query.detail import MetricRow, RunDetail, Validation, digest_of, load_detail
from mlci_tui.ledger.query.groups import Group, load_groups
from mlci_tui.output import Spread
from mlci_tui.sanitize import display
from mlci_tui.tui import actions, cells
from mlci_tui.tui.messages import (
    DataDiffLoaded,
    DetailFailed,
    DetailLoaded,
    GroupsFailed,
    GroupsLoaded,
    NoteOrTagWritten,
    WriteFailed,
    post_answer,
)
from mlci_tui.tui.screens.base import LedgerScreen
from mlci_tui.tui.theme import badge, tone
from mlci_tui.tui.widgets.keybar import KeyBar
from mlci_tui.tui.widgets.tables import refill

if TYPE_CHECKING:
    pass

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if len(finite) < 2:
        return ""
    if len(finite) > width:
        step = len(finite) / width
        finite = [finite[int(i * step)] for i in range(width)]
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(7, int((v - lo) / span * 7.999))] for v in finite)


def _table(table: DataTable[Any], columns: list[str], rows: list[list[Any]]) -> None:
    """Fill a DataTable with Text only: labels and cells are never parsed as markup."""
    refill(
        table, [Text(c) for c in columns], [[v if isinstance(v, Text) else cells.safe(v) for v in row] for row in rows]
    )


class RunScreen(LedgerScreen):
    SCOPE = "run"
    BINDINGS: ClassVar[list[BindingType]] = actions.bindings("run")  # type: ignore[assignment]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.detail: RunDetail | None = None
        self.data_text = Text()  # the Data tab as last painted (a data diff appends to it)
        self.at_step: int | None = None
        self.group: Group | None = None  # the run's group of repeats, when it has repeats

    def compose(self) -> ComposeResult:
        yield Static(Text(f" run {self.run_id[:8]}  loading…"), id="run-title")
        yield Static(id="run-header")
        with TabbedContent(id="run-tabs"):
            with TabPane("Metrics", id="tab-metrics"):
                with Horizontal(id="at-step-bar"):
                    yield Label("value at step:")
                    yield Input(placeholder="step", id="at-step", type="integer")
                yield DataTable(id="metrics", cursor_type="row", zebra_stripes=True)
            with TabPane("Params", id="tab-params"):
                yield DataTable(id="params", cursor_type="row", zebra_stripes=True)
            with TabPane("Steps", id="tab-steps"):
                yield DataTable(id="steps", cursor_type="row", zebra_stripes=True)
            with TabPane("Notes & tags", id="tab-notes"):
                yield VerticalScroll(Static(id="notes"), id="notes-view")
            with TabPane("Data", id="tab-data"):
                yield VerticalScroll(Static(id="data"), id="data-view")
            with TabPane("Commit", id="tab-commit"):
                yield VerticalScroll(Static(id="commit"), id="commit-view")
        yield KeyBar(self.SCOPE)

    def on_mount(self) -> None:
        self.reload()

    # ------------------------------------------------------------------ loading
    @work(thread=True, group="detail", exit_on_error=False)
    def request(self, generation: int) -> None:
        post_answer(self, generation, DetailLoaded, DetailFailed, lambda: load_detail(self.mlci.repo, self.run_id))

    def on_note_or_tag_written(self, message: NoteOrTagWritten) -> None:
        message.stop()
        self.notify(message.value, title="Ledger", markup=False)
        self.reload()

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        message.stop()
        if message.generation != self.generation:
            return
        if message.value is None:
            self.query_one("#run-title", Static).update(Text(f" run {self.run_id[:8]}: not in the ledger (redacted?)"))
            return
        self.detail = message.value
        self._show(message.value)
        self._load_group(self.generation)

    @work(thread=True, group="group", exit_on_error=False)
    def _load_group(self, generation: int) -> None:
        seed = self.mlci.config.section("train")["repeats"]["seed_param"]
        load = lambda: load_groups(self.mlci.repo, [self.run_id], seed)  # noqa: E731
        post_answer(self, generation, GroupsLoaded, GroupsFailed, load)

    def on_groups_loaded(self, message: GroupsLoaded) -> None:
        message.stop()
        group = message.value.get(self.run_id)
        if message.generation != self.generation or self.detail is None or group is None or group.n < 2:
            return
        self.group = group
        self._show(self.detail)

    def on_groups_failed(self, message: GroupsFailed) -> None:
        message.stop()
        self.notify(message.value, title="Error", severity="error", markup=False)

    def on_detail_failed(self, message: DetailFailed) -> None:
        message.stop()
        self.notify(message.value, title="Error", severity="error", markup=False)

    def on_write_failed(self, message: WriteFailed) -> None:
        message.stop()
        self.notify(message.value, title="Error", severity="error", markup=False)

    # ------------------------------------------------------------------ painting
    def _show(self, d: RunDetail) -> None:
        run = d.run
        subject = run.subject
        title = badge(self.app, f"run {self.run_id[:8]}")
        title.append(" " + display(subject), style=f"bold {tone(self.app, 'foreground')}")
        if self.run_id in self.mlci.marked:
            title.append("  ● marked", style=f"bold {tone(self.app, 'key')}")
        self.query_one("#run-title", Static).update(title)

        header = Text()
        fields = [
            ("kind", run.kind),
            ("status", run.status),
            ("branch", run.branch),
            ("commit", (run.commit or "")[:12] or None),
            ("time", cells.when(run.started or run.time)),
            ("author", run.author),
        ]
        for n, (k, v) in enumerate(fields):
            if v in (None, ""):
                continue
            header.append(("" if n == 0 else "   ") + f"{k} ", style="dim")
            header.append(display(v))
        if run.stale:
            header.append("   stale", style="bold yellow")
        header.append("\n")
        header.append("stages ", style="dim")
        header.append(", ".join(display(s) for s in d.stages) or "—")
        header.append("   tags ", style="dim")
        header.append(" ".join(display(t) for t in d.tags) or "—")
        header.append("   notes ", style="dim")
        header.append(str(len(d.notes)))
        header.append(f"   id {display(self.run_id)}", style="dim")
        if self.group is not None:
            header.append("\n")
            header.append("group ", style="dim")
            header.append(f"{self.group.n} runs of this commit, params equal but the seed (the group column)")
            if self._holds_baseline(self.group):
                header.append("  ◆ the baseline's group", style=f"bold {tone(self.app, 'baseline')}")
        self.query_one("#run-header", Static).update(header)
        self._show_metrics()
        _table(self.query_one("#params", DataTable), ["param", "value", "file"], [[n, v, f] for f, n, v in d.params])
        _table(
            self.query_one("#steps", DataTable),
            ["series", "steps", "first", "last", "min", "max", "curve"],
            [
                [
                    name,
                    len(points),
                    points[0][1],
                    points[-1][1],
                    min(v for _, v in points),
                    max(v for _, v in points),
                    sparkline([v for _, v in points]),
                ]
                for name, points in d.series.items()
            ],
        )
        self._show_notes(d)
        self._show_data(d)
        commit = Text()
        for k in ("commit", "tree", "patch_id", "parent", "branch", "author", "source", "sweep_id", "trial_id"):
            if getattr(run, k):
                commit.append(f"{k:<10}", style="dim")
                commit.append(display(getattr(run, k)) + "\n")
        commit.append("\n")
        commit.append(display(run.message or "", multiline=True))
        self.query_one("#commit", Static).update(commit)

    def _show_metrics(self) -> None:
        d = self.detail
        if d is None:
            return
        columns = ["metric", "last", "min", "min step", "max", "max step", "steps", "direction", "file"]
        if self.at_step is not None:
            columns.insert(1, f"@ step {self.at_step}")
        if self.group is not None:
            columns.insert(3 if self.at_step is not None else 2, "group: mean ± sd (n)")  # beside `last`
        rows = []
        for m in d.metrics:
            direction = self.mlci.config.direction(m.name)
            row: list[Any] = [
                m.name,
                m.value,
                m.low,
                m.low_step,
                m.high,
                m.high_step,
                m.steps or None,
                direction or "",
                m.file,
            ]
            if self.group is not None:
                found = _summary(self.group, m)
                row.insert(2, Text(found.text(), style="bold") if found else "")
            if self.at_step is not None:
                row.insert(1, d.value_at(m.name, self.at_step))
            rows.append(row)
        _table(self.query_one("#metrics", DataTable), columns, rows)

    def _show_notes(self, d: RunDetail) -> None:
        text = Text()
        text.append("tags: ", style="bold")
        text.append(" ".join(display(t) for t in d.tags) or "none")
        text.append("   (t adds a tag, T removes one)\n\n", style="dim")
        if not d.notes:
            text.append("no notes yet: n adds one, written to the ledger for everyone who pulls it", style="dim")
        for note_id, when, body in d.notes:
            text.append(f"● {cells.when(when)}", style="bold")
            text.append(f"  {note_id[:8]}\n", style="dim")
            text.append(display(body, multiline=True) + "\n\n")
        self.query_one("#notes", Static).update(text)

    def _show_data(self, d: RunDetail) -> None:
        text = Text()
        text.append("datasets", style="bold")
        text.append("  path, content hash, and the latest validation of that content\n", style="dim")
        by_hash: dict[str, list[Validation]] = {}
        for v in d.validations:
            by_hash.setdefault(digest_of(v.content_hash), []).append(v)
        if not d.datasets:
            text.append("  none recorded for this run (datasets are tracked with mlci data add)\n", style="dim")
        for path, digest in sorted(d.datasets.items()):
            digest_text = digest if isinstance(digest, str) else json.dumps(digest)
            text.append(f"  {display(path)}  ")
            text.append(display(_short_hash(digest_text)) + "\n", style="dim")
            found = by_hash.pop(digest_of(digest_text), []) if isinstance(digest, str) else []
            if not found:
                text.append("      not validated\n", style="dim")
            else:
                _validation_lines(text, found[0], older=len(found) - 1)
        others = [v for vs in by_hash.values() for v in vs]
        if others:
            text.append("\nother validations at this commit\n", style="bold")
            for v in others:
                text.append(f"  {display(v.path or v.dataset)}  ")
                text.append(display(_short_hash(v.content_hash)) + "\n", style="dim")
                _validation_lines(text, v)
        text.append("\ndeps (what produced the metrics)\n", style="bold")
        for path, digest in sorted(d.deps.items()) or [("—", "")]:
            text.append(f"  {display(path)}  ")
            text.append(display(digest if isinstance(digest, str) else json.dumps(digest)) + "\n", style="dim")
        if d.warnings:
            text.append("\nwarnings at capture\n", style="bold")
            for w in d.warnings:
                text.append("  " + display(w) + "\n", style="yellow")
        self.data_text = text
        self.query_one("#data", Static).update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "at-step":
            return
        event.stop()
        value = event.value.strip()
        self.at_step = int(value) if value.lstrip("-").isdigit() else None
        self._show_metrics()

    def _holds_baseline(self, group: Group) -> bool:
        shown = self.mlci.runs_screen.result
        base = shown.baseline.run_id if shown is not None and shown.baseline is not None else None
        return base is not None and any(r.run_id == base for r in group.runs)

    # ------------------------------------------------------------------ actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_mark(self) -> None:
        marked = self.mlci.toggle_mark(self.run_id)
        self.notify(f"{'Marked' if marked else 'Unmarked'} {self.run_id[:8]}", markup=False)
        if self.detail:
            self._show(self.detail)

    def action_baseline(self) -> None:
        self.mlci.runs_screen.pin_baseline(self.run_id)

    def action_plot(self) -> None:
        self.mlci.plot([self.run_id])

    def action_data_diff(self) -> None:
        """The Data tab gains what changed in each dataset against the baseline's version."""
        shown = self.mlci.runs_screen.result
        base = shown.baseline.run_id if shown is not None and shown.baseline is not None else None
        if base is None or base == self.run_id or self.detail is None:
            self.notify("No other baseline to diff against (pin one with b)", severity="warning", markup=False)
            return
        self.query_one(TabbedContent).active = "tab-data"
        self.notify(f"Diffing the datasets against {base[:8]}…", markup=False)
        self._data_diff(self.generation, base, dict(self.detail.datasets))

    @work(thread=True, group="data-diff", exclusive=True, exit_on_error=False)
    def _data_diff(self, generation: int, base: str, datasets: dict[str, Any]) -> None:
        from mlci_tui.errors import MlciError
        from mlci_tui.ledger.held import open_cache
        from mlci_tui.validate import rowdiff
        from mlci_tui.validate.spec import load_specs

        repo = self.mlci.repo
        with open_cache(repo) as con:
            commits = dict(
                con.execute(
                    'SELECT run_id, "commit" FROM runs WHERE list_contains(?, run_id)', [[base, self.run_id]]
                ).fetchall()
            )
        diffs: list[tuple[str, list[str]]] = []
        try:
            specs = {s.path: s for s in load_specs(self.mlci.config.data.get("datasets")).values()}
        except MlciError as exc:
            specs, diffs = {}, [("datasets", [f"cannot read the datasets section: {exc}"])]
        old, new = commits.get(base), commits.get(self.run_id)
        for path in sorted(datasets):
            spec = specs.get(path)
            if spec is None:
                diffs.append((path, ["not declared under datasets: in mlci.yaml (no schema, no key)"]))
            elif not old or not new:
                diffs.append((path, ["a run without a commit: its version cannot be read"]))
            else:
                try:
                    diffs.append((path, rowdiff.summary_lines(rowdiff.diff_versions(repo, spec, old, new))))
                except MlciError as exc:
                    diffs.append((path, [f"not diffed: {exc}"]))
        self.post_message(DataDiffLoaded(generation, base, diffs))

    def on_data_diff_loaded(self, message: DataDiffLoaded) -> None:
        message.stop()
        if message.generation != self.generation or self.detail is None:
            return
        self._show_data(self.detail)
        text = self.data_text
        text.append(f"\nagainst the baseline {message.baseline[:8]}\n", style="bold")
        for path, lines in message.diffs or [("—", ["this run records no datasets"])]:
            text.append(f"  {display(path)}\n")
            for line in lines:
                text.append(f"      {display(line)}\n", style="dim" if line.startswith("not ") else "")
        self.query_one("#data", Static).update(text)

    def action_add_note(self) -> None:
        from mlci_tui.tui.screens.modals import PromptScreen

        def done(text: str | None) -> None:
            if text is not None:
                self._write("note", text)

        self.app.push_screen(PromptScreen(f"Note on run {self.run_id[:8]}", multiline=True), done)

    def action_edit_note(self) -> None:
        from mlci_tui.tui.screens.modals import PromptScreen

        if not self.detail or not self.detail.notes:
            self.notify("No note to edit: n adds one", severity="warning", markup=False)
            return
        note_id, _when, body = self.detail.notes[-1]

        def done(text: str | None) -> None:
            if text is not None and text != body:
                self._write("note", text, replaces=note_id)

        self.app.push_screen(PromptScreen(f"Edit note {note_id[:8]}", initial=body, multiline=True), done)

    def action_add_tag(self) -> None:
        from mlci_tui.tui.screens.modals import PromptScreen

        def done(name: str | None) -> None:
            if name is not None:
                self._write("tag", name.strip())

        self.app.push_screen(PromptScreen(f"Tag run {self.run_id[:8]}", placeholder="e.g. best, candidate"), done)

    def action_remove_tag(self) -> None:
        from mlci_tui.tui.screens.modals import PromptScreen

        tags = self.detail.tags if self.detail else []
        if not tags:
            self.notify("This run has no tags", severity="warning", markup=False)
            return

        def done(name: str | None) -> None:
            if name is not None:
                self._write("untag", name.strip())

        self.app.push_screen(PromptScreen("Remove tag", initial=tags[-1]), done)

    @work(thread=True, group="write", exit_on_error=False)
    def _write(self, kind: str, text: str, replaces: str | None = None) -> None:
        repo = self.mlci.repo
        try:
            if kind == "note":
                add_note(repo, self.run_id, text, replaces=replaces)
                done = "note edited" if replaces else "note added"
            else:
                add_tag(repo, self.run_id, text, remove=kind == "untag")
                done = f"tag {display(text)} {'removed' if kind == 'untag' else 'added'}"
        except MlciError as exc:
            self.post_message(WriteFailed(0, display(str(exc))))
            return
        self.post_message(NoteOrTagWritten(0, f"{done} ({self.run_id[:8]})"))


def _summary(group: Group, metric: MetricRow) -> Spread | None:
    """A metric's `mean ± sd (n)` over the group, by its plain name (its `file:name` where that is ambiguous)."""
    try:
        found = group.summary(metric.name)
    except InputError:
        found = group.summary(f"{metric.file}:{metric.name}")
    return Spread(*found) if found else None


STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold red", "unavailable": "red"}
STATUS_MARK = {"pass": "✓", "warn": "!", "fail": "✗", "error": "✗", "unavailable": "?"}


def _short_hash(digest: str) -> str:
    """`md5:0123…` and bare digests alike, to 12 characters of the digest."""
    kind, sep, rest = digest.partition(":")
    return f"{kind}:{rest[:12]}" if sep and len(kind) <= 8 else digest[:16]


def _validation_lines(text: Text, v: Validation, *, older: int = 0) -> None:
    """One validation: its status and where it ran, then each check that did not pass."""
    status = v.status or "?"
    text.append(f"      {STATUS_MARK.get(status, '·')} {display(status)}", style=STATUS_STYLE.get(status, ""))
    details = [display(v.dataset)] if v.dataset else []
    if v.rows is not None:
        details.append(f"{v.rows:,} rows")
    where = {"index": " in the index (staged)", "working tree": " in the working tree"}.get(v.rev)
    if where is None:
        where = f" at {display(v.rev[:12])}" if v.rev else ""
    details.append(f"validated {cells.when(v.time)}{where}")
    if older:
        details.append(f"{older} earlier validation{'s' if older > 1 else ''} of this content")
    text.append("  " + " · ".join(details) + "\n", style="dim")
    if v.error:
        text.append(f"        {display(v.error)}\n", style="red")
    for c in v.problems:
        where = (
            f"{display(str(c.get('check', '')))}({display(str(c['column']))})"
            if c.get("column")
            else display(str(c.get("check", "")))
        )
        failures = c.get("failures") or 0
        line = f"        {'✗' if c.get('status') == 'fail' else '!'} {where}"
        if failures:
            line += f": {failures:,} rows"
        if c.get("message"):
            line += f" — {display(str(c['message']))}"
        text.append(line + "\n", style="red" if c.get("status") == "fail" else "yellow")
    for w in v.warnings:
        text.append(f"        ! {display(w)}\n", style="yellow")
