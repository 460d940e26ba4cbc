"""`mlci sweep ...` handlers: thin wrappers over spec, strategies, queue and the executors."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from mlci_tui import output
from mlci_tui.errors import CheckFailed, InputError, MlciError
from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sanitize import display
from mlci_tui.sweep import events, policy, queue, strategies
from mlci_tui.sweep import spec as spec_mod
from mlci_tui.sweep.events import Sweep, Trial

SNAPSHOT_PREFIX = "refs/mlci/snapshots/"


def _repo() -> Repo:
    return Repo.find()


def _say(text: str) -> None:
    print(display(text), file=sys.stderr, flush=True)


# ------------------------------------------------------------------ create
def create_sweep(
    repo: Repo, name: str, *, file: str | None = None, workspace: bool = False, data: dict[str, Any] | None = None
) -> tuple[Sweep, int]:
    """Queue a sweep's trials against HEAD (or a snapshot of the working tree); returns (sweep, queued)."""
    from mlci_tui import config as config_mod

    if data is not None:
        cfg = config_mod.load(repo.root)
        spec_mod.check_name(name)
        from mlci_tui.sweep.config_schema import SWEEP

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
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlci-snap-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index"), "MLCI_NO_HOOKS": "1"}
        repo.run("read-tree", head, env=env)
        repo.run("add", "-A", "--", ".", env=env)
        tree = repo.text("write-tree", env=env).strip()
    sha = repo.text("commit-tree", tree, "-p", head, "-m", f"mlci sweep snapshot {sweep_id}").strip()
    repo.run("update-ref", f"{SNAPSHOT_PREFIX}{sweep_id}", sha)
    return sha


def create(args: argparse.Namespace) -> int:
    repo = _repo()
    sweep, count = create_sweep(repo, args.name, file=args.file, workspace=args.workspace)
    spec = sweep.spec
    print(
        f"sweep {display(sweep.name)} ({sweep.sweep_id[:8]}): {count} trial(s) queued, method {spec['method']}"
        f"{'' if spec['method'] == 'grid' else f', seed {sweep.seed}'}, base {sweep.base[:10]}"
        f"{' (workspace snapshot)' if sweep.base_kind == 'workspace' else ''}"
    )
    print(f"run them with: mlci sweep start {display(sweep.name)}")
    return 0


# ------------------------------------------------------------------ start
def start(args: argparse.Namespace) -> int:
    repo = _repo()
    state = queue.QueueState(repo)
    sweep = state.find(args.name)
    executor = args.executor or sweep.spec.get("executor") or "local"
    jobs = args.jobs or int(sweep.spec.get("parallel") or 1)
    if executor == "ci":
        return _dispatch_ci(repo, sweep, args)
    began = time.monotonic()
    if executor == "dask":
        from mlci_tui.sweep.dask_executor import run as run_dask

        final = run_dask(repo, sweep.sweep_id, jobs, args.scheduler or sweep.spec.get("scheduler"), _say, state)
    else:
        from mlci_tui.sweep.local import run as run_local

        final = run_local(repo, sweep.sweep_id, jobs, _say, state)
    return _summary(final, time.monotonic() - began)


def _dispatch_ci(repo: Repo, sweep: Sweep, args: argparse.Namespace) -> int:
    import importlib
    import importlib.util

    if importlib.util.find_spec("mlci_tui.ci") is None or importlib.util.find_spec("mlci_tui.ci.dispatch") is None:
        print(
            "mlci: sweep start --executor ci: dispatching CI jobs needs the sweep workflow; "
            "set it up with `mlci ci init --sweeps` (or run `mlci sweep matrix` + `mlci sweep work` in your own CI)",
            file=sys.stderr,
        )
        return 2
    dispatch = importlib.import_module("mlci_tui.ci.dispatch")
    return int(dispatch.dispatch_sweep(repo.root, sweep.name, jobs=args.jobs) or 0)


