"""CI sweeps at scale: 30 trial jobs finishing together lose no result, and tpe runs in waves.

Each job is what the sweep workflow runs: a fresh depth-1 clone of a bare upstream, then
`mlci sweep work --trial ID` (pull, run, push). The 30 run at once; then the workflow's
collect job (`mlci sweep collect`) folds the results that lost the race for the ledger ref.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import git, run_mlci
from sweep_helpers import ok, status_json, sweep_repo, trial_runs
from test_ci_jobs import Api, _serve, checkout, run_job

TOKEN = "ghp_" + "WaveDispatchTokenNeverShown" + "w" * 9


def _work_all(upstream: Path, trials: list[str], prefix: str) -> list[subprocess.CompletedProcess[str]]:
    """One depth-1 checkout per trial, then every `sweep work` started at once."""
    clones = [checkout(upstream, f"{prefix}-{i}", "main") for i in range(len(trials))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mlci_tui", "sweep", "work", "--trial", tid],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MLCI_NO_HOOKS": "1"},
        )
        for clone, tid in zip(clones, trials)
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


def _matrix(root: Path, name: str) -> list[str]:
    ok(run_mlci(root, "ledger", "pull"))
    return [j["trial"] for j in json.loads(ok(run_mlci(root, "sweep", "matrix", name)).stdout)["include"]]


def test_thirty_concurrent_trial_jobs_all_reach_the_upstream_ledger(
    upstream: Path, clone_of: Callable[..., Path]
) -> None:
    dev = clone_of("dev")
    sweep_repo(dev, "  wide:\n    params:\n      lr: {range: [1, 31, 1]}\n    metric: acc\n    executor: ci\n")
    git(dev, "push", "-q", "origin", "main")
    ok(run_mlci(dev, "sweep", "create", "wide"))
    ok(run_mlci(dev, "ledger", "push"))
    trials = _matrix(dev, "wide")
    assert len(trials) == 30

    began = time.monotonic()
    results = _work_all(upstream, trials, "job")
    for res in results:
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr
    # every result is on the upstream: in the ledger, or in the job's own incoming ref
    incoming = git(upstream, "for-each-ref", "--format=%(refname)", "refs/mlci/incoming/").split()
    view = clone_of("view")
    landed = sum(1 for r in status_json_after_pull(view, "wide") if r["state"] == "done")
    assert landed + len(incoming) >= 30, (landed, incoming)

    # the workflow's collect job folds what lost the race
    collector = checkout(upstream, "collect", "main")
    collected = ok(run_mlci(collector, "sweep", "collect", "wide", env={"MLCI_NO_HOOKS": "1"}))
    assert f"{len(incoming)} trial result(s) collected" in collected.stdout
    elapsed = time.monotonic() - began
    print(f"30 concurrent trial jobs: all results in the upstream ledger after {elapsed:.1f} s")

    check = clone_of("check")
    rows = status_json_after_pull(check, "wide")
    assert [r["state"] for r in rows] == ["done"] * 30
    runs = trial_runs(check)
    assert len(runs) == 30 and len({r[1] for r in runs}) == 30
    assert git(upstream, "for-each-ref", "refs/mlci/incoming/").strip() == ""  # folded refs are deleted


def status_json_after_pull(root: Path, name: str) -> list[dict[str, object]]:
    ok(run_mlci(root, "ledger", "pull"))
    return status_json(root, name)


@pytest.fixture
def api() -> Iterator[Api]:
    host = Api()
    host.routes = {("POST", r"/repos/acme/model/actions/workflows/mlci-sweep\.yml/dispatches"): (204, None)}
    yield from _serve(host)


def test_a_tpe_sweep_on_ci_reaches_its_budget_in_waves(
    upstream: Path, clone_of: Callable[..., Path], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("optuna")
    for key in list(os.environ):
        if key.startswith(("GITHUB_", "CI_", "GITLAB_")):
            monkeypatch.delenv(key)
    dev = clone_of("dev")
    sweep_repo(
        dev,
        "  t:\n    params:\n      lr: {uniform: [0.1, 1.0]}\n    method: tpe\n    max_trials: 6\n"
        "    parallel: 2\n    seed: 5\n    metric: acc\n    executor: ci\n",
    )
    git(dev, "push", "-q", "origin", "main")
    ok(run_mlci(dev, "sweep", "create", "t"))
    ok(run_mlci(dev, "ledger", "push"))
    ci = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_REPOSITORY": "acme/model",
        "GITHUB_API_URL": api.url,
        "GITHUB_REF_NAME": "main",
        "GITHUB_TOKEN": TOKEN,
        "MLCI_SWEEP": "t",
        "MLCI_NO_HOOKS": "1",
    }
    waves = 0
    while True:
        trials = _matrix(checkout(upstream, f"matrix-{waves}", "main"), "t")
        if not trials:
            break
        waves += 1
        assert len(trials) == 2  # `parallel` per wave
        for res in _work_all(upstream, trials, f"wave{waves}"):
            assert res.returncode == 0, res.stderr
        job = run_job("sweep-collect", checkout(upstream, f"collect-{waves}", "main"), ci)
        assert job.failed_step is None, job.results
        assert waves < 5, "the waves do not end"
    assert waves == 3
    # each collect that queued a wave dispatched the workflow again; the last one did not
    dispatches = [r for r in api.requests if r["path"].endswith("/dispatches")]
    assert len(dispatches) == 2 and all(r["body"] == {"ref": "main", "inputs": {"sweep": "t"}} for r in dispatches)
    assert all(TOKEN not in out for _s, _c, out in job.results)
    rows = status_json_after_pull(clone_of("check"), "t")
    assert [r["state"] for r in rows] == ["done"] * 6
    assert len({r["lr"] for r in rows}) == 6
