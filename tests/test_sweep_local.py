"""Sweeps on the local executor, end to end: real `mlci` processes, real git worktrees, real kills."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from conftest import git, run_mlci, write
from sweep_helpers import leases, ok, start_background, status_json, sweep_repo, trial_runs, wait_for, worktrees


def test_twenty_trials_on_two_workers_end_with_twenty_done_runs(repo: Path) -> None:
    sweep_repo(
        repo,
        "  lr-search:\n    params:\n      lr: {range: [0.1, 1.1, 0.1]}\n      epochs: [1, 2]\n"
        "    metric: acc\n    direction: max\n    parallel: 2\n",
    )
    # the user's working tree is dirty (a staged change, an unstaged one, an untracked file): never touched
    write(repo, {"params.yaml": "# training params\nlr: 0.9  # mine\nepochs: 1\nsleep: 0\n"})
    git(repo, "add", "params.yaml")
    write(repo, {"params.yaml": "# training params\nlr: 0.7  # unstaged\nepochs: 1\nsleep: 0\n", "notes.txt": "x\n"})
    before = (git(repo, "status", "--porcelain"), git(repo, "diff", "--cached"), (repo / "params.yaml").read_text())
    head = git(repo, "rev-parse", "HEAD").strip()

    created = ok(run_mlci(repo, "sweep", "create", "lr-search"))
    assert "20 trial(s) queued" in created.stdout
    ok(run_mlci(repo, "sweep", "start", "lr-search", "-j", "2"), 0)

    rows = status_json(repo, "lr-search")
    assert len(rows) == 20 and {r["state"] for r in rows} == {"done"}
    lrs = sorted({r["lr"] for r in rows})
    assert lrs == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # exact: no 0.30000000000000004
    runs = trial_runs(repo)
    assert len(runs) == 20 and len({r[1] for r in runs}) == 20
    assert {r[1] for r in runs} == {r["trial_id"] for r in rows}
    # each trial's run holds the params it ran with and its metric
    best = json.loads(ok(run_mlci(repo, "sweep", "best", "lr-search", "--json")).stdout)[0]
    assert (best["value"], best["params.lr"], best["params.epochs"]) == (2.02, 1.0, 2)
    shown = json.loads(ok(run_mlci(repo, "show", best["run_id"], "--json")).stdout)
    assert json.dumps(shown).count("trial") >= 1

    after = (git(repo, "status", "--porcelain"), git(repo, "diff", "--cached"), (repo / "params.yaml").read_text())
    assert after == before and git(repo, "rev-parse", "HEAD").strip() == head
    assert worktrees(repo) == [f"worktree {repo}"]
    assert not leases(repo)
    # the SQL view folds the events the same way
    by_state = json.loads(
        ok(run_mlci(repo, "sql", "SELECT state, count(*) AS n FROM trials GROUP BY state", "--json")).stdout
    )
    assert by_state == [{"state": "done", "n": 20}]
    # the full log of a trial stays here
    log = ok(run_mlci(repo, "sweep", "logs", "lr-search-3"))
    assert "== mlci trial lr-search-3 attempt 1" in log.stdout
    followed = ok(run_mlci(repo, "sweep", "logs", "lr-search-3", "-f", timeout=30))  # ends: the trial is done
    assert followed.stdout == log.stdout


def test_a_worker_killed_mid_trial_is_rerun_and_recorded_once(repo: Path) -> None:
    sweep_repo(
        repo,
        "  k:\n    params:\n      lr: [0.1, 0.2, 0.3]\n      sleep: [1.5]\n    metric: acc\n    retries: 1\n",
    )
    ok(run_mlci(repo, "sweep", "create", "k"))
    coordinator = start_background(repo, "k", "-j", "2")

    def running_worker() -> dict[str, object] | None:
        for lease in leases(repo):
            if lease.get("child_pid") and lease["job"]["number"] == 0:
                return lease
        return None

    victim = wait_for(running_worker, what="trial 0 to be running")
    os.kill(int(victim["pid"]), signal.SIGKILL)
    out, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, err
    assert "is gone" in err  # the lost lease was noticed

    rows = {r["trial"]: r for r in status_json(repo, "k")}
    assert {r["state"] for r in rows.values()} == {"done"}
    assert (rows["k-0"]["attempts"], rows["k-0"]["retries"]) == (2, 1)
    runs = trial_runs(repo)
    assert len(runs) == 3 and sorted(r[1] for r in runs) == sorted(r["trial_id"] for r in rows.values())
    done = json.loads(
        ok(
            run_mlci(
                repo,
                "sql",
                "SELECT count(*) AS n FROM events WHERE type = 'trial' AND body->>'state' = 'done'",
                "--json",
            )
        ).stdout
    )
    assert done == [{"n": 3}]
    assert worktrees(repo) == [f"worktree {repo}"]  # the killed worker's worktree was cleaned up


def test_a_failing_command_records_a_failed_trial_with_its_stderr(repo: Path) -> None:
    fail = "python -c \"import sys; sys.stderr.write('boom: lr too high\\n' * 2000); sys.exit(3)\""
    sweep_repo(repo, "  f:\n    params:\n      lr: [0.1]\n    retries: 1\n", command=fail)
    ok(run_mlci(repo, "sweep", "create", "f"))
    ok(run_mlci(repo, "sweep", "start", "f"), 1)
    (row,) = status_json(repo, "f")
    assert (row["state"], row["exit_code"], row["attempts"], row["retries"]) == ("failed", 3, 2, 1)
    assert row["reason"] == "exit code 3"
    tail = json.loads(ok(run_mlci(repo, "sql", "SELECT stderr_tail FROM trials", "--json")).stdout)[0]["stderr_tail"]
    assert tail.endswith("boom: lr too high\n") and 4000 <= len(tail.encode()) <= 4096
    assert trial_runs(repo) == []
    # retry queues it again (a fresh budget)
    ok(run_mlci(repo, "sweep", "retry", "f"))
    assert status_json(repo, "f")[0]["state"] == "queued"
    # a sweep with queued trials is not silently replaced by a new one of the same name
    again = run_mlci(repo, "sweep", "create", "f")
    assert again.returncode == 2 and "still has queued or running trials" in again.stderr


def test_cancel_stops_pending_trials(repo: Path) -> None:
    # each trial sleeps far longer than the test: the running one can only end by being stopped
    # (a 1.5 s sleep could finish under load before the cancel landed: this test was flaky)
    sweep_repo(repo, "  c:\n    params:\n      lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]\n      sleep: [60]\n")
    ok(run_mlci(repo, "sweep", "create", "c"))
    coordinator = start_background(repo, "c", "-j", "1")
    wait_for(lambda: any(lease.get("child_pid") for lease in leases(repo)), what="a trial running")
    cancelled = ok(run_mlci(repo, "sweep", "cancel", "c"))
    assert "5 queued trial(s) cancelled; 1 running trial(s) told to stop" in cancelled.stdout
    coordinator.communicate(timeout=60)
    rows = status_json(repo, "c")
    assert [r["state"] for r in rows] == ["cancelled"] * 6
    assert [r["reason"] for r in rows].count("cancelled while running") == 1
    assert trial_runs(repo) == []
    # nothing more runs after a cancel
    ok(run_mlci(repo, "sweep", "start", "c"), 0)
    assert [r["state"] for r in status_json(repo, "c")] == ["cancelled"] * 6


def test_workspace_sweep_runs_uncommitted_changes_without_touching_them(repo: Path) -> None:
    sweep_repo(repo, "  w:\n    params:\n      lr: [0.1]\n    metric: acc\n")
    write(repo, {"params.yaml": "lr: 0.5\nepochs: 7\nsleep: 0\n"})  # uncommitted: epochs 7
    ok(run_mlci(repo, "sweep", "create", "w", "--workspace"))
    ok(run_mlci(repo, "sweep", "start", "w"))
    (row,) = status_json(repo, "w")
    assert row["acc"] == 0.27  # 0.1 * 2 + 7 / 100: the snapshot's epochs
    assert (repo / "params.yaml").read_text() == "lr: 0.5\nepochs: 7\nsleep: 0\n"
    assert git(repo, "for-each-ref", "refs/mlci/snapshots/").strip()


def test_datasets_are_placed_from_the_data_cache(repo: Path) -> None:
    count = "import json; n = len(open('data/points.csv').read().splitlines()); json.dump({'acc': n}, open('metrics.json', 'w'))"
    sweep_repo(repo, "  data:\n    params:\n      lr: [0.1]\n    metric: acc\n", command=f'python -c "{count}"')
    write(repo, {"data/points.csv": "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(41))})
    ok(run_mlci(repo, "data", "add", "data/points.csv"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "data as a pointer")
    assert "data/points.csv\n" not in git(repo, "ls-files")  # only the pointer is in git
    ok(run_mlci(repo, "sweep", "create", "data"))
    ok(run_mlci(repo, "sweep", "start", "data"))
    (row,) = status_json(repo, "data")
    assert (row["state"], row["acc"]) == ("done", 42)


def test_tpe_queues_as_results_arrive_and_timeouts_fail_a_trial(repo: Path) -> None:
    sweep_repo(
        repo,
        "  t:\n    params:\n      lr: {uniform: [0.1, 1.0]}\n      epochs: {int: [1, 3]}\n"
        "    method: tpe\n    max_trials: 4\n    parallel: 2\n    seed: 3\n    metric: acc\n"
        "  slow:\n    params:\n      sleep: [30]\n      lr: [0.1]\n    timeout: 1\n    retries: 0\n",
    )
    created = ok(run_mlci(repo, "sweep", "create", "t"))
    assert "2 trial(s) queued, method tpe, seed 3" in created.stdout  # `parallel` at a time
    ok(run_mlci(repo, "sweep", "start", "t", "-j", "2"))
    rows = status_json(repo, "t")
    assert len(rows) == 4 and {r["state"] for r in rows} == {"done"}
    assert all(0.1 <= r["lr"] <= 1.0 and r["epochs"] in (1, 2, 3) for r in rows)

    ok(run_mlci(repo, "sweep", "create", "slow"))
    ok(run_mlci(repo, "sweep", "start", "slow"), 1)
    (row,) = status_json(repo, "slow")
    assert (row["state"], row["reason"]) == ("failed", "timed out after 1 s")
    assert worktrees(repo) == [f"worktree {repo}"]
