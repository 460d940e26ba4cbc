"""What a coordinator does when a trial fails or its worker is lost: retry within the
sweep's budget (`retries`), else record the failure. Shared by the local and Dask executors.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep import events, queue, strategies
from mlci_tui.sweep.events import Sweep, Trial
from mlci_tui.sweep.runner import remove_worktree
from mlci_tui.sweep.spec import SweepSpec


def can_retry(sweep: Sweep, trial: Trial) -> bool:
    return trial.tries <= int(sweep.spec.get("retries", 1))


def after_failure(sweep: Sweep, trial: Trial) -> list[dict[str, Any]]:
    """A failed trial with budget left is queued again (the failure stays in the ledger)."""
    if trial.state == "failed" and can_retry(sweep, trial):
        retry = f"retry {trial.tries} of {sweep.spec.get('retries', 1)} after: {trial.reason or 'failure'}"
        return [events.trial_event(sweep.sweep_id, trial.trial_id, "requeued", reason=retry)]
    return []


def after_loss(sweep: Sweep, trial: Trial, why: str) -> list[dict[str, Any]]:
    """A running trial whose worker vanished: queued again within budget, else failed."""
    if trial.state != "running":
        return []
    if can_retry(sweep, trial):
        return [events.trial_event(sweep.sweep_id, trial.trial_id, "requeued", reason=f"lost: {why}")]
    return [
        events.trial_event(
            sweep.sweep_id, trial.trial_id, "failed", reason=f"lost: {why}; no retries left", attempt=trial.attempts
        )
    ]


def cleanup_lease(repo: Repo, lease: queue.Lease) -> None:
    """Stop what a lost worker left running (its command's process group) and remove its worktree."""
    child = lease.data.get("child_pid")
    if isinstance(child, int) and queue.pid_alive(child):
        try:
            os.killpg(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    worktree = lease.data.get("worktree")
    if isinstance(worktree, str) and os.path.isdir(worktree):
        remove_worktree(repo, Path(worktree))
    queue.release(lease.path)


def tpe_top_up(repo: Repo, sweep: Sweep, slots: int) -> int:
    """Queue new tpe trials so that `slots` are queued or running; returns how many were queued."""
    spec = SweepSpec.from_json(sweep.spec)
    if spec.method != "tpe":
        return 0
    trials = sweep.ordered()
    if any(t.state == "cancelled" for t in trials):
        return 0
    active = sum(1 for t in trials if t.state in ("queued", "running"))
    room = min(slots - active, (spec.max_trials or 0) - len(trials))
    if room <= 0:
        return 0
    finished = [t for t in trials if t.state in ("done", "failed")]
    new = strategies.tpe_suggest(
        spec, sweep.seed, [t.params for t in finished], [t.value if t.state == "done" else None for t in finished], room
    )
    first = max((t.number for t in trials), default=-1) + 1
    recs = queued_events(sweep.sweep_id, new, first)
    LedgerStore(repo).append(recs)
    return len(recs)


def queued_events(sweep_id: str, trials: list[dict[str, Any]], first: int = 0) -> list[dict[str, Any]]:
    out = []
    for n, params in enumerate(trials, start=first):
        tid = events.trial_id(sweep_id, n)
        out.append(events.trial_event(sweep_id, tid, "queued", number=n, params=params))
    return out
