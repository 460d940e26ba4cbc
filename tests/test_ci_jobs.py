"""The generated CI jobs, run step by step (`mlci ci run STEP`, each a real process) as CI runs them:
in a fresh depth-1 checkout of a bare upstream, with the CI's environment variables, against
local stand-ins for the code host's API and for the dataset's web source.

Every generated step is one `mlci ci run STEP` line (test_ci_generate.py checks that), so
running steps.JOBS[job] in order here is running the workflow's job. The project: a
dataset imported from a URL (served by a local HTTP server whose file the tests change), a
schema for it, `train.command` computing `acc` from the data and a `bias` param, a gate
rule on `acc`, and the first commit's run promoted to `deployed`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import IDENTITY, git, run_mlci, write

from mlci_tui.ci.steps import JOBS, LEDGER_BUNDLE, STEPS

TOKEN = "ghp_" + "CiJobTokenNeverPrinted" + "z" * 14
GITLAB_TOKEN = "glpat-" + "CiJobTokenNeverShown" + "q" * 4

TRAIN_PY = """\
import csv, json
import yaml  # noqa
bias = float(yaml.safe_load(open("params.yaml"))["bias"])
xs = [float(r["x"]) for r in csv.DictReader(open("data/train.csv"))]
json.dump({"acc": round(sum(xs) / len(xs) + bias, 4)}, open("metrics.json", "w"))
"""

CONFIG = """\
metrics:
  fields:
    acc: {{direction: max}}
train:
  command: python train.py
  deps: [train.py, params.yaml]
gate:
  rules:
    acc: {{max_drop: 0.01}}
data:
  remote: store
  remotes:
    store: {{url: {remote}}}
datasets:
  train:
    path: data/train.csv
    columns:
      x: {{type: float64, min: 0, max: 1}}
      label: {{type: int64, allowed_values: [0, 1]}}
"""


def csv_with_mean(mean: float, rows: int = 20) -> str:
    xs = [round(mean + (0.05 if i % 2 else -0.05), 4) for i in range(rows)]
    return "x,label\n" + "".join(f"{x},{i % 2}\n" for i, x in enumerate(xs))


# ------------------------------------------------------------------ local HTTP servers


@dataclass
class Api:
    """A code host's API in memory: routes (METHOD, path regex) -> status and JSON; every request recorded."""

    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # plain files (the dataset source)
    url: str = ""

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
        for (m, pattern), answer in self.routes.items():
            if m == method and re.fullmatch(pattern, path.split("?")[0]):
                return answer
        return 404, {"message": "Not Found"}


def _serve(api: Api) -> Iterator[Api]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            if self.path in api.files and self.command in ("GET", "HEAD"):
                data = api.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{abs(hash(data))}"')
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(data)
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = api.handle(self.command, self.path, headers, body)
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_HEAD = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def source() -> Iterator[Api]:
    """The web server the dataset is imported from."""
    yield from _serve(Api())


@pytest.fixture
def host() -> Iterator[Api]:
    """GitHub's and GitLab's API, the endpoints the jobs use."""
    api = Api()
    api.routes = {
        ("GET", r"/repos/acme/model/issues/\d+/comments"): (200, []),
        ("POST", r"/repos/acme/model/issues/\d+/comments"): (201, {"id": 1, "html_url": "http://h/c/1"}),
        ("POST", r"/repos/acme/model/pulls"): (201, {"number": 9, "html_url": "http://h/acme/model/pull/9"}),
        ("POST", r"/api/v4/projects/42/merge_requests"): (201, {"iid": 3, "web_url": "http://h/acme/model/-/mr/3"}),
    }
    yield from _serve(api)


@pytest.fixture(autouse=True)
def _no_ci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("GITHUB_", "CI_", "GITLAB_")) or key in ("GH_TOKEN", "GITLAB_CI") or "proxy" in key.lower():
            monkeypatch.delenv(key)


