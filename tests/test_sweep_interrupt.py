"""Ctrl-C and vanished coordinators: `sweep start` again always finishes the sweep, each trial done once,
with no command left running and no worktree left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import run_mlci
from sweep_helpers import (
    leases,
    ok,
    processes_with_env,
    start_background,
    status_json,
    sweep_id_of,
    sweep_repo,
    trial_runs,
    wait_for,
    worktrees,
)

EIGHT = "  i:\n    params:\n      lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]\n      sleep: [0.8]\n    metric: acc\n    retries: 0\n"


def _done_events(root: Path) -> int:
    sql = "SELECT count(*) AS n FROM events WHERE type = 'trial' AND body->>'state' = 'done'"
    return json.loads(ok(run_mlci(root, "sql", sql, "--json")).stdout)[0]["n"]


def test_sigint_requeues_in_flight_trials_and_start_again_runs_each_once(repo: Path) -> None:
    sweep_repo(repo, EIGHT)
    ok(run_mlci(repo, "sweep", "create", "i"))
    sid = sweep_id_of(repo, "i")
    coordinator = start_background(repo, "i", "-j", "2")
    wait_for(lambda: sum(1 for lease in leases(repo) if lease.get("child_pid")) == 2, what="two trials running")
    coordinator.send_signal(signal.SIGINT)
    _out, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 130, err
    assert "Traceback" not in err and "queued again" in err

    rows = status_json(repo, "i")
    assert "running" not in {r["state"] for r in rows}
    interrupted = [r for r in rows if r["reason"] == "interrupted (Ctrl-C)"]
    assert len(interrupted) == 2 and {r["state"] for r in interrupted} == {"queued"}
    assert processes_with_env("MLCI_SWEEP_ID", sid) == []  # the commands were stopped, not orphaned
    assert worktrees(repo) == [f"worktree {repo}"] and not leases(repo)

    # retries: 0, yet the interrupted attempts do not count against it: start again finishes the sweep
    ok(run_mlci(repo, "sweep", "start", "i", "-j", "2", timeout=120))
    rows = status_json(repo, "i")
    assert [r["state"] for r in rows] == ["done"] * 8
    assert _done_events(repo) == 8
    runs = trial_runs(repo)
    assert len(runs) == 8 and len({r[1] for r in runs}) == 8


def test_a_coordinator_killed_with_its_workers_is_recovered_by_the_next_start(repo: Path) -> None:
    """The whole `sweep start` process group SIGKILLed and its leases lost: the trials it recorded
    running name a pid that is gone, so the next start requeues them (nothing else would)."""
    sweep_repo(repo, EIGHT)
    ok(run_mlci(repo, "sweep", "create", "i"))
    sid = sweep_id_of(repo, "i")
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "mlci_tui", "sweep", "start", "i", "-j", "2"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: sum(1 for lease in leases(repo) if lease.get("child_pid")) == 2, what="two trials running")
    os.killpg(coordinator.pid, signal.SIGKILL)
    coordinator.wait(timeout=30)
    # the trials' supervisors saw their workers go and ended the commands
    wait_for(lambda: not processes_with_env("MLCI_SWEEP_ID", sid), timeout=15, what="no trial command left")
    shutil.rmtree(repo / ".git" / "mlci" / "queue")  # as if the leases were lost too
    stuck = [r for r in status_json(repo, "i") if r["state"] == "running"]
    assert len(stuck) == 2

    status = ok(run_mlci(repo, "sweep", "status", "i"))
    assert "stalled:" in status.stdout and "no lease on this machine" in status.stdout

    again = ok(run_mlci(repo, "sweep", "start", "i", "-j", "2", timeout=120))
    assert "which is gone; queued again" in again.stderr
    assert "removed the worktree" in again.stderr  # the killed workers' worktrees
    assert [r["state"] for r in status_json(repo, "i")] == ["done"] * 8
    assert _done_events(repo) == 8
    assert worktrees(repo) == [f"worktree {repo}"]


def test_a_ctrl_c_inside_a_queue_refresh_leaves_it_reading_again(repo: Path, monkeypatch: Any) -> None:
    """A Ctrl-C that lands while the queue reads the moved ledger (the coordinator polls it in a
    loop) must not leave the stale fold looking current: the next refresh reads again. It used to
    record the ref files' signature first, so the interrupt's refresh saw no change and found the
    running trials still queued (and requeued none)."""
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.store import LedgerStore
    from mlci_tui.sweep import events
    from mlci_tui.sweep.queue import QueueState

    sweep_repo(repo, EIGHT)
    ok(run_mlci(repo, "sweep", "create", "i"))
    state = QueueState(Repo.find(repo))
    sweep = state.find("i")
    first = sweep.ordered()[0]
    assert first.state == "queued"
    LedgerStore(Repo.find(repo)).append([events.started_event(sweep.sweep_id, first.trial_id, attempt=1, worker="t")])

    real_tip = state.store.tip

    def interrupted_tip() -> str | None:
        monkeypatch.setattr(state.store, "tip", real_tip)
        raise KeyboardInterrupt

    monkeypatch.setattr(state.store, "tip", interrupted_tip)
    try:
        state.refresh()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the injected interrupt did not fire")
    assert state.refresh() is True
    assert state.sweeps[sweep.sweep_id].trials[first.trial_id].state == "running"
