"""What the CI environment says about this job: which host, which event, which commits.

Every step reads its context from here, so `mlci ci run STEP` on a laptop behaves like the
CI job once the same variables are set (GitHub: `GITHUB_*`; GitLab: `CI_*`). Nothing here
talks to the network; tokens are read by the code that sends them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlci_tui.errors import InputError
from mlci_tui.sanitize import display

EVENTS = ("pull_request", "push", "schedule", "dispatch", "local")


@dataclass(frozen=True)
class CIContext:
    host: str  # github, gitlab or local
    event: str  # one of EVENTS
    base_sha: str | None  # pull request: the target branch's commit; push: the commit before the push
    head_sha: str | None
    default_branch: str | None
    repository: str | None  # OWNER/NAME (GitHub) or project id/path (GitLab)
    api_url: str | None
    output_file: str | None  # GITHUB_OUTPUT: where a step hands values to later jobs

    @property
    def in_ci(self) -> bool:
        return self.host != "local"


def _event_payload(path: str | None) -> dict[str, object]:
    if not path:
        return {}
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(f"GITHUB_EVENT_PATH {display(path)}: not a readable JSON file") from None
    return doc if isinstance(doc, dict) else {}


def _sha(value: object) -> str | None:
    text = str(value or "")
    return text if len(text) == 40 and set(text) <= set("0123456789abcdef") and text != "0" * 40 else None


def _github(env: Mapping[str, str]) -> CIContext:
    payload = _event_payload(env.get("GITHUB_EVENT_PATH"))
    name = env.get("GITHUB_EVENT_NAME", "")
    event = {
        "pull_request": "pull_request",
        "pull_request_target": "pull_request",
        "push": "push",
        "schedule": "schedule",
        "workflow_dispatch": "dispatch",
    }.get(name, "local")
    base = head = None
    pr = payload.get("pull_request")
    if isinstance(pr, dict):
        base = _sha((pr.get("base") or {}).get("sha") if isinstance(pr.get("base"), dict) else None)
        head = _sha((pr.get("head") or {}).get("sha") if isinstance(pr.get("head"), dict) else None)
    elif event == "push":
        base = _sha(payload.get("before"))
    repo_doc = payload.get("repository")
    default = repo_doc.get("default_branch") if isinstance(repo_doc, dict) else None
    return CIContext(
        host="github",
        event=event,
        base_sha=base,
        head_sha=head or _sha(env.get("GITHUB_SHA")),
        default_branch=str(default) if default else None,
        repository=env.get("GITHUB_REPOSITORY"),
        api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
        output_file=env.get("GITHUB_OUTPUT"),
    )


def _gitlab(env: Mapping[str, str]) -> CIContext:
    source = env.get("CI_PIPELINE_SOURCE", "")
    event = {
        "merge_request_event": "pull_request",
        "push": "push",
        "schedule": "schedule",
        "web": "dispatch",
        "api": "dispatch",
        "trigger": "dispatch",
        "pipeline": "dispatch",
    }.get(source, "local")
    if event == "pull_request":
        base = _sha(env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA")) or _sha(env.get("CI_MERGE_REQUEST_TARGET_BRANCH_SHA"))
    else:
        base = _sha(env.get("CI_COMMIT_BEFORE_SHA"))
    return CIContext(
        host="gitlab",
        event=event,
        base_sha=base,
        head_sha=_sha(env.get("CI_COMMIT_SHA")),
        default_branch=env.get("CI_DEFAULT_BRANCH"),
        repository=env.get("CI_PROJECT_ID") or env.get("CI_PROJECT_PATH"),
        api_url=env.get("CI_API_V4_URL") or "https://gitlab.com/api/v4",
        output_file=None,
    )


def detect(
    env: Mapping[str, str], *, event: str | None = None, base: str | None = None, head: str | None = None
) -> CIContext:
    """The context from the environment; `event`/`base`/`head` (from `mlci ci run` flags) override it."""
    if env.get("GITHUB_ACTIONS") == "true":
        ctx = _github(env)
    elif env.get("GITLAB_CI") == "true":
        ctx = _gitlab(env)
    else:
        ctx = CIContext("local", "local", None, None, None, None, None, None)
    if event is not None or base is not None or head is not None:
        ctx = CIContext(
            ctx.host,
            event or ctx.event,
            base or ctx.base_sha,
            head or ctx.head_sha,
            ctx.default_branch,
            ctx.repository,
            ctx.api_url,
            ctx.output_file,
        )
    return ctx