# ------------------------------------------------------------------ the project, built once


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, source: Api) -> Iterator[Path]:
    """A bare upstream holding the project, its data on a file remote, the first run promoted to deployed."""
    base = tmp_path_factory.mktemp("ci-template")
    home = base / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for key, value in IDENTITY.items():
            mp.setenv(key, value)
        upstream = base / "upstream.git"
        git(base, "init", "-q", "--bare", "-b", "main", str(upstream))
        dev = base / "dev"
        git(base, "clone", "-q", str(upstream), str(dev))
        source.files["/train.csv"] = csv_with_mean(0.8).encode()
        write(
            dev,
            {
                "mlci.yaml": CONFIG.format(remote=json.dumps(str(base / "data-remote"))),
                "train.py": TRAIN_PY,
                "params.yaml": "bias: 0.0\n",
            },
        )
        res = run_mlci(dev, "data", "import-url", f"{source.url}/train.csv", "data/train.csv")
        assert res.returncode == 0, res.stderr
        _ok(run_mlci(dev, "ci", "init", "github", "--schedule", "0 3 * * 1", "--sweeps"))
        _train(dev)
        git(dev, "add", "-A")
        git(dev, "commit", "-q", "-m", "first model")
        _ok(run_mlci(dev, "data", "push"))
        git(dev, "push", "-q", "origin", "main")
        _ok(run_mlci(dev, "capture"))
        _ok(run_mlci(dev, "promote", "HEAD", "--stage", "deployed"))
        _ok(run_mlci(dev, "ledger", "push"))
    yield base


def _ok(res: Any) -> Any:
    assert res.returncode == 0, f"{res.args}\n{res.stdout}\n{res.stderr}"
    return res


def _train(root: Path) -> None:
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True)


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the upstream (the data remote is shared: content-addressed, add-only)."""
    shutil.copytree(template / "upstream.git", tmp_path / "upstream.git")
    return tmp_path / "upstream.git"


def dev_clone(upstream: Path, name: str) -> Path:
    target = upstream.parent / name
    git(upstream.parent, "clone", "-q", str(upstream), str(target))
    return target


def checkout(upstream: Path, name: str, ref: str) -> Path:
    """What actions/checkout does with fetch-depth 1: one commit, no custom refs, no hooks."""
    target = upstream.parent / name
    target.mkdir()
    git(target, "init", "-q")
    git(target, "remote", "add", "origin", f"file://{upstream}")
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        git(target, "fetch", "-q", "--no-tags", "--depth=1", "origin", ref)
        git(target, "checkout", "-q", "--detach", "FETCH_HEAD")
    else:
        git(target, "fetch", "-q", "--no-tags", "--depth=1", "origin", f"+refs/heads/{ref}:refs/remotes/origin/{ref}")
        git(target, "checkout", "-q", "-B", ref, f"origin/{ref}")
    assert git(target, "rev-parse", "--is-shallow-repository").strip() == "true"
    assert not git(target, "for-each-ref", "refs/mlci").strip()
    return target


def github_env(tmp: Path, api: Api, event: str, payload: dict[str, Any], sha: str) -> dict[str, str]:
    path = tmp / f"event-{event}.json"
    path.write_text(json.dumps(payload))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REPOSITORY": "acme/model",
        "GITHUB_API_URL": api.url,
        "GITHUB_SHA": sha,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_OUTPUT": str(tmp / "github-output"),
        "MLCI_NO_HOOKS": "1",
    }


@dataclass
class JobRun:
    results: list[tuple[str, int, str]]  # step, exit code, stdout + stderr

    @property
    def failed_step(self) -> str | None:
        return next((s for s, code, _ in self.results if code != 0), None)

    def output(self, step: str) -> str:
        return next(out for s, _c, out in self.results if s == step)

    @property
    def ran(self) -> list[str]:
        return [s for s, _c, _o in self.results]


def run_job(job: str, clone: Path, env: dict[str, str], mlci: Path | None = None) -> JobRun:
    """The job's steps in order, each `mlci ci run STEP` (the checkout's mlci, or the `mlci` executable
    given); after a failure only `always` steps run, as in CI."""
    results: list[tuple[str, int, str]] = []
    failed = False
    for step in JOBS[job]:
        if failed and not STEPS[step].always:
            continue
        if mlci is None:
            res = run_mlci(clone, "ci", "run", step, env=env)
        else:
            res = subprocess.run(
                [str(mlci), "ci", "run", step], cwd=clone, env={**os.environ, **env}, capture_output=True, text=True
            )
        results.append((step, res.returncode, res.stdout + res.stderr))
        assert "Traceback" not in res.stderr, res.stderr
        failed = failed or res.returncode != 0
    return JobRun(results)


def upstream_view(upstream: Path, name: str) -> Path:
    """A fresh full clone with the upstream ledger pulled: what the team sees after the job."""
    clone = dev_clone(upstream, name)
    _ok(run_mlci(clone, "ledger", "pull"))
    return clone


def deployed(clone: Path) -> dict[str, Any]:
    res = _ok(run_mlci(clone, "stages", "--json"))
    rows = [r for r in json.loads(res.stdout) if r.get("stage") == "deployed"]
    assert len(rows) == 1, res.stdout
    return rows[0]


def open_pull_request(
    upstream: Path, tmp: Path, name: str, files: dict[str, str], *, data: str | None = None
) -> tuple[str, str]:
    """A contributor's branch: edit, (re-track data), commit, push data and branch; (base sha, head sha)."""
    dev = dev_clone(upstream, f"dev-{name}")
    base = git(dev, "rev-parse", "HEAD").strip()
    git(dev, "checkout", "-q", "-b", name)
    if data is not None:
        _ok(run_mlci(dev, "data", "pull"))
        (dev / "data/train.csv").unlink()
        (dev / "data/train.csv").write_text(data)
        _ok(run_mlci(dev, "data", "add", "data/train.csv"))
    write(dev, files)
    git(dev, "add", "-A")
    git(dev, "commit", "-q", "-m", f"change: {name}")
    if data is not None:
        _ok(run_mlci(dev, "data", "push"))
    git(dev, "push", "-q", "origin", name)
    return base, git(dev, "rev-parse", "HEAD").strip()


