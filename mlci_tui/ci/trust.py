"""What a pull request's config controls that runs code or chooses where data comes from, and the fence.

A pull request edits mlci.yaml like any file. Config SQL is data (it runs locked down, see
docs/contracts.md), but three keys act: `train.command` runs, `data.remote`/`data.remotes`
choose the server the job downloads from (with whatever credentials the step holds), and
`ci.install` installs code. The generated pull-request job runs the first with no secret in
its environment, and takes the other two from the base branch (docs/ci.md, "Trust").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# variables a CI job may hold that let code act on the repository or its host: never given to PR code
TOKEN_VARIABLES = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "MLCI_GIT_TOKEN",
    "GITLAB_TOKEN",
    "MLCI_GITLAB_PUSH_TOKEN",
    "GITLAB_TRIGGER_TOKEN",
    "CI_JOB_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)


@dataclass(frozen=True)
class Controlled:
    key: str  # dotted path in mlci.yaml
    acts: str  # what it does when the job reads it
    fence: str  # what the generated pull-request job does about it


PR_CONTROLLED = (
    Controlled("train.command", "runs as a shell command", "runs in the pull-request job, which holds no secret"),
    Controlled("data.remote", "names the server data is downloaded from", "ignored: the base branch's is used"),
    Controlled("data.remotes", "gives that server's URL and options", "ignored: the base branch's are used"),
    Controlled("ci.install", "installs code in every job", "ignored: the workflow file's install line runs"),
)


def value_at(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def changed_keys(pr: Mapping[str, Any], base: Mapping[str, Any]) -> list[Controlled]:
    """The PR-controlled keys whose value differs between the PR's config and the base's."""
    return [c for c in PR_CONTROLLED if value_at(pr, c.key) != value_at(base, c.key)]


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """`env` minus every token and the git credentials mlci passes through GIT_CONFIG_* variables."""
    out = {k: v for k, v in env.items() if k not in TOKEN_VARIABLES and not k.startswith("GIT_CONFIG_")}
    out.pop("GIT_CONFIG_COUNT", None)
    return out
