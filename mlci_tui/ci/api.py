"""The few code-host API calls CI needs: dispatch the sweep workflow, open the retrain pull request.

urllib only, like `report/post.py`: the token comes from the environment, goes to the API
root alone (redirects are refused) and is never printed.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.report.post import error_message
from mlci_tui.sanitize import display
from mlci_tui.scrub import scrub_text

TIMEOUT = 30
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_GITLAB_PROJECT = re.compile(r"^(?:\d+|[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)$")
DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
TOKEN_VARS = {"github": ("GITHUB_TOKEN", "GH_TOKEN"), "gitlab": ("GITLAB_TOKEN", "CI_JOB_TOKEN")}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        return None


@dataclass
class Host:
    kind: str  # github or gitlab
    api: str
    repo: str  # OWNER/NAME or GitLab project id/path
    token: str | None
    token_env: str

    def project_url(self) -> str:
        if self.kind == "github":
            return f"{self.api}/repos/{self.repo}"
        return f"{self.api}/projects/{urllib.parse.quote(self.repo, safe='')}"

    def headers(self) -> dict[str, str]:
        out = {"User-Agent": "mlci-ci"}
        if self.kind == "github":
            out["Accept"] = "application/vnd.github+json"
            out["X-GitHub-Api-Version"] = "2022-11-28"
            if self.token:
                out["Authorization"] = f"Bearer {self.token}"
        elif self.token:
            out["JOB-TOKEN" if self.token_env == "CI_JOB_TOKEN" else "PRIVATE-TOKEN"] = self.token
        return out

    def redact(self, text: str) -> str:
        if self.token:
            text = text.replace(self.token, "***")
        return scrub_text(text)

    def request(self, method: str, url: str, body: dict[str, Any] | None = None, *, what: str) -> Any:
        """JSON in, JSON out; an HTTP error is a CheckFailed naming `what`, the status and the host's message."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        for key, value in self.headers().items():
            req.add_header(key, value)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise CheckFailed(
                f"{what} failed: HTTP {exc.code} from {method} {url}: {self.redact(error_message(exc))}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CheckFailed(f"{what} failed: {method} {url}: {self.redact(str(reason))}") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            return None


def repo_from_remote_url(url: str) -> str | None:
    """OWNER/NAME (or GROUP/SUB/NAME) from a git remote URL, for hosts named in no CI variable."""
    url = url.strip()
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh"):
            return None  # file:// and friends name no code host
        path = parts.path
    elif re.match(r"^(?:[^/@:]+@)?[^/:]+:", url):  # scp-like: git@host:owner/name.git
        path = url.split(":", 1)[1]
    else:
        return None  # a local path
    path = path.strip("/").removesuffix(".git")
    return path if "/" in path else None


def host_for(
    kind: str,
    env: Mapping[str, str] | None = None,
    *,
    repo: str | None = None,
    api_url: str | None = None,
    remote_url: str | None = None,
    token_vars: tuple[str, ...] | None = None,
) -> Host:
    """Where to send requests: flags first, then the CI variables, then the origin URL."""
    env = dict(os.environ if env is None else env)
    if kind == "github":
        api = api_url or env.get("GITHUB_API_URL") or DEFAULT_API[kind]
        repo = repo or env.get("GITHUB_REPOSITORY") or (repo_from_remote_url(remote_url) if remote_url else None)
        pattern = _GITHUB_REPO
    elif kind == "gitlab":
        api = api_url or env.get("CI_API_V4_URL") or DEFAULT_API[kind]
        repo = (
            repo
            or env.get("CI_PROJECT_ID")
            or env.get("CI_PROJECT_PATH")
            or (repo_from_remote_url(remote_url) if remote_url else None)
        )
        pattern = _GITLAB_PROJECT
    else:
        raise InputError(f"code host {display(kind)!r}: expected github or gitlab")
    if not repo:
        raise InputError(f"{kind}: no repository: pass --repo, or set it in the CI variables, or add an origin remote")
    if not pattern.match(repo):
        raise InputError(f"{kind} repository {display(repo)!r}: expected OWNER/NAME or a project id")
    parsed = urllib.parse.urlsplit(api)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username or parsed.password:
        raise InputError(f"API URL {display(scrub_text(api))!r}: expected http(s)://HOST[/PATH] without credentials")
    names = token_vars or TOKEN_VARS[kind]
    token_env = next((k for k in names if env.get(k)), names[0])
    return Host(kind, api.rstrip("/"), repo, env.get(token_env) or None, token_env)


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