def pr_payload(base: str, head: str) -> dict[str, Any]:
    return {
        "pull_request": {"number": 7, "base": {"sha": base}, "head": {"sha": head}},
        "repository": {"default_branch": "main"},
    }


def run_pull_request(
    upstream: Path, tmp: Path, host: Api, name: str, base: str, head: str, mlci: Path | None = None
) -> tuple[JobRun, JobRun, Path]:
    """The two jobs of a pull request: `pull-request` in a checkout of the PR's head, then
    `pull-request-report` in a checkout of the base holding the first job's artifacts."""
    env = github_env(tmp, host, "pull_request", pr_payload(base, head), head)
    clone = checkout(upstream, f"{name}-head", head)
    first = run_job("pull-request", clone, env, mlci)
    report_clone = checkout(upstream, f"{name}-base", base)
    for artifact in ("mlci-report.md", LEDGER_BUNDLE):  # what upload/download-artifact carry
        if (clone / artifact).is_file():
            shutil.copy(clone / artifact, report_clone / artifact)
    second = run_job("pull-request-report", report_clone, env, mlci)
    return first, second, clone


def comment_posts(host: Api) -> list[dict[str, Any]]:
    return [r for r in host.requests if r["method"] == "POST" and r["path"].endswith("/issues/7/comments")]


# ------------------------------------------------------------------ pull request job


def test_pull_request_with_a_bad_dataset_fails_at_validation(project: Path, tmp_path: Path, host: Api) -> None:
    bad = csv_with_mean(0.8) + "5.0,1\n"  # x above its max of 1
    base, head = open_pull_request(project, tmp_path, "bad-data", {}, data=bad)
    clone = checkout(project, "ci-pr-bad", head)
    job = run_job("pull-request", clone, github_env(tmp_path, host, "pull_request", pr_payload(base, head), head))
    assert job.failed_step == "validate"
    assert job.ran == ["base-config", "ledger-pull", "data-pull", "validate", "ledger-bundle"]
    out = job.output("validate")
    assert "1 dataset(s) changed" in out and "data/train.csv" in out
    assert "x" in out and "max" in out
    # the same job on a laptop: no CI variables, the event and base given as flags; it stops at the same step
    local = run_mlci(clone, "ci", "run", "--job", "pull-request", "--event", "pull_request", "--base", base)
    assert local.returncode == 1, local.stdout + local.stderr
    assert "step validate failed" in local.stdout and "mlci ci run gate" not in local.stdout