def _summary(sweep: Sweep, seconds: float) -> int:
    counts = sweep.counts()
    line = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    print(f"sweep {display(sweep.name)}: {line} in {seconds:.1f} s")
    best = sweep.best()
    metric = sweep.spec.get("metric")
    if best is not None and metric:
        print(
            f"best: {display(sweep.name)}-{best.number} {display(metric)}={output.cell_text(best.value)} "
            f"{display(_params_text(best.params))} (run {best.run_id[:8] if best.run_id else '-'})"
        )
    return 1 if counts.get("failed") else 0


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={output.cell_text(v)}" for k, v in params.items())


# ------------------------------------------------------------------ status
def sweep_rows(sweeps: dict[str, Sweep]) -> list[dict[str, Any]]:
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
                "metric": sweep.spec.get("metric"),
                "best": best.value if best else None,
                "base": sweep.base[:10],
                "created": sweep.created,
            }
        )
    return rows


def trial_rows(sweep: Sweep) -> list[dict[str, Any]]:
    rows = []
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
        row["reason"] = t.reason
        rows.append(row)
    return rows


def status(args: argparse.Namespace) -> int:
    repo = _repo()
    state = queue.QueueState(repo)
    if not args.name:
        rows = sweep_rows(state.sweeps)
        if args.format == "table":
            cols = ["name", "method", "progress", "queued", "running", "failed", "metric", "best", "created"]
            if not rows:
                print("no sweeps yet: define one under sweeps: in mlci.yaml and run `mlci sweep create NAME`")
                return 0
        else:
            cols = list(rows[0]) if rows else ["name"]
        output.write(rows, cols, args.format, sys.stdout)
        return 0
    sweep = state.find(args.name)
    rows = trial_rows(sweep)
    metric = sweep.spec.get("metric") or "value"
    cols = ["trial", "state", "attempts", "retries", *sweep.spec["params"], metric]
    if args.format != "table":
        cols += ["trial_id", "run_id", "exit_code", "reason"]
    else:
        cols.append("reason")
    if args.format == "table":
        counts = sweep.counts()
        print(
            f"sweep {display(sweep.name)} ({sweep.sweep_id[:8]}) base {sweep.base[:10]}: "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        )
    output.write(rows, cols, args.format, sys.stdout)
    return 0


def best(args: argparse.Namespace) -> int:
    repo = _repo()
    sweep = queue.QueueState(repo).find(args.name)
    metric = sweep.spec.get("metric")
    if not metric:
        raise InputError(f"sweep {sweep.name} has no metric: set sweeps.{sweep.name}.metric to rank its trials")
    top = sweep.best()
    if top is None:
        raise CheckFailed(f"sweep {sweep.name}: no trial is done with a value for {metric} yet")
    row = {
        "trial": f"{sweep.name}-{top.number}",
        "trial_id": top.trial_id,
        "run_id": top.run_id,
        "metric": metric,
        "value": top.value,
        "direction": sweep.spec.get("direction"),
        **{f"params.{k}": v for k, v in top.params.items()},
    }
    if args.format == "table":
        for key, value in row.items():
            print(f"{display(key)}: {display(output.cell_text(value))}")
        return 0
    output.write([row], list(row), args.format, sys.stdout)
    return 0


# ------------------------------------------------------------------ logs
def logs(args: argparse.Namespace) -> int:
    from mlci_tui.sweep.runner import log_path

    repo = _repo()
    state = queue.QueueState(repo)
    sweep, trial = queue.find_trial(state.sweeps, args.trial)
    path = log_path(repo, trial.trial_id)
    if not path.exists():
        print(
            f"mlci: the full log of {display(sweep.name)}-{trial.number} is on the machine that ran it "
            f"({display(trial.worker or 'not started')}); last stderr recorded in the ledger:",
            file=sys.stderr,
        )
        sys.stdout.write(display(trial.stderr_tail or "", multiline=True) + "\n")
        return 0
    offset = _print_from(path, 0)
    if not args.follow:
        return 0
    lease = queue.lease_path(repo, sweep.sweep_id, trial.trial_id)
    idle = 0.0
    while True:
        time.sleep(0.2)
        new = _print_from(path, offset)
        idle = 0.0 if new != offset else idle + 0.2
        offset = new
        if not lease.exists() and idle >= 0.6:
            state.refresh()
            trial = state.sweeps[sweep.sweep_id].trials[trial.trial_id]
            if trial.state != "running":
                return 0


