"""Sweep and trial ledger events, and the fold that turns them into each trial's state.

A trial's transitions are events: queued, started, done, failed, requeued, cancelled.
Its state is the last transition (a `started` means running, a `requeued` means queued
again), except that `done` is final: a trial re-run after a lost worker is recorded done
once, because the done event and the trial's run have ids derived from the trial id.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from mlci_tui.ledger import records
from mlci_tui.ledger.events import TRIAL_RANK, TRIAL_STATE_OF

TRANSITIONS = ("queued", "started", "done", "failed", "requeued", "cancelled", "pruned")
STATES = ("queued", "running", "done", "failed", "cancelled", "pruned")
STATE_OF = TRIAL_STATE_OF  # the rule is the ledger's: the `trials` view folds the same way
_RANK = TRIAL_RANK
TAIL_BYTES = 4096


def trial_id(sweep_id: str, number: int) -> str:
    return records.derived_id("trial", sweep_id, str(number))


def done_event_id(tid: str) -> str:
    return records.derived_id("trial-done", tid)


def trial_run_id(tid: str) -> str:
    return records.derived_id("trial-run", tid)


def worker_name(extra: str | int | None = None) -> str:
    host = socket.gethostname()
    return f"{host}:{extra}" if extra is not None else host


def sweep_event(
    name: str,
    spec: dict[str, Any],
    *,
    base: str,
    base_kind: str,
    seed: int,
    snapshot_ref: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    body = {
        "name": name,
        "spec": spec,
        "base": base,
        "base_kind": base_kind,
        "seed": seed,
        "snapshot_ref": snapshot_ref,
    }
    return records.envelope("sweep", body, event_id=event_id)


def trial_event(sweep_id: str, tid: str, state: str, **fields: Any) -> dict[str, Any]:
    assert state in TRANSITIONS, state
    body = {"sweep_id": sweep_id, "trial_id": tid, "state": state, "target": sweep_id}
    body.update({k: v for k, v in fields.items() if v is not None})
    # done and queued happen once per trial: derived ids make a duplicate the same record
    event_id = {"done": done_event_id(tid), "queued": records.derived_id("trial-queued", tid)}.get(state)
    return records.envelope("trial", body, event_id=event_id)


def started_event(sweep_id: str, tid: str, *, attempt: int, worker: str, **fields: Any) -> dict[str, Any]:
    """`started`, with the host and pid of the process that started it: a later coordinator on this
    host sees that process gone and requeues the trial (policy.stranded)."""
    return trial_event(
        sweep_id, tid, "started", attempt=attempt, worker=worker, host=socket.gethostname(), pid=os.getpid(), **fields
    )


def tail(text: bytes | str, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of a log, cut on a character boundary."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return data[-limit:].decode("utf-8", "ignore")


@dataclass
class Trial:
    sweep_id: str
    trial_id: str
    number: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    state: str = "queued"
    attempts: int = 0  # started events, ever
    tries: int = 0  # started events since the last manual retry: the retry budget spent
    requeues: int = 0
    run_id: str | None = None
    value: float | None = None
    exit_code: int | None = None
    stderr_tail: str | None = None
    log: dict[str, Any] | None = None  # the full log in the data cache/remote: {hash, size}
    checkpoint: dict[str, Any] | None = None  # a failed attempt's checkpoints there: {hash, size, nfiles}
    reason: str | None = None
    worker: str | None = None
    host: str | None = None  # where the last attempt was started, and the pid that started it
    pid: int | None = None
    step: int | None = None  # the last step of a pruned trial
    started: str | None = None
    first_started: str | None = None
    ended: str | None = None
    queued: str | None = None


@dataclass
class Sweep:
    sweep_id: str
    name: str
    spec: dict[str, Any]
    base: str
    base_kind: str
    seed: int
    created: str
    snapshot_ref: str | None = None
    trials: dict[str, Trial] = field(default_factory=dict)

    def ordered(self) -> list[Trial]:
        return sorted(self.trials.values(), key=lambda t: t.number)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for t in self.trials.values():
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def best(self) -> Trial | None:
        scored = [t for t in self.trials.values() if t.state == "done" and t.value is not None]
        if not scored:
            return None
        sign = -1.0 if self.spec.get("direction", "max") == "max" else 1.0
        return min(scored, key=lambda t: (sign * float(t.value or 0.0), t.number))


def fold(events: list[dict[str, Any]]) -> dict[str, Sweep]:
    """Sweeps by id, each with its trials' current state, from sweep and trial events."""
    sweeps: dict[str, Sweep] = {}
    for ev in events:
        if ev.get("type") == "sweep" and isinstance(ev.get("spec"), dict):
            sweeps[ev["id"]] = Sweep(
                sweep_id=ev["id"],
                name=str(ev.get("name") or ev["id"][:8]),
                spec=ev["spec"],
                base=str(ev.get("base") or ""),
                base_kind=str(ev.get("base_kind") or "commit"),
                seed=int(ev.get("seed") or 0),
                created=str(ev.get("time") or ""),
                snapshot_ref=ev.get("snapshot_ref"),
            )
    trial_events = [e for e in events if e.get("type") == "trial" and e.get("state") in _RANK]
    trial_events.sort(key=lambda e: (str(e.get("time") or ""), _RANK[e["state"]]))
    for ev in trial_events:
        sweep = sweeps.get(str(ev.get("sweep_id")))
        tid = ev.get("trial_id")
        if sweep is None or not isinstance(tid, str):
            continue
        trial = sweep.trials.get(tid)
        if trial is None:
            trial = sweep.trials[tid] = Trial(sweep.sweep_id, tid)
        apply(trial, ev)
    return sweeps