def test_pull_request_with_a_regression_fails_the_gate_after_reporting(
    project: Path, tmp_path: Path, host: Api
) -> None:
    base, head = open_pull_request(project, tmp_path, "worse", {"params.yaml": "bias: -0.1\n"})
    job, report, _clone = run_pull_request(project, tmp_path, host, "ci-pr-worse", base, head)
    assert job.failed_step == "gate", job.results
    assert job.ran == JOBS["pull-request"]
    assert "no declared dataset changed" in job.output("validate")
    assert "acc" in job.output("gate") and "FAIL" in job.output("gate").upper()
    # the job that posts, on the base commit, reports the failing run the first job bundled
    assert report.failed_step is None, report.results
    posts = comment_posts(host)
    assert len(posts) == 1 and "<!-- mlci-report -->" in posts[0]["body"]["body"]
    assert "FAIL" in posts[0]["body"]["body"].upper()
    assert posts[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert all(TOKEN not in out for _s, _c, out in job.results + report.results)


def test_pull_request_with_a_clean_change_passes_and_produces_a_report(
    project: Path, tmp_path: Path, host: Api
) -> None:
    base, head = open_pull_request(project, tmp_path, "better", {"params.yaml": "bias: 0.05\n"})
    job, posting, clone = run_pull_request(project, tmp_path, host, "ci-pr-better", base, head)
    assert job.failed_step is None and posting.failed_step is None, job.results + posting.results
    report = (clone / "mlci-report.md").read_text()
    assert "acc" in report and "0.85" in report
    posts = comment_posts(host)
    assert len(posts) == 1 and posts[0]["body"]["body"].startswith("<!-- mlci-report -->")
    assert "0.85" in posts[0]["body"]["body"]
    # the retrain was recorded as a ci run of the PR's head commit (local to the job: a PR job pushes nothing)
    shown = json.loads(_ok(run_mlci(clone, "show", head, "--json")).stdout)
    assert "ci" in json.dumps(shown) and "0.85" in json.dumps(shown)
    # the whole job in one local process (`mlci ci run --job`), as a user debugging it would: same outcome
    env = github_env(tmp_path, host, "pull_request", pr_payload(base, head), head)
    local = run_mlci(clone, "ci", "run", "--job", "pull-request", env=env)
    assert local.returncode == 0, local.stdout + local.stderr
    assert [line.removeprefix("::: mlci ci run ") for line in local.stdout.splitlines() if line.startswith(":::")] == (
        JOBS["pull-request"]
    )


# ------------------------------------------------------------------ push job


def test_push_job_captures_the_pushed_commits_into_the_upstream_ledger(
    project: Path, tmp_path: Path, host: Api
) -> None:
    dev = dev_clone(project, "dev-push")
    before = git(dev, "rev-parse", "HEAD").strip()
    shas = []
    for bias in ("0.01", "0.02"):
        write(dev, {"params.yaml": f"bias: {bias}\n"})
        _ok(run_mlci(dev, "data", "pull"))
        _train(dev)
        git(dev, "commit", "-q", "-am", f"bias {bias}")
        shas.append(git(dev, "rev-parse", "HEAD").strip())
    git(dev, "push", "-q", "origin", "main")
    clone = dev_clone(project, "ci-push")  # the push job checks out with fetch-depth 0
    env = github_env(tmp_path, host, "push", {"before": before, "repository": {"default_branch": "main"}}, shas[-1])
    job = run_job("push", clone, env)
    assert job.failed_step is None, job.results
    view = upstream_view(project, "view-push")
    for sha in shas:
        shown = json.loads(_ok(run_mlci(view, "show", sha, "--json")).stdout)
        assert sha in json.dumps(shown)

    # depth 1: only HEAD can be captured, said so, and the job still passes
    shallow = checkout(project, "ci-push-shallow", "main")
    job = run_job("push", shallow, env)
    assert job.failed_step is None and "capturing HEAD only" in job.output("capture")


# ------------------------------------------------------------------ scheduled job


def _set_promote_mode(upstream: Path, mode: str) -> None:
    dev = dev_clone(upstream, f"dev-mode-{mode}")
    text = (dev / "mlci.yaml").read_text() + f"ci:\n  schedule: {{promote: {mode}}}\n"
    write(dev, {"mlci.yaml": text})
    git(dev, "commit", "-q", "-am", f"ci: promote by {mode}")
    git(dev, "push", "-q", "origin", "main")


def test_scheduled_job_promotes_a_better_model_and_not_a_worse_one(
    project: Path, tmp_path: Path, host: Api, source: Api
) -> None:
    _set_promote_mode(project, "push")
    first_deployed = deployed(upstream_view(project, "view-0"))

    # fresh data at the source is better: retrained, gated, committed to main, promoted
    source.files["/train.csv"] = csv_with_mean(0.9).encode()
    main_before = git(project, "rev-parse", "main").strip()
    clone = checkout(project, "ci-sched-1", "main")
    env = github_env(tmp_path, host, "schedule", {"repository": {"default_branch": "main"}}, main_before)
    job = run_job("schedule", clone, env)
    assert job.failed_step is None, job.results
    assert "updated" in job.output("data-update")
    main_after = git(project, "rev-parse", "main").strip()
    assert main_after != main_before
    assert git(project, "rev-parse", f"{main_after}^").strip() == main_before
    assert json.loads(git(project, "show", f"{main_after}:metrics.json")) == {"acc": 0.9}
    pointer = git(project, "show", f"{main_after}:data/train.csv.mlci")
    assert pointer != git(project, "show", f"{main_before}:data/train.csv.mlci")
    view = upstream_view(project, "view-1")
    now = deployed(view)
    assert main_after.startswith(now["commit"]) and now != first_deployed
    _ok(run_mlci(view, "data", "pull"))  # the refreshed data reached the data remote
    assert (view / "data/train.csv").read_text() == csv_with_mean(0.9)

    # fresh data is worse: the gate fails the job, nothing is committed or promoted
    source.files["/train.csv"] = csv_with_mean(0.6).encode()
    clone = checkout(project, "ci-sched-2", "main")
    job = run_job("schedule", clone, github_env(tmp_path, host, "schedule", {}, main_after))
    assert job.failed_step == "gate", job.results
    assert "promote" not in job.ran and job.ran[-1] == "ledger-push"
    assert git(project, "rev-parse", "main").strip() == main_after
    assert main_after.startswith(deployed(upstream_view(project, "view-2"))["commit"])


def test_scheduled_job_in_pr_mode_pushes_a_branch_and_opens_a_merge_request(
    project: Path, tmp_path: Path, host: Api, source: Api
) -> None:
    source.files["/train.csv"] = csv_with_mean(0.95).encode()
    main_before = git(project, "rev-parse", "main").strip()
    clone = checkout(project, "ci-sched-gl", "main")
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "schedule",
        "CI_API_V4_URL": f"{host.url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_SHA": main_before,
        "GITLAB_TOKEN": GITLAB_TOKEN,
        "MLCI_NO_HOOKS": "1",
    }
    job = run_job("schedule", clone, env)
    assert job.failed_step is None, job.results
    assert git(project, "rev-parse", "main").strip() == main_before  # main untouched
    branches = git(project, "for-each-ref", "--format=%(refname:short)", "refs/heads/mlci/").split()
    assert len(branches) == 1 and branches[0].startswith("mlci/retrain-")
    (mr,) = [r for r in host.requests if r["path"] == "/api/v4/projects/42/merge_requests"]
    assert mr["body"]["source_branch"] == branches[0] and mr["body"]["target_branch"] == "main"
    assert mr["headers"]["private-token"] == GITLAB_TOKEN
    assert "http://h/acme/model/-/mr/3" in job.output("promote")
    assert all(GITLAB_TOKEN not in out for _s, _c, out in job.results)


