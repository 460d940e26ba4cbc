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
from mlci_tui.sweep import events, gpus, policy, queue, share
from mlci_tui.sweep.events import Sweep
from mlci_tui.sweep.runner import TrialJob, remove_stale_worktrees

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
        self.budget_note: str | None = None
        self.gpus: gpus.Packing | None = None

    def recover(self) -> None:
        """At start: remove worktrees their makers left, requeue what a vanished coordinator left running."""
        for name in remove_stale_worktrees(self.repo):
            self.say(f"removed the worktree {name} left by a lost worker")
        held = {lease.trial_id for lease in queue.leases(self.repo, self.sweep_id)}
        batch = []
        for trial, why in policy.stranded(self.sweep, held, self.lease_seconds):
            self.say(f"trial {self.sweep.name}-{trial.number}: {why}; queued again")
            saved = policy.lost_checkpoint(self.repo, trial)
            batch.append(
                events.trial_event(
                    self.sweep_id, trial.trial_id, "requeued", reason=f"lost: {why}", interrupted=True, checkpoint=saved
                )
            )
        if batch:
            self.store.append(batch)
            self.state.refresh()

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
                lost = policy.after_loss(sweep, trial, why, policy.lost_checkpoint(self.repo, trial))
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
        spent = policy.budget_spent(self.sweep)
        if spent:
            cancelled = policy.after_budget(self.sweep, spent)
            if cancelled or self.budget_note is None:
                self.say(f"sweep {self.sweep.name}: {spent}; {len(cancelled)} queued trial(s) cancelled")
            self.budget_note = spent
            if cancelled:
                self.store.append(cancelled)
                self.state.refresh()
        elif policy.tpe_top_up(self.repo, self.sweep, self.jobs):
            self.state.refresh()

    def interrupt(self, tids: list[str]) -> None:
        """Ctrl-C: the in-flight trials are recorded queued again (the attempt not counted)."""
        self.state.refresh(force=True)
        recs = policy.interrupted(self.sweep, tids)
        if recs:
            self.store.append(recs, message=f"mlci: sweep {self.sweep.name}: interrupted, {len(recs)} trials requeued")
            self.say(
                f"interrupted: {len(recs)} running trial(s) queued again; `mlci sweep start {self.sweep.name}` resumes"
            )
        else:  # say so: a Ctrl-C between trials leaves nothing to requeue, and a trial left running is visible
            states = ", ".join(f"{t.trial_id[:8]} {t.state}" for t in self.sweep.ordered() if t.trial_id in tids)
            self.say(f"interrupted: no trial was running here ({len(tids)} in flight: {states or 'none'})")

    def pending(self) -> list[events.Trial]:
        held = {lease.trial_id for lease in queue.leases(self.repo, self.sweep_id)}
        return [t for t in self.sweep.ordered() if t.state == "queued" and t.trial_id not in held]

    def claim(self, room: int, worker: str) -> list[tuple[TrialJob, Path]]:
        """Lease up to `room` queued trials and record them started (one ledger commit).

        With `resources.gpus`, a trial is claimed only when that many GPUs are free here, and
        its job names them (CUDA_VISIBLE_DEVICES).
        """
        claimed: list[tuple[TrialJob, Path]] = []
        for trial in self.pending():
            if len(claimed) >= room:
                break
            job = TrialJob.of(self.sweep, trial)
            if self.gpus is not None:
                devices = self.gpus.take(trial.trial_id)
                if devices is None:
                    break
                job.gpus = devices
            lease = queue.claim(self.repo, self.sweep_id, trial.trial_id, {"job": job.to_json()})
            if lease is not None:
                claimed.append((job, lease))
            elif self.gpus is not None:
                self.gpus.give_back(trial.trial_id)
        if claimed:
            self.store.append(
                [
                    events.started_event(job.sweep_id, job.trial_id, attempt=job.attempt, worker=worker)
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
        self.lease: Path | None = None
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
        self.trial, self.lease = trial_id, lease
        self.proc.stdin.write(f"{lease}\n")
        self.proc.stdin.flush()

    def poll(self) -> bool:
        """True while the process lives; frees it when its trial is recorded."""
        while not self.finished.empty():
            self.finished.get()
            self.trial = self.lease = None
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
    """Run every queued trial of the sweep with `jobs` local workers; returns the final state.

    Ctrl-C stops the running trials (their whole process groups), records them queued again
    and re-raises: the next `sweep start`, here or in any clone, runs them.
    """
    coord = Coordinator(repo, sweep_ref, jobs, say, state)
    (queue.queue_dir(repo, coord.sweep_id) / "cancel").unlink(missing_ok=True)
    coord.gpus = gpus.packing_for(coord.sweep)
    if coord.gpus is not None:
        say(f"gpus: {coord.gpus.describe()}")
        coord.jobs = min(coord.jobs, coord.gpus.capacity())
    coord.recover()
    sharing = share.Sharing.of(repo, coord.sweep, say)
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
            if coord.gpus is not None:
                coord.gpus.keep(active)
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
                    gpu = f" on GPU {job.gpus}" if job.gpus is not None else ""
                    say(f"trial {job.sweep_name}-{job.number} started (attempt {job.attempt}){gpu} {_fmt(job.params)}")
            sharing.maybe_push()
            if coord.finished(active):
                break
            wake.wait(IDLE_WAIT)
            wake.clear()
    except KeyboardInterrupt:
        busy = [m for m in pool if m.trial]
        for member in busy:
            member.proc.kill()  # its command's supervisor sees it go and ends the command's group
        for member in busy:
            member.proc.wait()
            if member.lease is not None:
                held = next((x for x in queue.leases(repo, coord.sweep_id) if x.path == member.lease), None)
                if held is not None:
                    policy.cleanup_lease(repo, held)
        coord.interrupt([m.trial for m in busy if m.trial])
        sharing.push(final=True)
        raise
    finally:
        for member in pool:
            member.close()
    coord.state.refresh()
    sharing.push(final=True)
    return coord.sweep


def _fmt(params: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())
