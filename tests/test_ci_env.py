"""CI environment detection: which host, event and commits a step acts on (in-process, no network)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mlci_tui.ci.env import detect
from mlci_tui.ci.steps import trial_ids
from mlci_tui.codehost import repo_from_remote_url
from mlci_tui.errors import InputError

A, B = "a" * 40, "b" * 40


def test_github_pull_request_push_and_schedule(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"base": {"sha": A}, "head": {"sha": B}}}))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}
    ctx = detect({**env, "GITHUB_REPOSITORY": "o/n", "GITHUB_SHA": "c" * 40})
    assert (ctx.host, ctx.event, ctx.base_sha, ctx.head_sha, ctx.repository) == ("github", "pull_request", A, B, "o/n")
    event.write_text(json.dumps({"before": A, "repository": {"default_branch": "trunk"}}))
    ctx = detect({**env, "GITHUB_EVENT_NAME": "push"})
    assert (ctx.event, ctx.base_sha, ctx.default_branch) == ("push", A, "trunk")
    event.write_text(json.dumps({"before": "0" * 40}))  # a new branch: no commit before the push
    assert detect({**env, "GITHUB_EVENT_NAME": "push"}).base_sha is None
    assert detect({**env, "GITHUB_EVENT_NAME": "schedule"}).event == "schedule"
    assert detect({**env, "GITHUB_EVENT_NAME": "workflow_dispatch"}).event == "dispatch"
    event.write_text("{not json")
    with pytest.raises(InputError, match="GITHUB_EVENT_PATH"):
        detect(env)


def test_gitlab_and_local_and_flags() -> None:
    env = {"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_DIFF_BASE_SHA": A}
    ctx = detect({**env, "CI_COMMIT_SHA": B, "CI_PROJECT_ID": "42", "CI_DEFAULT_BRANCH": "main"})
    assert (ctx.host, ctx.event, ctx.base_sha, ctx.head_sha, ctx.repository) == ("gitlab", "pull_request", A, B, "42")
    assert detect({"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "schedule"}).event == "schedule"
    assert detect({"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BEFORE_SHA": A}).base_sha == A
    local = detect({})
    assert (local.host, local.event, local.in_ci) == ("local", "local", False)
    forced = detect({}, event="pull_request", base="HEAD~1")
    assert (forced.event, forced.base_sha) == ("pull_request", "HEAD~1")


def test_remote_urls_and_matrix_shapes() -> None:
    assert repo_from_remote_url("git@github.com:acme/model.git") == "acme/model"
    assert repo_from_remote_url("https://gitlab.com/group/sub/model.git") == "group/sub/model"
    assert repo_from_remote_url("ssh://git@host:2222/acme/model") == "acme/model"
    assert repo_from_remote_url("/srv/git/model.git") is None
    assert repo_from_remote_url("file:///srv/git/model.git") is None
    assert trial_ids({"include": [{"trial": "t1", "name": "s-1"}, {"trial": "t2"}]}) == ["t1", "t2"]
    assert trial_ids(["t1"]) == ["t1"]
    with pytest.raises(InputError):
        trial_ids({"include": [{"name": "no id"}]})


def test_steps_with_nothing_to_do_and_bad_input(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps say plainly when there is nothing to do, refuse missing inputs with exit 2, never a traceback."""
    import os

    from conftest import commit, run_mlci

    for key in list(os.environ):
        if key.startswith(("GITHUB_", "CI_", "GITLAB_")) or key in ("GH_TOKEN", "GITLAB_CI"):
            monkeypatch.delenv(key)
    commit(repo, {"metrics.json": '{"acc": 0.9}\n'}, "model")
    checks = [
        (("validate",), 0, "nothing to validate"),
        (("data-pull",), 0, "nothing to pull"),
        (("data-update",), 0, "nothing to update"),
        (("promote",), 0, "nothing to commit or promote"),
        (("sweep-trial",), 2, "MLCI_TRIAL is not set"),
        (("sweep-matrix",), 2, "MLCI_SWEEP is not set"),
        ((), 2, "name one STEP"),
    ]
    for args, code, text in checks:
        res = run_mlci(repo, "ci", "run", *args)
        assert res.returncode == code, (args, res.stdout, res.stderr)
        assert text in res.stdout + res.stderr and "Traceback" not in res.stderr
    # without train.command, the train step captures HEAD's committed metrics
    res = run_mlci(repo, "ci", "run", "train")
    assert res.returncode == 0 and "no train.command" in res.stdout and "captured" in res.stdout, res.stdout
    # a pull request without a token in the step's environment: the report is written, not posted, and
    # the step passes with a warning (the gate, not the comment, is the check)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 3, "base": {"sha": A}, "head": {"sha": head}}}))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}
    res = run_mlci(repo, "ci", "run", "post-report", env={**env, "GITHUB_REPOSITORY": "o/n"})
    assert res.returncode == 0, res.stderr
    assert "::warning title=mlci::no GITHUB_TOKEN or GH_TOKEN" in res.stdout
    assert "acc" in (repo / "mlci-report.md").read_text()
    # the pull-request job's own report step writes the file and never posts, token or not
    res = run_mlci(repo, "ci", "run", "report", env={**env, "GITHUB_REPOSITORY": "o/n", "GITHUB_TOKEN": "t"})
    assert res.returncode == 0 and "--post" not in res.stdout and "warning" not in res.stdout, res.stdout
    # the gate step of the same job passes (no baseline yet) and the job run locally does too
    assert run_mlci(repo, "ci", "run", "gate").returncode == 0


