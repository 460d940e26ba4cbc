"""The task a Dask worker runs for one trial (no Dask import here: workers import it by name).

On the machine that submitted the sweep (a LocalCluster, or a worker sharing the
filesystem) the trial runs in a worktree of the same repository. Elsewhere the worker
keeps a clone of the repository's remote under `MLCI_DASK_WORKDIR` (default
`~/.cache/mlci/dask`), fetches the base commit into it, and runs there. Either way the
task returns the trial's records: the coordinator appends them to its ledger, which stays
the one source of truth (a worker needs no write access to the ledger remote).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from mlci_tui.errors import MlciError
from mlci_tui.file_lock import exclusive
from mlci_tui.gitio import Repo, git
from mlci_tui.sweep import queue
from mlci_tui.sweep.runner import Stop, TrialJob, remove_stale_worktrees, run_trial

HOOKLESS = {"MLCI_NO_HOOKS": "1", "GIT_TERMINAL_PROMPT": "0"}


def marker_path(repo: Repo, sweep_id: str, tid: str) -> Path:
    """Where the process running a trial on Dask says who it is (pid, host)."""
    return queue.queue_dir(repo, sweep_id) / f"{tid}.dask"


def _local_repo(source: dict[str, Any], base: str) -> Repo | None:
    path = source.get("repo")
    if not path or not os.path.isdir(path):
        return None
    try:
        repo = Repo.find(path)
    except MlciError:
        return None
    return repo if repo.commit_of(base) else None


def _clone(source: dict[str, Any], job: TrialJob) -> Repo:
    url = source.get("remote_url")
    if not url:
        raise MlciError("this Dask worker cannot see the repository and the sweep has no remote to clone from")
    root = Path(os.environ.get("MLCI_DASK_WORKDIR") or Path.home() / ".cache" / "mlci" / "dask")
    target = root / hashlib.sha256(url.encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root / f"{target.name}.lock"):
        if not (target / ".git").exists():
            git(["clone", "--quiet", "--no-checkout", url, str(target)], root, env=HOOKLESS)
        repo = Repo.find(target)
        if not repo.commit_of(job.base):
            wanted = job.snapshot_ref or job.base
            git(["fetch", "--quiet", "--no-tags", "origin", wanted], target, env=HOOKLESS, check=False)
        if not repo.commit_of(job.base):
            raise MlciError(f"base commit {job.base[:10]} could not be fetched from {url}")
    return repo


def _stop_check(sweep_id: str) -> Stop | None:
    """'cancelled' once the coordinator sets the sweep's stop Event (cancel, Ctrl-C); None outside Dask."""
    try:
        from distributed import Event, get_worker

        get_worker()
    except (ImportError, ValueError):
        return None
    event = Event(f"mlci-stop-{sweep_id}")  # dask_executor.stop_event_name

    def check() -> str | None:
        try:
            return "cancelled" if event.is_set() else None
        except Exception:  # the scheduler is unreachable: keep running, the worker's loss is handled elsewhere
            return None

    return check


def run_trial_task(job_data: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """Run one trial on this worker; returns {"state", "records", "message", "worker"}."""
    job = TrialJob.from_json(job_data)
    repo = _local_repo(source, job.base) or _clone(source, job)
    remove_stale_worktrees(repo)  # left by a worker killed here before
    worker = f"dask:{socket.gethostname()}:{os.getpid()}"
    marker = marker_path(repo, job.sweep_id, job.trial_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "attempt": job.attempt}
    marker.write_text(json.dumps(info))

    def started(pid: int) -> None:
        marker.write_text(json.dumps({**info, "child_pid": pid}))

    try:
        outcome = run_trial(repo, job, worker=worker, on_start=started, stop=_stop_check(job.sweep_id))
    finally:
        marker.unlink(missing_ok=True)
    return {"state": outcome.state, "records": outcome.records, "message": outcome.message, "worker": worker}
