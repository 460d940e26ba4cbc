"""The Dask executor against a real LocalCluster: an existing scheduler, and one started for the
sweep with a worker process killed mid-trial."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import git, run_mlci
from sweep_helpers import ok, start_background, status_json, sweep_repo, trial_runs, wait_for, worktrees

distributed = pytest.importorskip("distributed")


def test_trials_run_on_an_existing_dask_scheduler(repo: Path) -> None:
    sweep_repo(repo, "  d:\n    params:\n      lr: [0.1, 0.2, 0.3, 0.4]\n    metric: acc\n    executor: dask\n")
    ok(run_mlci(repo, "sweep", "create", "d"))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        proc = ok(run_mlci(repo, "sweep", "start", "d", "--scheduler", cluster.scheduler_address))
    assert "scheduler tcp://" in proc.stderr
    assert "2 trial(s) at a time" in proc.stderr  # -j defaults to the cluster's workers
    rows = status_json(repo, "d")
    assert [r["state"] for r in rows] == ["done"] * 4
    assert all(str(r["acc"]) for r in rows) and sorted(r["acc"] for r in rows) == [0.21, 0.41, 0.61, 0.81]
    assert len(trial_runs(repo)) == 4
    assert worktrees(repo) == [f"worktree {repo}"]


def test_a_dask_worker_killed_mid_trial_is_requeued_and_recorded_once(repo: Path) -> None:
    sweep_repo(repo, "  dk:\n    params:\n      lr: [0.1, 0.2]\n      sleep: [2]\n    metric: acc\n    retries: 1\n")
    ok(run_mlci(repo, "sweep", "create", "dk"))
    coordinator = start_background(repo, "dk", "--executor", "dask", "-j", "2")

    def marker() -> dict[str, int] | None:
        rows = status_json(repo, "dk")
        first = next(r for r in rows if r["trial"] == "dk-0")
        path = repo / ".git" / "mlci" / "queue"
        for m in path.glob(f"*/{first['trial_id']}.dask"):
            try:
                return json.loads(m.read_text())
            except ValueError:
                return None
        return None

    running = wait_for(marker, timeout=90, what="trial dk-0 running on a dask worker")
    os.kill(running["pid"], signal.SIGKILL)
    out, err = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 0, err
    assert "dask worker lost" in err
    rows = {r["trial"]: r for r in status_json(repo, "dk")}
    assert rows["dk-0"]["state"] == "done" and rows["dk-1"]["state"] == "done"
    assert (rows["dk-0"]["attempts"], rows["dk-0"]["retries"]) == (2, 1)
    assert "lost" in (json.dumps(rows["dk-0"]) + err)
    runs = trial_runs(repo)
    assert sorted(r[1] for r in runs) == sorted(r["trial_id"] for r in rows.values())
    assert worktrees(repo) == [f"worktree {repo}"]


def test_a_worker_on_another_machine_runs_from_a_clone_of_the_remote(
    upstream: Path, clone_of: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Dask worker does when it cannot see the submitting repository: clone the remote,
    fetch the base commit, run there, and return the records (the coordinator appends them)."""
    from mlci_tui.gitio import Repo
    from mlci_tui.sweep.dask_task import run_trial_task
    from mlci_tui.sweep.queue import QueueState
    from mlci_tui.sweep.runner import TrialJob

    dev = clone_of("dev")
    sweep_repo(dev, "  r:\n    params:\n      lr: [0.4]\n    metric: acc\n")
    git(dev, "push", "-q", "origin", "main")
    ok(run_mlci(dev, "sweep", "create", "r"))
    sweep = QueueState(Repo.find(dev)).find("r")
    job = TrialJob.of(sweep, sweep.ordered()[0])
    monkeypatch.setenv("MLCI_DASK_WORKDIR", str(tmp_path / "worker-cache"))
    result = run_trial_task(job.to_json(), {"repo": str(tmp_path / "not-here"), "remote_url": str(upstream)})
    assert result["state"] == "done", result
    run, done = result["records"]
    assert (run["kind"], run["trial_id"], run["metrics"]) == ("trial", job.trial_id, {"metrics.json": {"acc": 0.81}})
    assert done["state"] == "done" and done["value"] == 0.81
    clones = list((tmp_path / "worker-cache").iterdir())
    assert any((c / ".git").is_dir() for c in clones)
    assert not git(dev, "status", "--porcelain").strip()