# ------------------------------------------------------------------ trust: what a pull request's config can run

ENV_PROBE = """\
import json, os
json.dump(sorted(os.environ), open("env-seen.json", "w"))
"""


@pytest.mark.parametrize("ci_host", ["github", "gitlab"])
def test_a_pull_request_cannot_choose_the_data_remote_nor_hand_its_code_a_token(
    project: Path, tmp_path: Path, host: Api, ci_host: str
) -> None:
    """The PR points data.remotes.store at a folder of its own and makes train.command dump its
    environment: the job still pulls from the base branch's remote, and the command sees no token."""
    evil = tmp_path / "evil-remote"
    evil.mkdir()
    dev = dev_clone(project, f"read-{ci_host}")
    config = (dev / "mlci.yaml").read_text()
    assert "remote: store" in config
    changed = re.sub(r"store: \{url: [^}]+\}", "store: {url: " + json.dumps(str(evil)) + "}", config)
    changed = changed.replace("command: python train.py", "command: python probe.py && python train.py")
    assert changed != config
    base, head = open_pull_request(project, tmp_path, f"evil-{ci_host}", {"mlci.yaml": changed, "probe.py": ENV_PROBE})
    clone = checkout(project, f"ci-evil-{ci_host}", head)
    secrets = {
        "GITHUB_TOKEN": TOKEN,
        "MLCI_GIT_TOKEN": TOKEN,
        "GITLAB_TOKEN": GITLAB_TOKEN,
        "MLCI_GITLAB_PUSH_TOKEN": GITLAB_TOKEN,
        "CI_JOB_TOKEN": "job-token",
    }
    if ci_host == "github":
        env = github_env(tmp_path, host, "pull_request", pr_payload(base, head), head)
    else:
        env = {
            "GITLAB_CI": "true",
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_MERGE_REQUEST_DIFF_BASE_SHA": base,
            "CI_COMMIT_SHA": head,
            "CI_PROJECT_ID": "42",
            "CI_API_V4_URL": f"{host.url}/api/v4",
            "MLCI_NO_HOOKS": "1",
        }
    job = run_job("pull-request", clone, {**env, **secrets})
    assert job.failed_step is None, job.results
    said = job.output("base-config")
    assert "changes train.command" in said and "changes data.remotes" in said
    assert "base branch" in job.output("data-pull")
    assert f"$ mlci data fetch --rev {base}" in job.output("data-pull")  # the base's versions, for the diff
    assert (clone / "data/train.csv").read_text() == csv_with_mean(0.8)  # from the base's remote
    assert list(evil.iterdir()) == []  # the PR's remote was never written, and holds nothing to read
    seen = set(json.loads((clone / "env-seen.json").read_text()))
    assert not seen & set(secrets), seen & set(secrets)
    assert not any(k.startswith("GIT_CONFIG_") for k in seen)
    # the same PR config trusted (as on the default branch once merged) pulls from the folder it names,
    # which holds nothing: the job above would have failed had it read the PR's data.remotes
    fresh = checkout(project, f"ci-evil-{ci_host}-trusted", head)
    trusted = run_mlci(fresh, "ci", "run", "data-pull", "--event", "push")
    assert trusted.returncode != 0 and "missing" in trusted.stdout + trusted.stderr


