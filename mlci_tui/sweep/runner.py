"""Run one trial: a git worktree at the sweep's base commit, params written, the command
run with a timeout, its metrics captured into a `trial` run, the worktree removed.

The user's working tree and index are never touched: everything happens in a detached
worktree under `.git/mlci/worktrees/`, with hooks off (`MLCI_NO_HOOKS=1`, no hooks path).
The full log stays in `.git/mlci/logs/<trial_id>.log`; the last 4 KB of stderr travel in
the ledger event. The caller appends the returned records.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.capture import build as runs
from mlci_tui.data.add import data_settings
from mlci_tui.data.cache import DataCache
from mlci_tui.data.checkout import CheckoutResult, checkout_pointer
from mlci_tui.data.hashing import StatCache
from mlci_tui.data.status import workspace_pointers
from mlci_tui.data.tree import dataset_hashes
from mlci_tui.errors import MlciError
from mlci_tui.file_lock import exclusive
from mlci_tui.gitio import GitResult, Repo, commit_info, git, patch_id
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sources import WorkdirSource
from mlci_tui.sweep import events, queue, repeats
from mlci_tui.sweep.checkpoint_watch import CheckpointWatch
from mlci_tui.sweep.params_io import apply_params

HOOKLESS = {"MLCI_NO_HOOKS": "1"}
SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
STOP_CHECK = 0.5  # seconds between two calls of a trial's `stop` check (Dask cancel, pruning)
Stop = Callable[[], "str | None"]  # why to stop the command now ('cancelled', 'pruned at step 3'), or None


@dataclass
class TrialJob:
    """What a worker needs to run one trial, without reading the ledger."""

    sweep_id: str
    sweep_name: str
    trial_id: str
    number: int
    params: dict[str, Any]
    spec: dict[str, Any]
    base: str
    attempt: int = 1
    snapshot_ref: str | None = None
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES given to the command (the local executor's packing)
    checkpoint: dict[str, Any] | None = None  # the checkpoints a failed attempt uploaded (trial_files)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialJob:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def of(cls, sweep: events.Sweep, trial: events.Trial) -> TrialJob:
        return cls(
            sweep_id=sweep.sweep_id,
            sweep_name=sweep.name,
            trial_id=trial.trial_id,
            number=trial.number,
            params=trial.params,
            spec=sweep.spec,
            base=sweep.base,
            attempt=trial.attempts + 1,
            snapshot_ref=sweep.snapshot_ref,
            checkpoint=trial.checkpoint,
        )


@dataclass
class Outcome:
    state: str  # done, failed, cancelled, pruned
    records: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


def log_path(repo: Repo, tid: str) -> Path:
    return repo.state_dir / "logs" / f"{tid}.log"


def _git(repo: Repo, *args: str, check: bool = True) -> GitResult:
    return git(["-c", "core.hooksPath=/dev/null", *args], repo.root, env=HOOKLESS, check=check)


def checkpoint_dir(repo: Repo, tid: str) -> Path:
    """MLCI_CHECKPOINT_DIR of a trial: kept across its attempts on this machine, removed when it is done."""
    return repo.state_dir / "checkpoints" / tid


def make_worktree(repo: Repo, job: TrialJob) -> Path:
    path = repo.state_dir / "worktrees" / f"{job.trial_id}-{job.attempt}"
    if path.exists():
        remove_worktree(repo, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _owner(path).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    with _worktrees_lock(repo):
        _git(repo, "worktree", "add", "--quiet", "--detach", "--force", str(path), job.base)
    return path


def _worktrees_lock(repo: Repo) -> AbstractContextManager[None]:
    """git's `worktree add`/`remove`/`prune` read every entry of `.git/worktrees/`, and fail on
    one another's half-made entry ("failed to read .../commondir"): trials starting together
    (a sweep's -j, bisect's repeats) take turns at them."""
    return exclusive(repo.state_dir / "worktrees.lock")


def _owner(worktree: Path) -> Path:
    """Who made a trial's worktree: a stale one (its maker gone) is removed by the next run."""
    return worktree.with_name(worktree.name + ".owner")


def remove_stale_worktrees(repo: Repo) -> list[str]:
    """Remove the trial worktrees whose maker (a worker process on this host) is gone; their names.

    A worker killed mid-trial (a lost Dask worker, kill -9) cannot remove its worktree; the
    next coordinator or task on this repository does.
    """
    folder = repo.state_dir / "worktrees"
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if not path.is_dir():
            continue
        owner = queue.read_lease_data(_owner(path)) or {}
        pid = owner.get("pid")
        if owner.get("host") == socket.gethostname() and isinstance(pid, int) and queue.pid_alive(pid):
            continue
        remove_worktree(repo, path)
        removed.append(path.name)
    return removed


