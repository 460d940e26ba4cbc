"""Sweeps as CI jobs: `mlci sweep start --executor ci` dispatches the generated workflow through the
code host's API (a local HTTP server implementing GitHub's workflow dispatch and GitLab's
pipeline trigger), then the sweep workflow's jobs run step by step in fresh depth-1
checkouts, as CI would: the matrix job lists the trials, one job per trial runs it, and every
result ends up in the upstream ledger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import commit, git, run_mlci
from test_ci_jobs import Api, _serve, checkout, run_job

TOKEN = "ghp_" + "DispatchTokenNeverShown" + "w" * 13
TRIGGER = "glptt-" + "TriggerTokenNeverShown" + "v" * 8

CONFIG = """\
metrics:
  fields:
    acc: {direction: max}
train:
  command: python train.py
sweeps:
  grid:
    params:
      bias: {values: [0.0, 0.1]}
    method: grid
    metric: acc
    direction: max
"""
TRAIN_PY = """\
import json, yaml
bias = float(yaml.safe_load(open("params.yaml"))["bias"])
json.dump({"acc": round(0.5 + bias, 4)}, open("metrics.json", "w"))
"""


@pytest.fixture
def api() -> Iterator[Api]:
    host = Api()
    host.routes = {
        ("POST", r"/repos/acme/model/actions/workflows/mlci-sweep\.yml/dispatches"): (204, None),
        ("POST", r"/api/v4/projects/42/trigger/pipeline"): (201, {"id": 5, "web_url": "http://h/p/5"}),
        ("POST", r"/api/v4/projects/42/pipeline"): (201, {"id": 6, "web_url": "http://h/p/6"}),
    }
    yield from _serve(host)


@pytest.fixture(autouse=True)
def _no_ci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("GITHUB_", "CI_", "GITLAB_")) or key in ("GH_TOKEN", "GITLAB_CI") or "proxy" in key.lower():
            monkeypatch.delenv(key)


@pytest.fixture
def project(repo: Path, upstream: Path) -> Path:
    """A pushed project with the generated sweep workflow and a queued 2-trial grid sweep (local ledger only)."""
    commit(repo, {"mlci.yaml": CONFIG, "train.py": TRAIN_PY, "params.yaml": "bias: 0.0\n"}, "project")
    assert run_mlci(repo, "ci", "init", "github", "--sweeps").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ci workflows")
    git(repo, "remote", "add", "origin", str(upstream))
    git(repo, "push", "-q", "origin", "main")
    res = run_mlci(repo, "sweep", "create", "grid")
    assert res.returncode == 0, res.stderr
    return repo


def _matrix_job(tmp_path: Path, upstream: Path) -> tuple[dict[str, str], dict[str, str]]:
    """GitHub's sweep-matrix job run locally in a checkout of `upstream`: (its CI environment, its outputs)."""
    ci = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_REPOSITORY": "acme/model",
        "GITHUB_OUTPUT": str(tmp_path / "matrix-output"),
        "MLCI_SWEEP": "grid",
        "MLCI_NO_HOOKS": "1",
    }
    job = run_job("sweep-matrix", checkout(upstream, "ci-matrix", "main"), ci)
    assert job.failed_step is None, job.results
    return ci, dict(line.split("=", 1) for line in (tmp_path / "matrix-output").read_text().splitlines())


