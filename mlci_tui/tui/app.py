"""`mlci tui`: the Textual app over the ledger of the current repository.

The app owns what every screen shares (the repository, its config, the marked runs) and
one worker that watches the ledger ref; screens own their widgets and query in workers
that post messages back (see `messages.py`). The app holds one read-only connection to the
query cache while it runs (`hold_cache`); workers query through cursors of it.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import get_current_worker

from mlci_tui import config as config_mod
from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import hold_cache, release_cache
from mlci_tui.ledger.query.runs_view import ViewResult
from mlci_tui.ledger.tip_watch import TipWatcher
from mlci_tui.tui import actions
from mlci_tui.tui.messages import LedgerChanged, LedgerConflicts
from mlci_tui.tui.screens.runs import RunsScreen
from mlci_tui.tui.theme import MLCI_THEME

POLL_SECONDS = 1.0


class MlciApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses (benchmarks) find it too
    TITLE = "mlci"
    # not priority bindings: a `q` typed in the filter bar or a note is text, not quit
    BINDINGS = [Binding(a.keys, a.action, a.description) for a in actions.actions_for("app")]

    def __init__(
        self,
        repo: Repo,
        config: config_mod.Config,
        *,
        poll_seconds: float = POLL_SECONDS,
        watch: bool = True,
        timings: bool = True,
    ) -> None:
        super().__init__()
        self.repo = repo
        self.config = config
        self.poll_seconds = poll_seconds
        self.watch_ledger = watch
        self.timings = timings  # query times in the status bar (off for stable screenshots)
        self.marked: set[str] = set()
        self.conflicts = 0  # records with an unresolved second body (shown in the status bar)
        self.first_paint: float | None = None  # time.perf_counter() when the first view was painted
        self.last_paint = 0.0
        self.painted = threading.Event()
        self._stop = threading.Event()
        self._watching = False
        self.query_cache = hold_cache(repo)  # opened by the first query, closed on unmount
        self.register_theme(MLCI_THEME)
        self.theme = MLCI_THEME.name

    def get_default_screen(self) -> Screen[Any]:
        return RunsScreen()

    @property
    def runs_screen(self) -> RunsScreen:
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                return screen
        raise LookupError("no runs screen")

    # ------------------------------------------------------------------ first paint, live refresh
    def view_painted(self, result: ViewResult) -> None:
        self.call_after_refresh(self._painted)
        if self.watch_ledger and not self._watching:
            self._watching = True
            self._watch(result.info.tip)

    def _painted(self) -> None:
        """After the frame that shows a new view (benchmarks read these times)."""
        self.last_paint = time.perf_counter()
        if self.first_paint is None:
            self.first_paint = self.last_paint
            self._first_paint_done()

    def _first_paint_done(self) -> None:
        self.painted.set()

    @work(thread=True, group="watch", exit_on_error=False)
    def _watch(self, tip: str) -> None:
        """Poll the ledger ref (a stat, and `git rev-parse` only when a ref file changed)."""
        watcher = TipWatcher(self.repo)
        known = watcher.poll() or tip
        if known != tip:
            self.post_message(LedgerChanged(known))
        self._count_conflicts(known)
        worker = get_current_worker()
        while not worker.is_cancelled and not self._stop.is_set():
            deadline = time.monotonic() + self.poll_seconds
            while time.monotonic() < deadline:
                if worker.is_cancelled or self._stop.wait(min(0.1, self.poll_seconds)):
                    return
            moved = watcher.poll()
            if moved is not None and moved != known:
                known = moved
                self.post_message(LedgerChanged(moved))
                self._count_conflicts(moved)

    def _count_conflicts(self, tip: str) -> None:
        """One `git ls-tree` of the ledger's `conflicts/` (from the watch worker's thread)."""
        from mlci_tui.ledger.conflicts import open_conflicts
        from mlci_tui.ledger.store import LedgerStore

        found = open_conflicts(LedgerStore(self.repo), tip)
        self.post_message(LedgerConflicts(len(found), found[0].id if found else None))

    def on_ledger_conflicts(self, message: LedgerConflicts) -> None:
        if message.count > self.conflicts and message.first:
            self.notify(
                f"{message.count} ledger record(s) have a second body from a merge, e.g. {message.first[:12]}; "
                f"the ledger kept this clone's. Inspect and resolve: mlci ledger resolve --list",
                title="Ledger conflict",
                severity="warning",
                timeout=15,
                markup=False,
            )
        self.conflicts = message.count
        self.runs_screen.update_status()

    def on_ledger_changed(self, message: LedgerChanged) -> None:
        self.query_cache.moved(message.tip)  # the next query reopens the cache at the new tip
        for screen in self.screen_stack:
            handler = getattr(screen, "ledger_moved", None)
            if handler is not None:
                handler(message.tip)

    def on_unmount(self) -> None:
        self._stop.set()
        release_cache(self.query_cache)

    # ------------------------------------------------------------------ navigation
    def open_run(self, run_id: str) -> None:
        from mlci_tui.tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    def compare(self, run_ids: list[str]) -> None:
        from mlci_tui.tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(run_ids))

    def plot(self, run_ids: list[str]) -> None:
        from mlci_tui.tui.screens.plot import PlotScreen

        runs = self.runs_screen
        self.push_screen(PlotScreen(run_ids, runs.info, runs.spec.filter_text))

    def action_sweeps(self) -> None:
        from mlci_tui.tui.screens.sweeps import SweepsScreen

        if not isinstance(self.screen, SweepsScreen):
            self.push_screen(SweepsScreen())

    def action_help(self) -> None:
        from mlci_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(getattr(self.screen, "SCOPE", "runs")))

    def toggle_mark(self, run_id: str) -> bool:
        if run_id in self.marked:
            self.marked.discard(run_id)
        else:
            self.marked.add(run_id)
        self.runs_screen.marks_changed()
        return run_id in self.marked

    # ------------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        scope = getattr(screen, "SCOPE", None)
        for action in actions.ACTIONS:
            if action.scope == scope:
                yield SystemCommand(
                    f"{action.description} ({action.key_display})",
                    action.help,
                    partial(screen.run_action, action.action),
                )
            elif action.scope == "app" and action.action not in ("quit", "command_palette"):
                yield SystemCommand(
                    f"{action.description} ({action.key_display})", action.help, partial(self.run_action, action.action)
                )


def main(args: argparse.Namespace | None = None) -> int:
    repo = Repo.find()
    cfg = config_mod.load(repo.root)
    MlciApp(repo, cfg).run()
    return 0
