"""The code-host call only CI makes: open the retrain pull request (GitHub) or merge request (GitLab).

The client itself (`Host`, `host_for`) is `mlci_tui.codehost`, shared with the report's
comment posting; it is re-exported here for the CI steps that reach it as `api.host_for`.
"""

from __future__ import annotations

from mlci_tui.codehost import TOKEN_VARS, Host, host_for
from mlci_tui.errors import InputError

__all__ = ["Host", "host_for", "open_pull_request"]


def open_pull_request(host: Host, *, branch: str, base: str, title: str, body: str) -> str:
    """Open a pull request (GitHub) or merge request (GitLab) from `branch` into `base`; its URL."""
    if not host.token:
        raise InputError(f"opening a pull request needs a token: set {' or '.join(TOKEN_VARS[host.kind])}")
    if host.kind == "github":
        answer = host.request(
            "POST",
            f"{host.project_url()}/pulls",
            {"title": title, "head": branch, "base": base, "body": body},
            what="opening the pull request",
        )
    else:
        answer = host.request(
            "POST",
            f"{host.project_url()}/merge_requests",
            {"source_branch": branch, "target_branch": base, "title": title, "description": body},
            what="opening the merge request",
        )
    url = answer.get("html_url") or answer.get("web_url") if isinstance(answer, dict) else None
    return str(url) if url else ""