# ------------------------------------------------------------------ the install line, from a wheel of this checkout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A wheel built from this checkout's working tree, and a virtualenv (with the system's site-packages,
    for mlci's dependencies: no network) where nothing of this checkout is installed yet."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    here = Path(__file__).resolve().parents[1]
    shutil.copytree(here / "mlci_tui", src / "mlci_tui", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(here / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(base / "dist")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (base / "dist").glob("mlci_tui-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    return wheel, venv


def test_jobs_install_mlci_with_the_generated_line_and_run_it(
    project: Path, tmp_path: Path, host: Api, wheel_venv: tuple[Path, Path]
) -> None:
    """ci.install names a wheel built from this checkout: `ci init` pins it, the install line taken from the
    generated workflow installs it into a fresh virtualenv, and both pull-request jobs run with that mlci."""
    wheel, venv = wheel_venv
    dev = dev_clone(project, "dev-install-wheel")
    write(dev, {"mlci.yaml": (dev / "mlci.yaml").read_text() + f"ci:\n  install: {json.dumps(str(wheel))}\n"})
    init = _ok(run_mlci(dev, "ci", "init", "github", "--force"))
    assert f"install: python -m pip install {wheel}" in init.stdout and "ci.install in mlci.yaml" in init.stdout
    git(dev, "commit", "-q", "-am", "ci: install mlci from the wheel")
    git(dev, "push", "-q", "origin", "main")
    base, head = open_pull_request(project, tmp_path, "wheel", {"params.yaml": "bias: 0.05\n"})

    import yaml

    workflow = yaml.safe_load((dev / ".github/workflows/mlci.yml").read_text())
    (line,) = [s["run"] for s in workflow["jobs"]["pull-request"]["steps"] if s.get("name") == "install"]
    path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    installed = subprocess.run(
        ["bash", "-c", line], cwd=dev, env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import mlci_tui; print(mlci_tui.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's copy, not this checkout

    env_path = {"PATH": path}
    job, posting, clone = run_pull_request(project, tmp_path, host, "ci-wheel", base, head, mlci=venv / "bin/mlci")
    assert job.failed_step is None and posting.failed_step is None, job.results + posting.results
    assert "0.85" in comment_posts(host)[0]["body"]["body"]
    # that mlci, asked to generate a workflow without ci.install, reads pip's record of where it came from
    # (PEP 610: a local file) and says no runner can reach it
    bare = tmp_path / "no-install-config"
    bare.mkdir()
    git(bare, "init", "-q")
    res = subprocess.run(
        [str(venv / "bin/mlci"), "ci", "init", "gitlab"],
        cwd=bare,
        env={**os.environ, **env_path},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "no CI runner can reach" in res.stderr and str(wheel) in res.stderr