def test_gitlab_push_token_reaches_git_through_the_environment_only(repo: Path) -> None:
    """MLCI_GITLAB_PUSH_TOKEN becomes an http.extraHeader that git sees, never a line in .git/config."""
    import base64
    import subprocess

    from mlci_tui.ci.steps import StepContext
    from mlci_tui.gitio import Repo

    token = "glpat-" + "PushTokenForGitOnly" + "k" * 5
    env = {"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push", "MLCI_GITLAB_PUSH_TOKEN": token}
    ctx = StepContext(Repo.find(repo), detect(env), env)
    child = ctx.child_env()
    seen = subprocess.run(
        ["git", "config", "--get", "http.extraHeader"], cwd=repo, env=child, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert seen == "Authorization: Basic " + base64.b64encode(f"oauth2:{token}".encode()).decode()
    assert token not in (repo / ".git" / "config").read_text()
    # on GitHub the variable means nothing: no header is added
    github = StepContext(Repo.find(repo), detect({"GITHUB_ACTIONS": "true"}), {"MLCI_GITLAB_PUSH_TOKEN": token})
    assert "GIT_CONFIG_COUNT" not in github.child_env()


def test_github_fetch_token_and_the_environment_pull_request_code_gets(repo: Path, tmp_path: Path) -> None:
    """MLCI_GIT_TOKEN (the PR job checks out without stored credentials) reaches git as a header through
    the environment; the environment train.command runs in on a pull request holds no token nor that header."""
    import base64
    import subprocess

    from mlci_tui.ci.steps import StepContext
    from mlci_tui.gitio import Repo

    token = "ghs_" + "FetchTokenForGitOnly" + "k" * 16
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 3, "base": {"sha": A}, "head": {"sha": B}}}))
    variables = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}
    env = {**variables, "MLCI_GIT_TOKEN": token, "GITHUB_TOKEN": token, "GITLAB_TOKEN": "glpat-x", "KEEP": "1"}
    ctx = StepContext(Repo.find(repo), detect(variables), env)
    seen = subprocess.run(
        ["git", "config", "--get", "http.extraHeader"], cwd=repo, env=ctx.child_env(), capture_output=True, text=True
    ).stdout.strip()
    assert seen == "Authorization: Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    untrusted = ctx.untrusted_env()
    assert untrusted["KEEP"] == "1" and untrusted["MLCI_NO_HOOKS"] == "1"
    assert not {"MLCI_GIT_TOKEN", "GITHUB_TOKEN", "GITLAB_TOKEN", "GIT_CONFIG_COUNT"} & set(untrusted)
    assert token not in json.dumps(untrusted)
    # outside a pull request (the default branch's own code) the environment is the step's
    push = StepContext(Repo.find(repo), detect({**variables, "GITHUB_EVENT_NAME": "push"}), env)
    assert push.untrusted_env()["GITHUB_TOKEN"] == token