def link_datasets(repo: Repo, worktree: Path, base: str) -> list[str]:
    """Place the datasets the worktree's pointer files name, from this clone's data cache.

    The files come from the main checkout's cache (`.mlci/cache`), placed with the data
    section's link mode (reflink, else copy; cache files are read-only). Returns the datasets
    whose content is not in the cache (the trial then fails and says so).
    """
    if not base_info(repo, base).has_pointers:
        return []
    cache = DataCache.for_repo(repo.root)
    result = CheckoutResult()
    scratch = worktree / ".git-mlci-stat"  # a throwaway stat cache: the clone's own is keyed by its paths
    stats = StatCache(scratch)
    link = data_settings(repo.root)["link"]
    for _file, pointer in workspace_pointers(worktree):
        if pointer.origin == "mlci":
            checkout_pointer(worktree, pointer, cache, stats, link, force=True, result=result)
    shutil.rmtree(scratch, ignore_errors=True)
    return result.not_cached


def data_section(repo: Repo, base: str) -> dict[str, Any] | None:
    """The `data:` section a trial's log and checkpoints travel by: None (the working tree's
    config) where there is one, else the base commit's: a Dask worker's clone has no checkout."""
    if config_mod.load(repo.root).source is not None:
        return None
    return dict(base_info(repo, base).config.data["data"])