def apply(trial: Trial, ev: dict[str, Any]) -> None:
    """One transition applied to a trial (events must come in time order)."""
    state = ev["state"]
    if state == "queued":
        trial.number = int(ev.get("number") or 0)
        trial.params = dict(ev.get("params") or {})
        trial.queued = ev.get("time")
    if trial.state == "done":
        return  # done is final; a late duplicate run changes nothing
    if state == "started":
        trial.attempts += 1
        trial.tries += 1
        trial.worker = ev.get("worker")
        trial.host = ev.get("host")
        trial.pid = ev.get("pid") if isinstance(ev.get("pid"), int) else None
        trial.started = ev.get("time")
        trial.first_started = trial.first_started or trial.started
        trial.ended = None
    elif state == "requeued":
        trial.requeues += 1
        trial.reason = ev.get("reason")
        trial.checkpoint = _checkpoint(ev) or trial.checkpoint
        if ev.get("manual"):
            trial.tries = 0
        elif ev.get("interrupted"):  # Ctrl-C is not the trial's failure: the attempt does not count
            trial.tries = max(0, trial.tries - 1)
    elif state in ("done", "failed", "cancelled", "pruned"):
        trial.ended = ev.get("time")
        trial.reason = ev.get("reason")
        log = ev.get("log")
        if isinstance(log, dict) and isinstance(log.get("hash"), str) and isinstance(log.get("size"), int):
            trial.log = log
        if state == "done":
            trial.run_id = ev.get("run_id")
            value = ev.get("value")
            trial.value = float(value) if isinstance(value, (int, float)) else None
        if state == "failed":
            trial.exit_code = ev.get("exit_code")
            trial.stderr_tail = ev.get("stderr_tail")
            trial.checkpoint = _checkpoint(ev) or trial.checkpoint
        if state == "pruned":
            trial.step = ev.get("step")
    trial.state = STATE_OF[state]


def _checkpoint(ev: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoints an attempt uploaded, as its `failed` (or after a loss, `requeued`) event links them."""
    saved = ev.get("checkpoint")
    return saved if isinstance(saved, dict) and {"hash", "size", "nfiles"} <= saved.keys() else None
