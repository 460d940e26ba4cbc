"""The local executor: a pool of worker processes on this machine, fed from the ledger queue.

The coordinator claims a lease per trial, records `started`, and starts one worker process
per trial (`mlci_tui.sweep.worker`), at most `jobs` at a time. A worker that dies (even by
SIGKILL) leaves its lease behind with a dead pid, or stops its heartbeat: the lease then
expires and the trial is queued again within the retry budget. The coordinator keeps no
state the ledger does not hold; a second `sweep start` can join or take over at any time.
"""

from __future__ import annotations

import queue as queue_mod
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep import events, policy, queue
from mlci_tui.sweep.events import Sweep
from mlci_tui.sweep.runner import TrialJob

POLL = 0.05  # the Dask executor polls its futures
IDLE_WAIT = 0.25  # the local executor wakes at once when a worker finishes; else this often


class Coordinator:
    """The loop shared by the executors: leases, losses, retries, tpe; `launch` is the engine's part."""

    def __init__(
        self, repo: Repo, sweep_ref: str, jobs: int, say: Callable[[str], None], state: queue.QueueState | None = None
    ) -> None:
        self.repo = repo
        self.state = state or queue.QueueState(repo)
        self.sweep_id = self.state.find(sweep_ref).sweep_id
        self.jobs = max(1, jobs)
        self.say = say
        self.store = LedgerStore(repo)
        self.lease_seconds = queue.lease_seconds()

    @property
    def sweep(self) -> Sweep:
        return self.state.sweeps[self.sweep_id]

    def housekeeping(self, active: set[str]) -> None:
        """Expire dead leases (not those of trials this coordinator is still running), retry failures, tpe."""
        self.state.refresh()
        sweep = self.sweep
        batch: list[dict[str, Any]] = []
        for lease in queue.leases(self.repo, self.sweep_id):
            if lease.trial_id in active:
                continue
            why = queue.expired(lease, self.lease_seconds)
            if why is None:
                continue
            trial = sweep.trials.get(lease.trial_id)
            if trial is not None:
                lost = policy.after_loss(sweep, trial, why)
                if lost:
                    self.say(f"trial {sweep.name}-{trial.number}: {why}; " + str(lost[0]["state"]))
                batch.extend(lost)
            policy.cleanup_lease(self.repo, lease)
        for trial in sweep.ordered():
            retry = policy.after_failure(sweep, trial)
            if retry:
                self.say(f"trial {sweep.name}-{trial.number} failed ({trial.reason}); queued again")
            batch.extend(retry)
        if batch:
            self.store.append(batch)
            self.state.refresh()
        if policy.tpe_top_up(self.repo, self.sweep, self.jobs):
            self.state.refresh()

    def pending(self) -> list[events.Trial]:
        held = {lease.trial_id for lease in queue.leases(self.repo, self.sweep_id)}
        return [t for t in self.sweep.ordered() if t.state == "queued" and t.trial_id not in held]

    def claim(self, room: int, worker: str) -> list[tuple[TrialJob, Path]]:
        """Lease up to `room` queued trials and record them started (one ledger commit)."""
        claimed: list[tuple[TrialJob, Path]] = []
        for trial in self.pending():
            if len(claimed) >= room:
                break
            job = TrialJob.of(self.sweep, trial)
            lease = queue.claim(self.repo, self.sweep_id, trial.trial_id, {"job": job.to_json()})
            if lease is not None:
                claimed.append((job, lease))
        if claimed:
            self.store.append(
                [
                    events.trial_event(job.sweep_id, job.trial_id, "started", attempt=job.attempt, worker=worker)
                    for job, _ in claimed
                ]
            )
        return claimed

    def finished(self, active: set[str]) -> bool:
        if active:
            return False
        if any(t.state == "queued" for t in self.sweep.trials.values()):
            return False
        # leases held by another coordinator on this machine: wait for them too
        return not queue.leases(self.repo, self.sweep_id)


class PoolWorker:
    """One long-lived worker process, fed one lease at a time on its stdin."""

    def __init__(self, repo: Repo, wake: threading.Event) -> None:
        self.wake = wake
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlci_tui.sweep.worker", "--serve", str(repo.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.trial: str | None = None
        self.finished: queue_mod.SimpleQueue[str] = queue_mod.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.finished.put(line.split()[0] if line.strip() else "")
            self.wake.set()
        self.wake.set()  # end of output: the worker exited (or was killed)

    def assign(self, trial_id: str, lease: Path) -> None:
        assert self.proc.stdin is not None
        self.trial = trial_id
        self.proc.stdin.write(f"{lease}\n")
        self.proc.stdin.flush()

    def poll(self) -> bool:
        """True while the process lives; frees it when its trial is recorded."""
        while not self.finished.empty():
            self.finished.get()
            self.trial = None
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self.proc.wait()


def run(
    repo: Repo, sweep_ref: str, jobs: int, say: Callable[[str], None], state: queue.QueueState | None = None
) -> Sweep:
    """Run every queued trial of the sweep with `jobs` local workers; returns the final state."""
    coord = Coordinator(repo, sweep_ref, jobs, say, state)
    (queue.queue_dir(repo, coord.sweep_id) / "cancel").unlink(missing_ok=True)
    pool: list[PoolWorker] = []
    wake = threading.Event()  # set by a worker that finished a trial or died: no polling delay
    worker = events.worker_name("local")
    try:
        while True:
            for member in list(pool):
                if not member.poll():  # died (killed): its lease expires and the trial is queued again
                    pool.remove(member)
                    member.close()
            active = {m.trial for m in pool if m.trial}
            coord.housekeeping(active)
            idle = [m for m in pool if m.trial is None]
            room = coord.jobs - len(active)
            if room > 0:
                for job, lease in coord.claim(room, worker):
                    if not idle:
                        pool.append(PoolWorker(repo, wake))
                        idle.append(pool[-1])
                    member = idle.pop()
                    queue.update(lease, pid=member.proc.pid)  # its death is visible at once
                    member.assign(job.trial_id, lease)
                    active.add(job.trial_id)
                    say(f"trial {job.sweep_name}-{job.number} started (attempt {job.attempt}) {_fmt(job.params)}")
            if coord.finished(active):
                break
            wake.wait(IDLE_WAIT)
            wake.clear()
    finally:
        for member in pool:
            member.close()
    coord.state.refresh()
    return coord.sweep


def _fmt(params: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())
