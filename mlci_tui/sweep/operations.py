"""What can be done to a sweep: queue it, run it, read it, cancel, retry, hand its trials to CI.

The typed core behind `mlci sweep ...`, the TUI's sweeps screen, the demo and the CI steps:
plain arguments in, sweeps, trials and rows out. Nothing here prints; an operation that has
something to say while it works takes a `progress` callback.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui import output
from mlci_tui.errors import CheckFailed, InputError, MlciError
from mlci_tui.gitio import Repo
from mlci_tui.ledger import records, sync
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep import events, policy, queue, strategies
from mlci_tui.sweep import spec as spec_mod
from mlci_tui.sweep.config_schema import SWEEP
from mlci_tui.sweep.dask_executor import run as run_dask
from mlci_tui.sweep.deliver import collect, deliver, incoming_ref
from mlci_tui.sweep.events import Sweep, Trial
from mlci_tui.sweep.local import run as run_local
from mlci_tui.sweep.runner import TrialJob, append_outcome, log_path, run_trial

SNAPSHOT_PREFIX = "refs/mlci/snapshots/"
MATRIX_LIMIT = 256  # GitHub's limit of jobs per matrix; `mlci sweep matrix --limit` says the same
FOLLOW_POLL = 0.2  # seconds between two reads of a followed log
FOLLOW_SETTLE = 0.6  # a log this long quiet, with no lease, may belong to a finished trial

Progress = Callable[[str], None]


# ------------------------------------------------------------------ create
def create_sweep(
    repo: Repo, name: str, *, file: str | None = None, workspace: bool = False, data: dict[str, Any] | None = None
) -> tuple[Sweep, int]:
    """Queue a sweep's trials against HEAD (or a snapshot of the working tree); returns (sweep, queued).

    `data` is a sweep definition given directly (the TUI's form) instead of mlci.yaml's `sweeps.NAME`.
    """
    if data is not None:
        cfg = config_mod.load(repo.root)
        spec_mod.check_name(name)

        def fail(path: str, why: str) -> MlciError:
            return InputError(f"sweep {name}: {path}: {why}")

        spec = spec_mod.build(cfg, name, SWEEP.check(data, "", fail), source=f"sweep {name}")  # type: ignore[arg-type]
    else:
        spec = spec_mod.from_config(repo.root, name, file)
    if spec.method == "tpe" and not strategies.tpe_available():
        raise InputError(f"sweep {name}: method tpe needs Optuna (pip install 'mlci-tui[optuna]')")
    state = queue.QueueState(repo)
    for other in state.sweeps.values():
        if other.name == name and any(t.state in ("queued", "running") for t in other.trials.values()):
            raise InputError(
                f"sweep {name} ({other.sweep_id[:8]}) still has queued or running trials: "
                f"run it (`mlci sweep start {name}`) or cancel it (`mlci sweep cancel {name}`) first"
            )
    head = repo.commit_of("HEAD")
    if head is None:
        raise InputError("the repository has no commit yet: a sweep runs against a commit (commit first)")
    sweep_id = records.new_id()
    base, kind, ref = head, "commit", None
    if workspace:
        base, ref = snapshot(repo, head, sweep_id), f"{SNAPSHOT_PREFIX}{sweep_id}"
        kind = "workspace"
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**31)
    trials = strategies.initial_trials(spec, seed)
    if not trials:
        raise InputError(f"sweep {name}: the params space gives no trials")
    sweep_rec = events.sweep_event(
        name, spec.to_json(), base=base, base_kind=kind, seed=seed, snapshot_ref=ref, event_id=sweep_id
    )
    recs = [sweep_rec, *policy.queued_events(sweep_id, trials)]
    LedgerStore(repo).append(recs, message=f"mlci: sweep {name}: {len(trials)} trials queued")
    state.refresh()
    return state.sweeps[sweep_id], len(trials)


def snapshot(repo: Repo, head: str, sweep_id: str) -> str:
    """A commit of the working tree (tracked and untracked, .gitignore honoured) on top of HEAD.

    Built in a private index, so the user's index and files are untouched; kept under
    refs/mlci/snapshots/<sweep id> so it is not garbage-collected and can be pushed.
    """
    with tempfile.TemporaryDirectory(prefix="mlci-snap-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index"), "MLCI_NO_HOOKS": "1"}
        repo.run("read-tree", head, env=env)
        repo.run("add", "-A", "--", ".", env=env)
        tree = repo.text("write-tree", env=env).strip()
    sha = repo.text("commit-tree", tree, "-p", head, "-m", f"mlci sweep snapshot {sweep_id}").strip()
    repo.run("update-ref", f"{SNAPSHOT_PREFIX}{sweep_id}", sha)
    return sha


# ------------------------------------------------------------------ start
def executor_of(sweep: Sweep, requested: str | None) -> str:
    """The executor asked for, else the sweep's own (`executor:` in its definition), else local."""
    return requested or sweep.spec.get("executor") or "local"


def jobs_of(sweep: Sweep, requested: int | None, executor: str = "local", scheduler: str | None = None) -> int | None:
    """Trials at a time: as asked; else on Dask with a scheduler None (the cluster's worker count,
    read when connected); else the sweep's `parallel`, else one."""
    if requested:
        if requested < 1:
            raise InputError(f"-j {requested}: trials at a time must be at least 1")
        return requested
    if executor == "dask" and (scheduler or sweep.spec.get("scheduler")):
        return None
    return int(sweep.spec.get("parallel") or 1)


def run_sweep(
    repo: Repo,
    state: queue.QueueState,
    sweep: Sweep,
    *,
    executor: str,
    jobs: int | None,
    scheduler: str | None,
    progress: Progress,
) -> Sweep:
    """Run the queued trials of a sweep here (`local`) or on a Dask cluster until none is left; the final state.

    CI is not an executor run from here: its trials are CI jobs, started through the code
    host's API by the front end (`mlci sweep start --executor ci`).
    """
    if executor == "dask":
        return run_dask(repo, sweep.sweep_id, jobs, scheduler or sweep.spec.get("scheduler"), progress, state)
    if executor != "local":
        raise InputError(f"sweep {sweep.name}: executor {executor} does not run trials here")
    if sweep.spec.get("cluster"):
        raise InputError(f"sweep {sweep.name}: cluster: is for the dask executor (--executor dask)")
    return run_local(repo, sweep.sweep_id, jobs or int(sweep.spec.get("parallel") or 1), progress, state)


# ------------------------------------------------------------------ status
def sweep_rows(sweeps: dict[str, Sweep]) -> list[dict[str, Any]]:
    """One row per sweep, newest first: progress, counts per state, best value."""
    rows = []
    for sweep in sorted(sweeps.values(), key=lambda s: s.created, reverse=True):
        counts = sweep.counts()
        best = sweep.best()
        total = len(sweep.trials)
        rows.append(
            {
                "name": sweep.name,
                "sweep_id": sweep.sweep_id,
                "method": sweep.spec.get("method"),
                "progress": f"{counts['done']}/{total}",
                "done": counts["done"],
                "total": total,
                "queued": counts["queued"],
                "running": counts["running"],
                "failed": counts["failed"],
                "cancelled": counts["cancelled"],
                "pruned": counts["pruned"],
                "metric": sweep.spec.get("metric"),
                "best": best.value if best else None,
                "base": sweep.base[:10],
                "created": sweep.created,
            }
        )
    return rows


def stalled(repo: Repo, sweep: Sweep) -> dict[str, str]:
    """Why each waiting trial waits (trial id -> text), and the budget when it is spent (key '')."""
    held = {lease.trial_id for lease in queue.leases(repo, sweep.sweep_id)}
    out = policy.stalled(sweep, held)
    spent = policy.budget_spent(sweep)
    if spent:
        out[""] = spent
    return out


def trial_rows(sweep: Sweep, waiting: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per trial in number order: state, params, the metric's value, why it ended (or waits)."""
    rows = []
    waiting = waiting or {}
    for t in sweep.ordered():
        row: dict[str, Any] = {
            "trial": f"{sweep.name}-{t.number}",
            "trial_id": t.trial_id,
            "state": t.state,
            "attempts": t.attempts,
            "retries": t.requeues,
        }
        for name, value in t.params.items():
            row[name] = value
        row[sweep.spec.get("metric") or "value"] = t.value
        row["run_id"] = t.run_id
        row["exit_code"] = t.exit_code
        row["reason"] = waiting.get(t.trial_id) or t.reason
        rows.append(row)
    return rows


def best_row(sweep: Sweep) -> dict[str, Any]:
    """The best trial by the sweep's metric, with its params as `params.NAME`; an error when there is none yet."""
    metric = sweep.spec.get("metric")
    if not metric:
        raise InputError(f"sweep {sweep.name} has no metric: set sweeps.{sweep.name}.metric to rank its trials")
    top = sweep.best()
    if top is None:
        raise CheckFailed(f"sweep {sweep.name}: no trial is done with a value for {metric} yet")
    return {
        "trial": f"{sweep.name}-{top.number}",
        "trial_id": top.trial_id,
        "run_id": top.run_id,
        "metric": metric,
        "value": top.value,
        "direction": sweep.spec.get("direction"),
        **{f"params.{k}": v for k, v in top.params.items()},
    }


# ------------------------------------------------------------------ logs
def local_log(repo: Repo, trial: Trial) -> Path | None:
    """The trial's full log: the file where it ran on this machine, else the copy its end event
    links in the data cache or on the data remote (None: only its stderr tail is in the ledger)."""
    path = log_path(repo, trial.trial_id)
    if path.exists():
        return path
    if trial.log:
        from mlci_tui.sweep.trial_files import fetch

        return fetch(repo, trial.log["hash"], trial.log["size"])
    return None


def log_chunks(
    repo: Repo, state: queue.QueueState, sweep: Sweep, trial: Trial, path: Path, *, follow: bool
) -> Iterator[str]:
    """The log's text as it grows: all of it, then with `follow` what is added until the trial stops running.

    A trial has stopped when its lease is gone, the log has been quiet a moment and the
    ledger no longer says `running`.
    """
    text, offset = _read_from(path, 0)
    if text:
        yield text
    if not follow:
        return
    lease = queue.lease_path(repo, sweep.sweep_id, trial.trial_id)
    idle = 0.0
    while True:
        time.sleep(FOLLOW_POLL)
        text, new = _read_from(path, offset)
        if text:
            yield text
        idle = 0.0 if new != offset else idle + FOLLOW_POLL
        offset = new
        if not lease.exists() and idle >= FOLLOW_SETTLE:
            state.refresh()
            if state.sweeps[sweep.sweep_id].trials[trial.trial_id].state != "running":
                return


def _read_from(path: Path, offset: int) -> tuple[str, int]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    return data.decode("utf-8", "replace"), offset + len(data)


# ------------------------------------------------------------------ cancel / retry
def cancel_sweep(repo: Repo, sweep_ref: str) -> tuple[Sweep, int]:
    """Cancel the queued trials and tell running local trials to stop; returns (sweep, trials cancelled)."""
    state = queue.QueueState(repo)
    sweep = state.find(sweep_ref)
    flag = queue.queue_dir(repo, sweep.sweep_id) / "cancel"
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text(records.now_iso() + "\n")  # running local trials stop and record `cancelled`
    pending = [t for t in sweep.ordered() if t.state == "queued"]
    recs = [events.trial_event(sweep.sweep_id, t.trial_id, "cancelled", reason="sweep cancelled") for t in pending]
    if recs:
        LedgerStore(repo).append(recs, message=f"mlci: sweep {sweep.name}: {len(recs)} trials cancelled")
    return sweep, len(recs)


def retry_sweep(repo: Repo, sweep_ref: str, *, running: bool = False) -> tuple[Sweep, int]:
    """Queue the failed and cancelled trials again (with `running`, also those no local lease holds)."""
    state = queue.QueueState(repo)
    sweep = state.find(sweep_ref)
    held = {lease.trial_id for lease in queue.leases(repo, sweep.sweep_id)}
    wanted = {"failed", "cancelled"} | ({"running"} if running else set())
    chosen: list[Trial] = [t for t in sweep.ordered() if t.state in wanted and t.trial_id not in held]
    recs = [
        events.trial_event(sweep.sweep_id, t.trial_id, "requeued", reason=f"retry after {t.state}", manual=True)
        for t in chosen
    ]
    (queue.queue_dir(repo, sweep.sweep_id) / "cancel").unlink(missing_ok=True)
    if recs:
        LedgerStore(repo).append(recs, message=f"mlci: sweep {sweep.name}: {len(recs)} trials queued again")
    return sweep, len(recs)


# ------------------------------------------------------------------ CI: matrix and work
def queued_matrix(repo: Repo, sweep_ref: str, *, limit: int | None = MATRIX_LIMIT) -> list[dict[str, str]]:
    """The queued trials as CI matrix entries `{trial: id, name: SWEEP-NUMBER}`, at most `limit` (0 or None: all)."""
    sweep = queue.QueueState(repo).find(sweep_ref)
    pending = [t for t in sweep.ordered() if t.state == "queued"]
    if limit:
        pending = pending[:limit]
    return [{"trial": t.trial_id, "name": f"{sweep.name}-{t.number}"} for t in pending]


def ci_runner(repo: Repo, sweep_ref: str) -> tuple[list[str] | None, bool]:
    """The runner labels the sweep's trial jobs ask CI for (`resources.runner`; None: the
    default runner), and whether its trials want GPUs (`resources.gpus`)."""
    resources = queue.QueueState(repo).find(sweep_ref).spec.get("resources") or {}
    runner = resources.get("runner")
    return (list(runner) if runner else None), bool(resources.get("gpus"))


@dataclass(frozen=True)
class TrialWork:
    """What `work_trial` did: `ran` False when the trial was already done or cancelled."""

    sweep: Sweep
    trial: Trial
    ran: bool
    state: str  # the trial's state at the end: done, failed, cancelled

    @property
    def label(self) -> str:
        return f"{self.sweep.name}-{self.trial.number}"


def work_trial(repo: Repo, trial_ref: str, *, remote: str | None, progress: Progress) -> TrialWork:
    """Run one trial here (a CI job) and record its outcome.

    With a `remote`, the ledger is pulled from it first and pushed to it after, and a base
    commit missing from the clone is fetched from it; without, only the local ledger changes.
    """
    if remote is not None:
        sync.pull(repo, remote)
    state = queue.QueueState(repo)
    sweep, trial = queue.find_trial(state.sweeps, trial_ref)
    if trial.state in ("done", "cancelled"):
        return TrialWork(sweep, trial, ran=False, state=trial.state)
    ensure_base(repo, sweep, remote)
    job = TrialJob.of(sweep, trial)
    worker = events.worker_name(os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_JOB_ID") or os.getpid())
    LedgerStore(repo).append([events.started_event(sweep.sweep_id, trial.trial_id, attempt=job.attempt, worker=worker)])
    progress(f"trial {sweep.name}-{trial.number} started: {params_text(job.params)}")
    outcome = run_trial(repo, job, worker=worker)
    append_outcome(repo, outcome)
    progress(f"trial {sweep.name}-{trial.number}: {outcome.message}")
    if remote is not None:
        for text in deliver(repo, remote, incoming_ref(sweep.sweep_id, trial.trial_id, job.attempt)):
            progress(text)
    return TrialWork(sweep, trial, ran=True, state=outcome.state)


@dataclass(frozen=True)
class Collection:
    """What `collect_sweep` did: results folded in, refs refused, the next wave queued (tpe)."""

    sweep: Sweep
    merged: int
    refused: list[str]
    queued: int

    @property
    def finished(self) -> bool:
        return not any(t.state in ("queued", "running") for t in self.sweep.trials.values())


def collect_sweep(repo: Repo, sweep_ref: str, *, remote: str, wave: int | None = None) -> Collection:
    """The coordinator of a CI sweep: fold the trial jobs' incoming refs into the ledger, then, for
    tpe, queue the next wave (`wave` trials, default the sweep's `parallel`) within its budget and
    push it; the caller dispatches the workflow again when `queued` > 0."""
    sync.pull(repo, remote)
    got = collect(repo, remote, queue.QueueState(repo).find(sweep_ref).sweep_id)
    state = queue.QueueState(repo)
    sweep = state.find(sweep_ref)
    queued = 0
    spent = policy.budget_spent(sweep)
    if spent:
        cancelled = policy.after_budget(sweep, spent)
        if cancelled:
            LedgerStore(repo).append(cancelled)
    elif not any(t.state == "running" for t in sweep.trials.values()):
        queued = policy.tpe_top_up(repo, sweep, wave or int(sweep.spec.get("parallel") or 1))
    if queued or spent:
        sync.push(repo, remote)
    state.refresh()
    return Collection(state.find(sweep_ref), len(got.merged), got.refused, queued)


def ensure_base(repo: Repo, sweep: Sweep, remote: str | None) -> None:
    """Make the sweep's base commit readable here: fetch it (or its snapshot ref) from `remote` if missing."""
    if repo.commit_of(sweep.base):
        return
    if remote is None:
        raise InputError(f"base commit {sweep.base[:10]} of sweep {sweep.name} is not in this clone")
    wanted = sweep.snapshot_ref or sweep.base
    proc = repo.run("fetch", "--quiet", "--no-tags", remote, wanted, check=False, env={"MLCI_NO_HOOKS": "1"})
    if proc.returncode != 0 or not repo.commit_of(sweep.base):
        raise InputError(
            f"base commit {sweep.base[:10]} of sweep {sweep.name} is not in this clone and could not be fetched "
            f"from {remote}" + (f" (push {sweep.snapshot_ref} there)" if sweep.snapshot_ref else "")
        )


def params_text(params: dict[str, Any]) -> str:
    """`name=value ...` as the progress lines and summaries write a trial's params."""
    return " ".join(f"{k}={output.cell_text(v)}" for k, v in params.items())