def test_sweep_start_dispatches_then_the_jobs_leave_every_result_in_the_upstream_ledger(
    project: Path, upstream: Path, api: Api, tmp_path: Path
) -> None:
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": "acme/model"}
    res = run_mlci(project, "sweep", "start", "grid", "--executor", "ci", env=env)
    assert res.returncode == 0, res.stderr
    assert "dispatched mlci-sweep.yml on acme/model@main for sweep grid" in res.stdout
    assert TOKEN not in res.stdout + res.stderr
    (req,) = api.requests
    assert req["path"] == "/repos/acme/model/actions/workflows/mlci-sweep.yml/dispatches"
    assert req["body"] == {"ref": "main", "inputs": {"sweep": "grid"}}
    assert req["headers"]["authorization"] == f"Bearer {TOKEN}"
    # the queued trials were pushed before the dispatch: the CI jobs find them upstream
    assert git(upstream, "rev-parse", "--verify", "-q", "refs/mlci/ledger").strip()

    # what GitHub then runs: the matrix job ...
    ci, outputs = _matrix_job(tmp_path, upstream)
    assert set(outputs) == {"trials", "runner"}
    trials = json.loads(outputs["trials"])
    assert len(trials) == 2
    assert json.loads(outputs["runner"]) == "ubuntu-latest"  # no resources.runner: the default runner

    # on GitLab the same step writes a child pipeline with one job per trial
    gl_clone = checkout(upstream, "ci-gl-matrix", "main")
    gl_env = {"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "trigger", "MLCI_SWEEP": "grid", "MLCI_NO_HOOKS": "1"}
    job = run_job("sweep-matrix", gl_clone, {**gl_env, "MLCI_INSTALL": "pip install mlci-tui==1.0"})
    assert job.failed_step is None, job.results
    child = yaml.safe_load((gl_clone / "mlci-sweep-trials.yml").read_text())
    assert sorted(v["variables"]["MLCI_TRIAL"] for k, v in child.items() if k.startswith("mlci-trial-")) == sorted(
        trials
    )
    for key, spec in child.items():
        if key.startswith("mlci-trial-"):
            assert spec["script"] == ["pip install mlci-tui==1.0", "mlci ci run ledger-pull", "mlci ci run sweep-trial"]

    # ... and one job per trial, each in its own fresh checkout
    for i, trial in enumerate(trials):
        clone = checkout(upstream, f"ci-trial-{i}", "main")
        job = run_job("sweep-trial", clone, {**ci, "MLCI_TRIAL": trial, "GITHUB_RUN_ID": str(100 + i)})
        assert job.failed_step is None, job.results

    view = tmp_path / "view"
    git(tmp_path, "clone", "-q", str(upstream), str(view))
    assert run_mlci(view, "ledger", "pull").returncode == 0
    res = run_mlci(view, "runs", "--where", "kind = 'trial'", "--json")
    assert res.returncode == 0, res.stderr
    accs = sorted(r["metrics"]["acc"] for r in json.loads(res.stdout))
    assert accs == [0.5, 0.6]
    # nothing left to run: a second matrix is empty, and the workflow skips the trial job on '[]'
    (tmp_path / "matrix-output").unlink()
    job = run_job("sweep-matrix", checkout(upstream, "ci-matrix-2", "main"), ci)
    assert job.failed_step is None
    assert (tmp_path / "matrix-output").read_text().splitlines()[0] == "trials=[]"


def test_gitlab_dispatch_and_failures(project: Path, api: Api) -> None:
    base = {"CI_API_V4_URL": f"{api.url}/api/v4", "CI_PROJECT_ID": "42"}
    res = run_mlci(project, "ci", "dispatch", "grid", "--host", "gitlab", env={**base, "GITLAB_TRIGGER_TOKEN": TRIGGER})
    assert res.returncode == 0, res.stderr
    assert "started a pipeline on 42@main for sweep grid: http://h/p/5" in res.stdout
    req = api.requests[-1]
    assert req["path"] == "/api/v4/projects/42/trigger/pipeline"
    assert req["body"] == {"token": TRIGGER, "ref": "main", "variables": {"MLCI_SWEEP": "grid"}}
    assert "private-token" not in req["headers"]

    res = run_mlci(
        project, "ci", "dispatch", "grid", "--host", "gitlab", "--no-push", env={**base, "GITLAB_TOKEN": TOKEN}
    )
    assert res.returncode == 0, res.stderr
    req = api.requests[-1]
    assert req["path"] == "/api/v4/projects/42/pipeline"
    assert req["body"] == {"ref": "main", "variables": [{"key": "MLCI_SWEEP", "value": "grid"}]}
    assert req["headers"]["private-token"] == TOKEN

    # failures: one line, the right exit code, never the token
    api.requests.clear()
    env = {"GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": "acme/model"}
    res = run_mlci(project, "sweep", "start", "grid", "--executor", "ci", env=env)
    assert res.returncode == 2 and "GITHUB_TOKEN" in res.stderr and not api.requests
    res = run_mlci(
        project, "ci", "dispatch", "grid", env={**env, "GITHUB_REPOSITORY": "acme/other", "GITHUB_TOKEN": TOKEN}
    )
    assert res.returncode == 1 and "HTTP 404" in res.stderr and "Not Found" in res.stderr
    assert TOKEN not in res.stdout + res.stderr and "Traceback" not in res.stderr
    res = run_mlci(
        project, "ci", "dispatch", "grid", env={**env, "GITHUB_API_URL": "http://127.0.0.1:9", "GITHUB_TOKEN": TOKEN}
    )
    assert res.returncode == 1 and "dispatching the sweep workflow failed" in res.stderr
    res = run_mlci(project, "ci", "dispatch", "grid", "--host", "gitlab", env={"CI_PROJECT_ID": "42"})
    assert res.returncode == 2 and "GITLAB_TRIGGER_TOKEN" in res.stderr


def test_a_sweeps_runner_labels_reach_the_trial_jobs(repo: Path, upstream: Path, tmp_path: Path) -> None:
    """resources.runner: GitHub's trial jobs run on those labels (the matrix job's output, read by
    `runs-on: fromJSON(...)`), GitLab's child pipeline jobs carry them as tags."""
    config = CONFIG + "    resources: {gpus: 1, runner: [self-hosted, gpu]}\n"
    commit(repo, {"mlci.yaml": config, "train.py": TRAIN_PY, "params.yaml": "bias: 0.0\n"}, "project")
    assert run_mlci(repo, "ci", "init", "github", "--sweeps").returncode == 0
    workflow = yaml.safe_load((repo / ".github" / "workflows" / "mlci-sweep.yml").read_text())
    assert workflow["jobs"]["trial"]["runs-on"] == "${{ fromJSON(needs.matrix.outputs.runner) }}"
    assert workflow["jobs"]["matrix"]["outputs"]["runner"] == "${{ steps.sweep-matrix.outputs.runner }}"
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ci workflows")
    git(repo, "remote", "add", "origin", str(upstream))
    git(repo, "push", "-q", "origin", "main")
    assert run_mlci(repo, "sweep", "create", "grid").returncode == 0
    assert run_mlci(repo, "ledger", "push").returncode == 0
    _ci, outputs = _matrix_job(tmp_path, upstream)
    assert json.loads(outputs["runner"]) == ["self-hosted", "gpu"]
    gl_clone = checkout(upstream, "ci-gl-matrix", "main")
    gl_env = {"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "trigger", "MLCI_SWEEP": "grid", "MLCI_NO_HOOKS": "1"}
    job = run_job("sweep-matrix", gl_clone, {**gl_env, "MLCI_INSTALL": "pip install mlci-tui==1.0"})
    assert job.failed_step is None, job.results
    child = yaml.safe_load((gl_clone / "mlci-sweep-trials.yml").read_text())
    tags = [v.get("tags") for k, v in child.items() if k.startswith("mlci-trial-")]
    assert tags == [["self-hosted", "gpu"]] * 2