def remove_worktree(repo: Repo, path: Path) -> None:
    with _worktrees_lock(repo):
        proc = _git(repo, "worktree", "remove", "--force", "--force", str(path), check=False)
        if proc.returncode != 0 or path.exists():
            shutil.rmtree(path, ignore_errors=True)
            _git(repo, "worktree", "prune", check=False)
    _owner(path).unlink(missing_ok=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(
    job: TrialJob,
    cwd: Path,
    log: Path,
    *,
    lease: Path | None = None,
    cancel_flag: Path | None = None,
    on_start: Callable[[int], None] | None = None,
    stop: Stop | None = None,
    checkpoints: Path | None = None,
    repeat: int | None = None,
) -> tuple[int | None, str, str | None]:
    """(exit code or None, stderr tail, why it was stopped: 'timeout' / 'cancelled' / what `stop` said / None).

    The command runs under `supervise.py`, the leader of its own process group: a timeout,
    a cancel, a `stop` or the death of this process ends the whole group.
    """
    env = dict(os.environ)
    env.update(HOOKLESS)
    env.update(
        MLCI_SWEEP=job.sweep_name,
        MLCI_SWEEP_ID=job.sweep_id,
        MLCI_TRIAL_ID=job.trial_id,
        MLCI_TRIAL_NUMBER=str(job.number),
        MLCI_TRIAL_PARAMS=json.dumps(job.params, sort_keys=True),
    )
    if job.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = job.gpus
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
        env["MLCI_CHECKPOINT_DIR"] = str(checkpoints)
    if job.spec.get("seed_env"):  # repeats (a sweep's, bisect's trials): the seed is the repeat index
        env[job.spec["seed_env"]] = str(job.number if repeat is None else repeat)
    log.parent.mkdir(parents=True, exist_ok=True)
    timeout = job.spec.get("timeout")
    with open(log, "ab") as out:
        header = f"== mlci trial {job.sweep_name}-{job.number} attempt {job.attempt} at {records.now_iso()}: "
        if repeat is not None:
            header += f"repeat {repeat}: "
        out.write((header + job.spec["command"] + "\n").encode())
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", SUPERVISOR, job.spec["command"]],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if on_start:
            on_start(proc.pid)
        buffer = bytearray()
        assert proc.stderr is not None
        stderr = proc.stderr

        def pump() -> None:
            for chunk in iter(lambda: os.read(stderr.fileno(), 65536), b""):
                with open(log, "ab") as err_out:
                    err_out.write(chunk)
                buffer.extend(chunk)
                if len(buffer) > 2 * events.TAIL_BYTES:
                    del buffer[: -events.TAIL_BYTES]

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        began = time.monotonic()
        beat = max(0.5, queue.lease_seconds() / 4)
        last_beat = last_check = began
        stopped: str | None = None
        while True:
            try:
                proc.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if lease is not None and now - last_beat >= beat:
                queue.heartbeat(lease)
                last_beat = now
            if timeout and now - began > float(timeout):
                stopped = "timeout"
            elif cancel_flag is not None and cancel_flag.exists():
                stopped = "cancelled"
            elif stop is not None and now - last_check >= STOP_CHECK:
                last_check = now
                stopped = stop()
            if stopped:
                _kill_group(proc)
                break
        reader.join(timeout=5)
        code = proc.returncode
    return (None if stopped else code), events.tail(bytes(buffer)), stopped


def metric_value(record: dict[str, Any], metric: str | None) -> tuple[float | None, str | None]:
    """The sweep metric's value in a captured run, by plain name or `file:name`."""
    if not metric:
        return None, None
    found: list[float] = []
    for file, values in (record.get("metrics") or {}).items():
        if ":" in metric:
            mfile, _, mname = metric.rpartition(":")
            if mfile == file and mname in values:
                found.append(values[mname])
        elif metric in values:
            found.append(values[metric])
    if len(found) > 1:
        return None, f"metric {metric!r} is in more than one metrics file: name one as file:{metric}"
    if not found:
        return None, f"metric {metric!r} not found in the trial's metrics"
    value = found[0]
    return (float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None), None


@dataclass
class BaseInfo:
    """What every trial of one base commit shares: read once per worker process, not per trial."""

    commit: Any  # gitio.CommitInfo
    patch_id: str | None
    config: Any  # config.Config, as the base commit holds it
    has_pointers: bool
    datasets: dict[str, str]  # dataset path -> content hash, from the base commit's pointers
    warnings: list[str]


_BASES: dict[str, BaseInfo] = {}


def base_info(repo: Repo, base: str) -> BaseInfo:
    info = _BASES.get(base)
    if info is None:
        commit = commit_info(repo, base)
        listed = repo.run("ls-tree", "-r", "--name-only", "-z", base, check=False).stdout
        pointers = any(p.endswith(b".mlci") for p in listed.split(b"\0"))
        warnings: list[str] = []
        datasets: dict[str, str] = {}
        if pointers or b"dvc" in listed:
            datasets = dataset_hashes(repo, base, warnings)
        cfg = config_mod.load_from_git(repo, base)
        info = BaseInfo(commit, patch_id(repo, commit), cfg, pointers, datasets, warnings)
        _BASES[base] = info
    return info


def capture(
    repo: Repo, worktree: Path, job: TrialJob, started: str, repeat: tuple[int, str, str] | None = None
) -> dict[str, Any]:
    """The trial's run record, read from the worktree the command wrote into.

    Built like `mlci record`'s workspace run (runs.read_values and the same record fields),
    linked to its sweep, trial and base commit; a trial's run id is derived from its trial id.
    A repeat (index, the trial's commit, its tree; sweep/repeats.py) is a run of the trial's
    commit with the id derived from (kind, commit, index), as `record --repeat` gives.
    """
    info = base_info(repo, job.base)
    values = runs.read_values(info.config, WorkdirSource(worktree), strict=True)
    if values.empty:
        files = ", ".join(info.config.params_files + info.config.metrics_files)
        raise MlciError(f"no params or metrics files found in the trial's worktree (looked for {files})")
    kind = job.spec.get("run_kind") or "trial"
    record = runs.base_record(kind, values)
    run_id = events.trial_run_id(job.trial_id)
    tree_repo = Repo(root=worktree, git_dir=repo.common_dir, common_dir=repo.common_dir)
    record.update(
        run_id=run_id,
        name=f"{job.sweep_name}-{job.number}",
        started=started,
        ended=records.now_iso(),
        # a trial is not its base commit's state (its params differ): it names the base as
        # `parent` only, so `mlci gate HEAD` or `show HEAD` never pick a trial for the commit
        commit=None,
        tree=None,
        patch_id=None,
        branch=None,
        author=info.commit.author,
        message=f"sweep {job.sweep_name} trial {job.number}",
        source="sweep",
        parent=job.base,
        sweep_id=job.sweep_id,
        trial_id=job.trial_id,
        deps=runs._workdir_deps(tree_repo, info.config),
        datasets=dict(info.datasets),
    )
    if repeat is not None:
        index, commit, tree = repeat
        run_id = runs.repeat_id(kind, commit, index)
        record.update(run_id=run_id, commit=commit, tree=tree, source=repeats.SOURCE)
        record["message"] += f", repeat {index}"
    if kind == "bisect":  # a probe of `mlci bisect`: its commit's own state, retrained (docs/bisect.md)
        run_id = runs.repeat_id("bisect", job.base, job.number)
        record.update(run_id=run_id, commit=job.base, tree=info.commit.tree, patch_id=info.patch_id, parent=None)
        record.update(message=info.commit.message, source="bisect")
    record["warnings"] = [*record["warnings"], *info.warnings]
    return runs.finish_record(record, run_id, records.now_iso())


def run_trial(
    repo: Repo,
    job: TrialJob,
    *,
    lease: Path | None = None,
    worker: str | None = None,
    on_start: Callable[[int], None] | None = None,
    stop: Stop | None = None,
) -> Outcome:
    """Run the trial and return the records that describe its end (not yet appended).

    `stop` is asked every half second whether to stop the command (a Dask cancel); with a
    `pruner` in the spec, so is the pruning watcher.
    """
    started = records.now_iso()
    log = log_path(repo, job.trial_id)
    cancel_flag = queue.queue_dir(repo, job.sweep_id) / "cancel"
    base_fields: dict[str, Any] = {"attempt": job.attempt, "worker": worker or events.worker_name(os.getpid())}
    try:
        worktree = make_worktree(repo, job)
    except MlciError as exc:
        return _failed(job, base_fields, None, "", f"could not prepare the worktree: {exc}")
    if lease is not None:
        queue.update(lease, worktree=str(worktree))
    watcher = None
    if job.spec.get("pruner") and job.spec.get("metric"):
        from mlci_tui.sweep.pruning import Watcher

        watcher = Watcher(repo, job.sweep_id, job.trial_id, job.spec, worktree)
    checkpoints = checkpoint_dir(repo, job.trial_id)
    data = data_section(repo, job.base)
    snapshots = CheckpointWatch(repo, job.trial_id, checkpoints, job.spec.get("checkpoint_interval"), data)
    checks = [c for c in (stop, watcher.check if watcher else None, snapshots.check) if c is not None]
    outcome: Outcome | None = None
    try:
        count = repeats.count(job.spec)
        try:
            apply_params(worktree, job.params, job.spec["params_file"])
            commit = repeats.trial_commit(repo, worktree, job.sweep_id, job.number, job.base) if count > 1 else None
            missing = link_datasets(repo, worktree, job.base)
        except MlciError as exc:
            return _failed(job, base_fields, None, "", f"could not prepare the trial: {exc}")
        if missing:
            missing_text = ", ".join(missing[:5])
            return _failed(
                job, base_fields, None, "", f"datasets not in the data cache: {missing_text} (mlci data pull)"
            )
        from mlci_tui.sweep.trial_files import restore_checkpoint

        # what an earlier attempt uploaded (as it ran, or when it failed), when this machine has none
        restore_checkpoint(repo, job.checkpoint, checkpoints, job.trial_id, data)

        def train(index: int | None) -> tuple[int | None, str, str | None]:
            return run_command(
                job,
                worktree,
                log,
                lease=lease,
                cancel_flag=cancel_flag,
                on_start=on_start,
                stop=lambda: next((why for why in (c() for c in checks) if why), None),
                checkpoints=checkpoints if index is None else checkpoints / f"repeat-{index}",
                repeat=index,
            )

        if commit is None:
            code, err_tail, stopped = train(None)
            outcome = _ended(repo, job, worktree, started, base_fields, code, err_tail, stopped, watcher)
        else:
            outcome = _repeated(repo, job, worktree, base_fields, commit, train)
        if outcome.state in ("done", "failed", "pruned"):
            from mlci_tui.sweep.trial_files import publish, publish_checkpoint

            outcome.records[-1].update(publish(repo, log, data))  # the full log, linked from the end event
            snapshots.close()  # an upload in flight finishes first: the end's link is the newest
            if outcome.state == "failed":  # its retry may run on another machine: it resumes from these
                outcome.records[-1].update(publish_checkpoint(repo, checkpoints, job.trial_id, data))
        return outcome
    finally:
        snapshots.close(wait=0)
        if watcher is not None:
            if outcome is not None and outcome.state == "done":
                watcher.steps = read_final(watcher)
            watcher.finish(outcome is not None and outcome.state == "done")
        if outcome is not None and outcome.state in ("done", "cancelled", "pruned"):
            shutil.rmtree(checkpoints, ignore_errors=True)  # a failed trial keeps it for its retry
        remove_worktree(repo, worktree)


def read_final(watcher: Any) -> dict[int, float]:
    from mlci_tui.sweep.pruning import read_series

    return read_series(watcher.worktree, str(watcher.spec.get("metric") or "")) or watcher.steps


def _ended(
    repo: Repo,
    job: TrialJob,
    worktree: Path,
    started: str,
    base_fields: dict[str, Any],
    code: int | None,
    err_tail: str,
    stopped: str | None,
    watcher: Any,
) -> Outcome:
    """The records of a trial whose command has ended (or was stopped)."""
    early = _not_done(job, base_fields, code, err_tail, stopped, watcher)
    if early is not None:
        return early
    try:
        run = capture(repo, worktree, job, started)
    except MlciError as exc:
        return _failed(job, base_fields, 0, err_tail, f"no metrics captured: {exc}")
    value, why = metric_value(run, job.spec.get("metric"))
    done = events.trial_event(
        job.sweep_id,
        job.trial_id,
        "done",
        run_id=run["run_id"],
        value=value,
        reason=why,
        **base_fields,
    )
    return Outcome("done", [run, done], "done" + (f" ({why})" if why else ""))


def _repeated(
    repo: Repo,
    job: TrialJob,
    worktree: Path,
    base_fields: dict[str, Any],
    commit: tuple[str, str],
    train: Callable[[int], tuple[int | None, str, str | None]],
) -> Outcome:
    """The trial's params trained `repeats` times, seeds 0..K-1 (sweep/repeats.py): K runs of the
    trial's commit, one group, and a `done` whose value is their mean (what tpe is told) with
    `sd`, `repeats` and every `run_ids`. A repeat that fails or is stopped ends the trial so."""
    count = repeats.count(job.spec)
    seed_param, metric = job.spec.get("seed_param"), job.spec.get("metric")
    recorded: list[dict[str, Any]] = []
    values: list[float] = []
    why: str | None = None
    for index in range(count):
        if index:
            repeats.clear_outputs(worktree, base_info(repo, job.base).config.metrics_files)
        if seed_param:
            apply_params(worktree, {seed_param: index}, job.spec["params_file"])
        began = records.now_iso()
        code, err_tail, stopped = train(index)
        early = _not_done(job, base_fields, code, err_tail, stopped, None)
        if early is None:
            try:
                run = capture(repo, worktree, job, began, (index, *commit))
            except MlciError as exc:
                early = _failed(job, base_fields, 0, err_tail, f"no metrics captured: {exc}")
        if early is not None:
            early.message = f"repeat {index}: {early.message}"
            early.records[-1]["reason"] = f"repeat {index} of {count}: {early.records[-1].get('reason')}"
            return early
        recorded.append(run)
        value, why = metric_value(run, metric)
        if value is not None:
            values.append(value)
    mean, sd = repeats.mean_sd(values) if len(values) == count else (None, None)
    done = events.trial_event(
        job.sweep_id,
        job.trial_id,
        "done",
        run_id=recorded[0]["run_id"],
        run_ids=[r["run_id"] for r in recorded],
        value=mean,
        sd=sd,
        repeats=count,
        reason=why if mean is None else None,
        **base_fields,
    )
    text = f"done, {count} repeats" + (f": mean {mean:.6g} ± {sd:.2g}" if mean is not None and sd is not None else "")
    return Outcome("done", [*recorded, done], text)


def _not_done(
    job: TrialJob, base_fields: dict[str, Any], code: int | None, err_tail: str, stopped: str | None, watcher: Any
) -> Outcome | None:
    """The records of a command that was stopped or failed; None when it exited 0."""
    if stopped == "cancelled":
        event = events.trial_event(job.sweep_id, job.trial_id, "cancelled", reason="cancelled while running")
        return Outcome("cancelled", [event], "cancelled")
    if stopped == "pruned" and watcher is not None and watcher.last is not None:
        step, value = watcher.last
        text = f"pruned at step {step} ({job.spec.get('pruner')} pruner): {job.spec.get('metric')}={value:g}"
        event = events.trial_event(
            job.sweep_id, job.trial_id, "pruned", step=step, value=value, reason=text, **base_fields
        )
        return Outcome("pruned", [event], text)
    if stopped == "timeout":
        return _failed(job, base_fields, None, err_tail, f"timed out after {job.spec.get('timeout')} s")
    if code != 0:
        return _failed(job, base_fields, code, err_tail, f"exit code {code}")
    return None


def _failed(job: TrialJob, fields: dict[str, Any], code: int | None, err_tail: str, why: str) -> Outcome:
    event = events.trial_event(
        job.sweep_id, job.trial_id, "failed", exit_code=code, stderr_tail=err_tail, reason=why, **fields
    )
    return Outcome("failed", [event], why)


def append_outcome(repo: Repo, outcome: Outcome) -> bool:
    """Append an outcome's records; a trial already recorded done is not recorded again."""
    store = LedgerStore(repo)
    if outcome.state == "done":
        ids = [r["id"] for r in outcome.records]
        present = store.has_ids(ids)
        if events.done_event_id(outcome.records[-1]["trial_id"]) in present:
            return False
        outcome.records = [r for r in outcome.records if r["id"] not in present]
    store.append(outcome.records)
    return True
