"""What a coordinator does when a trial fails, its worker is lost, the user presses Ctrl-C or
the sweep's budget is spent: retry within `retries`, else record the failure; requeue what an
interrupt or a vanished coordinator left running; stop dispatching at `budget`. Shared by the
local and Dask executors.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import datetime
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


def after_loss(sweep: Sweep, trial: Trial, why: str, checkpoint: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A running trial whose worker vanished: queued again within budget, else failed; with the
    `checkpoint` the lost attempt uploaded while it ran (`lost_checkpoint`), linked as a failure's."""
    if trial.state != "running":
        return []
    if can_retry(sweep, trial):
        return [
            events.trial_event(sweep.sweep_id, trial.trial_id, "requeued", reason=f"lost: {why}", checkpoint=checkpoint)
        ]
    return [
        events.trial_event(
            sweep.sweep_id,
            trial.trial_id,
            "failed",
            reason=f"lost: {why}; no retries left",
            attempt=trial.attempts,
            checkpoint=checkpoint,
        )
    ]


def lost_checkpoint(repo: Repo, trial: Trial) -> dict[str, Any] | None:
    """The newest checkpoint a lost attempt uploaded while it ran (named on the data remote,
    sweep/checkpoint_watch.py), so the ledger says what its retry resumes from; None without one."""
    from mlci_tui.sweep.trial_files import latest_checkpoint

    return latest_checkpoint(repo, trial.trial_id)


def interrupted(sweep: Sweep, tids: list[str]) -> list[dict[str, Any]]:
    """In-flight trials stopped by Ctrl-C: queued again, the attempt not counted against `retries`."""
    out = []
    for tid in tids:
        trial = sweep.trials.get(tid)
        if trial is not None and trial.state == "running":
            out.append(
                events.trial_event(sweep.sweep_id, tid, "requeued", reason="interrupted (Ctrl-C)", interrupted=True)
            )
    return out


def stranded(sweep: Sweep, held: set[str], lease_seconds: float) -> list[tuple[Trial, str]]:
    """Trials recorded running that no lease here holds and that can be seen to be lost, with why.

    Lost: started on this host by a process that is gone (a coordinator killed or interrupted
    before it could requeue them), or started anywhere longer ago than the trial's `timeout`
    plus the lease time. A trial started on another machine without a timeout cannot be
    judged from here: `stalled` says so.
    """
    out = []
    timeout = sweep.spec.get("timeout")
    for trial in sweep.ordered():
        if trial.state != "running" or trial.trial_id in held:
            continue
        if trial.host == socket.gethostname() and trial.pid is not None and not queue.pid_alive(trial.pid):
            out.append((trial, f"started by pid {trial.pid} on this host, which is gone"))
        elif timeout and age(trial.started) > float(timeout) + lease_seconds:
            out.append(
                (trial, f"no result {float(timeout) + lease_seconds:.0f} s after its start (timeout {timeout} s)")
            )
    return out


def stalled(sweep: Sweep, held: set[str]) -> dict[str, str]:
    """Why each trial recorded running that no lease here holds is stuck: what `sweep status` shows."""
    out: dict[str, str] = {}
    for trial in sweep.ordered():
        if trial.state == "running" and trial.trial_id not in held:
            where = trial.worker or trial.host or "an unknown worker"
            out[trial.trial_id] = (
                f"running on {where} since {trial.started}: no lease on this machine; if that worker is gone, "
                f"`mlci sweep start {sweep.name}` requeues it once its timeout passes, or `mlci sweep retry "
                f"{sweep.name} --running` now"
            )
    return out


def age(stamp: str | None) -> float:
    """Seconds since an event time; 0 for none."""
    return time.time() - epoch(stamp) if stamp else 0.0


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def budget_spent(sweep: Sweep) -> str | None:
    """Which limit of `budget:` (max_trials, max_time, max_cost) is reached, or None."""
    budget = sweep.spec.get("budget") or {}
    trials = sweep.ordered()
    started = [t for t in trials if t.attempts]
    limit = budget.get("max_trials")
    if limit is not None and len(started) >= int(limit):
        return f"budget max_trials {limit} reached"
    firsts = [t.first_started for t in started if t.first_started]
    limit = budget.get("max_time")
    if limit is not None and firsts and age(min(firsts)) >= float(limit):
        return f"budget max_time {limit} s reached"
    limit = budget.get("max_cost")
    price = sweep.spec.get("price_per_hour")
    if limit is not None and price is not None:
        spent = trial_hours(started) * float(price)
        if spent >= float(limit):
            return f"budget max_cost {limit} reached ({spent:.4g} at {price} per trial-hour)"
    return None


def trial_hours(trials: list[Trial]) -> float:
    """Hours spent by the trials' last attempts (a running one: until now)."""
    now = time.time()
    total = 0.0
    for t in trials:
        if t.started:
            total += max(0.0, (epoch(t.ended) if t.ended else now) - epoch(t.started))
    return total / 3600.0


def after_budget(sweep: Sweep, why: str) -> list[dict[str, Any]]:
    """The budget is spent: every queued trial is cancelled, saying which limit; running ones finish."""
    return [
        events.trial_event(sweep.sweep_id, t.trial_id, "cancelled", reason=why, budget=True)
        for t in sweep.ordered()
        if t.state == "queued"
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
    if any(t.state == "cancelled" for t in trials) or budget_spent(sweep):
        return 0
    active = sum(1 for t in trials if t.state in ("queued", "running"))
    room = min(slots - active, (spec.max_trials or 0) - len(trials))
    if room <= 0:
        return 0
    finished = [t for t in trials if t.state in ("done", "failed", "pruned")]
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
