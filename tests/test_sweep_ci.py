"""The CI path: `sweep matrix` lists the queued trials, `sweep work --trial` runs each in a fresh
clone (as a CI job would) and pushes its result; every result ends up in the upstream ledger."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from conftest import git, run_mlci
from sweep_helpers import ok, status_json, sweep_repo, trial_runs


def test_matrix_then_work_in_fresh_clones_fills_the_upstream_ledger(
    upstream: Path, clone_of: Callable[..., Path]
) -> None:
    dev = clone_of("dev")
    sweep_repo(dev, "  ci-search:\n    params:\n      lr: [0.1, 0.2, 0.3]\n    metric: acc\n    executor: ci\n")
    git(dev, "push", "-q", "origin", "main")
    ok(run_mlci(dev, "sweep", "create", "ci-search"))
    ok(run_mlci(dev, "ledger", "push"))

    matrix = json.loads(ok(run_mlci(dev, "sweep", "matrix", "ci-search")).stdout)
    jobs = matrix["include"]
    assert [j["name"] for j in jobs] == ["ci-search-0", "ci-search-1", "ci-search-2"]

    for n, job in enumerate(jobs):
        ci = clone_of(f"ci-{n}", "--depth", "1")
        proc = ok(run_mlci(ci, "sweep", "work", "--trial", job["trial"]))
        assert "done" in proc.stderr
        assert not git(ci, "status", "--porcelain").strip()  # the CI checkout is untouched too

    # a trial already done is not run again
    again = clone_of("ci-again")
    proc = ok(run_mlci(again, "sweep", "work", "--trial", jobs[0]["trial"]))
    assert "already done" in proc.stdout

    check = clone_of("check")
    ok(run_mlci(check, "ledger", "pull"))
    rows = status_json(check, "ci-search")
    assert [r["state"] for r in rows] == ["done"] * 3
    assert sorted(r["acc"] for r in rows) == [0.21, 0.41, 0.61]
    assert len(trial_runs(check)) == 3
    assert json.loads(ok(run_mlci(check, "sweep", "matrix", "ci-search")).stdout) == {"include": []}
    # the developer's clone sees them after a pull
    ok(run_mlci(dev, "ledger", "pull"))
    assert [r["state"] for r in status_json(dev, "ci-search")] == ["done"] * 3
    # the full log stayed on the CI machine; here, where it ran is said
    logs = ok(run_mlci(dev, "sweep", "logs", "ci-search-1"))
    assert "is on the machine that ran it" in logs.stderr


def test_start_with_the_ci_executor_needs_the_ci_dispatcher(repo: Path) -> None:
    sweep_repo(repo, "  c:\n    params:\n      lr: [0.1]\n")
    ok(run_mlci(repo, "sweep", "create", "c"))
    proc = run_mlci(repo, "sweep", "start", "c", "--executor", "ci")
    if importlib.util.find_spec("mlci_tui.ci.dispatch") is None:
        assert proc.returncode == 2
        assert "mlci ci init --sweeps" in proc.stderr and "Traceback" not in proc.stderr
    else:
        assert "Traceback" not in proc.stderr
