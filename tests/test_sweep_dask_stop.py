"""Stopping trials on Dask: a killed worker leaves no orphan command, and `sweep cancel` stops running
tasks (a real LocalCluster started by `sweep start`, the process table checked)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import run_mlci
from sweep_helpers import (
    ok,
    processes_in_group,
    processes_with_env,
    start_background,
    status_json,
    sweep_id_of,
    sweep_repo,
    wait_for,
    worktrees,
)

pytest.importorskip("distributed")


def _marker(root: Path, sid: str, attempt: int) -> dict[str, Any] | None:
    for path in (root / ".git" / "mlci" / "queue" / sid).glob("*.dask"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("attempt") == attempt and data.get("child_pid"):
            return data
    return None


def test_a_killed_dask_worker_leaves_no_orphan_and_cancel_stops_running_tasks(repo: Path) -> None:
    sweep_repo(repo, "  long:\n    params:\n      lr: [0.1]\n      sleep: [60]\n    metric: acc\n    retries: 1\n")
    ok(run_mlci(repo, "sweep", "create", "long"))
    sid = sweep_id_of(repo, "long")
    coordinator = start_background(repo, "long", "--executor", "dask", "-j", "1")

    first = wait_for(lambda: _marker(repo, sid, 1), timeout=90, what="attempt 1 running on a dask worker")
    os.kill(first["pid"], signal.SIGKILL)  # the Dask worker process, mid-trial
    # the command's group (its supervisor, the shell, python train.py) goes with it
    wait_for(lambda: not processes_in_group(first["child_pid"]), timeout=10, what="the lost attempt's processes gone")

    second = wait_for(lambda: _marker(repo, sid, 2), timeout=90, what="attempt 2 running after the loss")
    assert processes_in_group(second["child_pid"])
    cancelled = ok(run_mlci(repo, "sweep", "cancel", "long"))
    assert "told to stop" in cancelled.stdout
    _out, err = coordinator.communicate(timeout=60)  # long before the 60 s sleep ends
    assert coordinator.returncode == 0, err
    (row,) = status_json(repo, "long")
    assert (row["state"], row["attempts"], row["reason"]) == ("cancelled", 2, "cancelled while running")
    assert processes_with_env("MLCI_SWEEP_ID", sid) == []
    assert worktrees(repo) == [f"worktree {repo}"]