def _print_from(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    if data:
        sys.stdout.write(display(data.decode("utf-8", "replace"), multiline=True))
        sys.stdout.flush()
    return offset + len(data)


# ------------------------------------------------------------------ cancel / retry
def cancel_sweep(repo: Repo, sweep_ref: str) -> tuple[Sweep, int]:
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


def cancel(args: argparse.Namespace) -> int:
    sweep, count = cancel_sweep(_repo(), args.name)
    running = sweep.counts()["running"]
    print(
        f"sweep {display(sweep.name)}: {count} queued trial(s) cancelled"
        + (f"; {running} running trial(s) told to stop" if running else "")
    )
    return 0


def retry_sweep(repo: Repo, sweep_ref: str, *, running: bool = False) -> tuple[Sweep, int]:
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


def retry(args: argparse.Namespace) -> int:
    sweep, count = retry_sweep(_repo(), args.name, running=args.running)
    print(f"sweep {display(sweep.name)}: {count} trial(s) queued again; run `mlci sweep start {display(sweep.name)}`")
    return 0


# ------------------------------------------------------------------ CI: matrix and work
def matrix(args: argparse.Namespace) -> int:
    repo = _repo()
    sweep = queue.QueueState(repo).find(args.name)
    pending = [t for t in sweep.ordered() if t.state == "queued"]
    if args.limit:
        pending = pending[: args.limit]
    include = [{"trial": t.trial_id, "name": f"{sweep.name}-{t.number}"} for t in pending]
    print(json.dumps({"include": include}, ensure_ascii=True, separators=(",", ":")))
    return 0


def work(args: argparse.Namespace) -> int:
    """Run one trial here (a CI job) and push its result to the ledger remote."""
    from mlci_tui import config as config_mod
    from mlci_tui.ledger import sync
    from mlci_tui.sweep.runner import TrialJob, append_outcome, run_trial

    repo = _repo()
    remote = args.remote or config_mod.load(repo.root).remote
    push = not args.no_push
    if push:
        sync.pull(repo, remote)
    state = queue.QueueState(repo)
    sweep, trial = queue.find_trial(state.sweeps, args.trial)
    if trial.state == "done":
        print(f"trial {display(sweep.name)}-{trial.number} is already done (run {trial.run_id}); nothing to do")
        return 0
    if trial.state == "cancelled":
        print(f"trial {display(sweep.name)}-{trial.number} was cancelled; nothing to do")
        return 0
    _ensure_base(repo, sweep, remote if push else None)
    job = TrialJob.of(sweep, trial)
    worker = events.worker_name(os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_JOB_ID") or os.getpid())
    store = LedgerStore(repo)
    store.append([events.trial_event(sweep.sweep_id, trial.trial_id, "started", attempt=job.attempt, worker=worker)])
    _say(f"trial {sweep.name}-{trial.number} started: {_params_text(job.params)}")
    outcome = run_trial(repo, job, worker=worker)
    append_outcome(repo, outcome)
    _say(f"trial {sweep.name}-{trial.number}: {outcome.message}")
    if push:
        result = sync.push(repo, remote)
        for notice in result.notices:
            _say(notice)
    return 0 if outcome.state == "done" else 1


def _ensure_base(repo: Repo, sweep: Sweep, remote: str | None) -> None:
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
