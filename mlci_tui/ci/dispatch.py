"""Start the generated sweep workflow on the code host: `mlci sweep start NAME --executor ci`
and the TUI's sweeps screen call `dispatch_sweep`.

GitHub: `POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches` with the input
`sweep` (token: GITHUB_TOKEN or GH_TOKEN, `actions: write`). GitLab: the pipeline trigger
API `POST /projects/{id}/trigger/pipeline` with a trigger token (GITLAB_TRIGGER_TOKEN, or
CI_JOB_TOKEN inside a pipeline), else `POST /projects/{id}/pipeline` with GITLAB_TOKEN;
either way with the variable `MLCI_SWEEP`. The ledger is pushed first, so the CI jobs see
the trials this clone queued.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.codehost import Host, host_for
from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo
from mlci_tui.ledger import sync
from mlci_tui.sanitize import display

GITLAB_TRIGGER_VARS = ("GITLAB_TRIGGER_TOKEN", "CI_JOB_TOKEN")


def detect_host(repo: Repo, env: Mapping[str, str], workflow: str) -> str:
    """github or gitlab: the CI we run in, else the workflow files present, else the origin URL."""
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    if (repo.root / ".github" / "workflows" / workflow).is_file():
        return "github"
    gitlab_file = repo.root / ".gitlab-ci.yml"
    if gitlab_file.is_file() and "mlci-sweep-matrix" in gitlab_file.read_text(encoding="utf-8", errors="replace"):
        return "gitlab"
    url = _origin_url(repo)
    for kind in ("github", "gitlab"):
        if kind in url:
            return kind
    raise InputError(
        "cannot tell the code host: run `mlci ci init github --sweeps` (or gitlab) first, or pass the host"
    )


def _origin_url(repo: Repo, remote: str = "origin") -> str:
    proc = repo.run("remote", "get-url", remote, check=False)
    return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""


def _current_ref(repo: Repo, env: Mapping[str, str]) -> str:
    for key in ("GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"):
        if env.get(key):
            return env[key]
    proc = repo.run("symbolic-ref", "--short", "-q", "HEAD", check=False)
    branch = proc.stdout.decode().strip()
    if proc.returncode != 0 or not branch:
        raise InputError("HEAD is detached: pass the branch whose sweep workflow to run (ref)")
    return branch


def dispatch_sweep(root: Path, sweep_name: str, *, jobs: int | None = None, **kwargs: Any) -> int:
    """`mlci sweep start NAME --executor ci`: dispatch, say what was started, exit code 0.

    `jobs` is not sent: how many trial jobs run at once is the CI's decision (GitHub runs
    up to 256 matrix jobs, limited by the account's concurrency; GitLab by its runners).
    """
    if jobs:
        print(f"mlci: note: -j {jobs} is not used with --executor ci: the CI decides how many trial jobs run at once")
    print(dispatch(root, sweep_name, **kwargs))
    return 0


def dispatch(
    root: Path,
    sweep_name: str,
    *,
    host: str | None = None,
    ref: str | None = None,
    env: Mapping[str, str] | None = None,
    api_url: str | None = None,
    repository: str | None = None,
    push_ledger: bool = True,
) -> str:
    """Dispatch the sweep workflow for `sweep_name`; a one-line description of what was started (for the TUI).

    Raises InputError (exit 2) for a missing token, host or repository, CheckFailed (exit 1)
    when the API refuses.
    """
    env = dict(os.environ if env is None else env)
    repo = Repo.find(root)
    cfg = config_mod.load(repo.root)
    ci_cfg = cfg.data.get("ci") or {}
    workflow = str(ci_cfg.get("sweep_workflow") or "mlci-sweep.yml")
    kind = host or detect_host(repo, env, workflow)
    ref = ref or _current_ref(repo, env)
    remote_url = _origin_url(repo, cfg.remote)
    if kind == "github":
        target = host_for(kind, env, repo=repository, api_url=api_url, remote_url=remote_url)
        if not target.token:
            raise InputError("dispatching the sweep workflow needs a token: set GITHUB_TOKEN (actions: write)")
    else:
        target = host_for(
            kind, env, repo=repository, api_url=api_url, remote_url=remote_url, token_vars=GITLAB_TRIGGER_VARS
        )
        if not target.token:
            target = host_for(kind, env, repo=repository, api_url=api_url, remote_url=remote_url)
        if not target.token:
            raise InputError(
                "dispatching the sweep pipeline needs a token: set GITLAB_TRIGGER_TOKEN (a pipeline trigger token) "
                "or GITLAB_TOKEN (api scope)"
            )
    if push_ledger:
        sync.push(repo, cfg.remote)
    if kind == "github":
        url = f"{target.project_url()}/actions/workflows/{workflow}/dispatches"
        target.request(
            "POST", url, {"ref": ref, "inputs": {"sweep": sweep_name}}, what="dispatching the sweep workflow"
        )
        return f"dispatched {workflow} on {display(target.repo)}@{display(ref)} for sweep {display(sweep_name)}"
    variables = {"MLCI_SWEEP": sweep_name}
    if target.token_env in GITLAB_TRIGGER_VARS:
        # the trigger token travels in the body, as the trigger API wants; it is never printed
        body: dict[str, Any] = {"token": target.token, "ref": ref, "variables": variables}
        trigger = dataclasses.replace(target, token=None)  # no PRIVATE-TOKEN header: the trigger token authenticates
        answer = _redacting_request(trigger, target.token, f"{target.project_url()}/trigger/pipeline", body)
    else:
        body = {"ref": ref, "variables": [{"key": k, "value": v} for k, v in variables.items()]}
        answer = target.request("POST", f"{target.project_url()}/pipeline", body, what="starting the sweep pipeline")
    link = answer.get("web_url") if isinstance(answer, dict) else None
    where = f": {display(str(link))}" if link else ""
    return f"started a pipeline on {display(target.repo)}@{display(ref)} for sweep {display(sweep_name)}{where}"


def _redacting_request(host: Host, secret: str | None, url: str, body: dict[str, Any]) -> Any:
    """POST with the secret in the body, not a header: `host` cannot redact it, so this does."""
    try:
        return host.request("POST", url, body, what="triggering the sweep pipeline")
    except CheckFailed as exc:
        text = str(exc).replace(secret, "***") if secret else str(exc)
        raise CheckFailed(text) from None
