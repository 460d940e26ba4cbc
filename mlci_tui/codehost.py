"""The one REST client for the code hosts (GitHub, GitLab), over urllib.

The report posts its comment with it (`report/post.py`); CI dispatches the sweep workflow
and opens the retrain pull request with it (`ci/`). One client, so the token is handled
right in one place: it comes from the environment only, is sent to the API root alone
(redirects are refused, so it never follows a `Location` elsewhere) and is redacted from
every message. urllib only: posting a report must not import an HTTP library.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.sanitize import display
from mlci_tui.scrub import scrub_text

TIMEOUT = 30
PAGE_SIZE = 100  # the most either host lists per page
MAX_PAGES = 50
DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
API_VARS = {"github": "GITHUB_API_URL", "gitlab": "CI_API_V4_URL"}
REPO_VARS = {"github": ("GITHUB_REPOSITORY",), "gitlab": ("CI_PROJECT_ID", "CI_PROJECT_PATH")}
TOKEN_VARS = {"github": ("GITHUB_TOKEN", "GH_TOKEN"), "gitlab": ("GITLAB_TOKEN", "CI_JOB_TOKEN")}
_REPO_SHAPES = {
    "github": (re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"), "OWNER/NAME"),
    "gitlab": (re.compile(r"^(?:\d+|[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)$"), "a project id or GROUP/PROJECT path"),
}


class ApiError(CheckFailed):
    """The host answered with an HTTP error (a refused redirect included).

    `status` lets a caller act on it: the report falls back to the job summary on a 403.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the token must reach the API root and nothing else."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        return None


@dataclass
class Host:
    """One repository on one code host, with the token the environment holds for it."""

    kind: str  # github or gitlab
    api: str  # the API root, no trailing slash
    repo: str  # OWNER/NAME, or a GitLab project id or path
    token: str | None
    token_env: str  # the variable the token came from (or would): GitLab's CI_JOB_TOKEN takes its own header
    agent: str = "mlci"  # the User-Agent: which front end is calling

    def project_url(self) -> str:
        if self.kind == "github":
            return f"{self.api}/repos/{self.repo}"
        return f"{self.api}/projects/{urllib.parse.quote(self.repo, safe='')}"

    @property
    def auth_header(self) -> tuple[str, str] | None:
        if not self.token:
            return None
        if self.kind == "github":
            return "Authorization", f"Bearer {self.token}"
        return ("JOB-TOKEN" if self.token_env == "CI_JOB_TOKEN" else "PRIVATE-TOKEN"), self.token

    def headers(self) -> dict[str, str]:
        out = {"User-Agent": self.agent}
        if self.kind == "github":
            out["Accept"] = "application/vnd.github+json"
            out["X-GitHub-Api-Version"] = "2022-11-28"
        else:
            out["Accept"] = "application/json"
        auth = self.auth_header
        if auth:
            out[auth[0]] = auth[1]
        return out

    def redact(self, text: str) -> str:
        """`text` with the token and any other credential-looking string masked."""
        if self.token:
            text = text.replace(self.token, "***")
        return scrub_text(text)

    def request(
        self, method: str, url: str, body: dict[str, Any] | None = None, *, what: str, expect_json: bool = False
    ) -> Any:
        """JSON in, JSON out (None for an empty answer).

        An HTTP error is an ApiError naming `what`, the status and the host's own message; a
        network error a CheckFailed. An answer that is not JSON is None, or with `expect_json`
        (a listing must be one) a CheckFailed.
        """
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
            message = self.redact(error_message(exc))
            raise ApiError(exc.code, f"{what} failed: HTTP {exc.code} from {method} {url}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CheckFailed(f"{what} failed: {method} {url}: {self.redact(str(reason))}") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            if expect_json:
                raise CheckFailed(f"{what} failed: {method} {url} answered with something not JSON") from None
            return None

    def listing(self, url_of_page: Callable[[int], str], *, what: str) -> Iterator[Any]:
        """Every item of a paginated GET listing, page 1 on, up to MAX_PAGES pages.

        `url_of_page` asks for PAGE_SIZE items a page: a shorter page is the last.
        """
        for page in range(1, MAX_PAGES + 1):
            url = url_of_page(page)
            items = self.request("GET", url, what=what, expect_json=True)
            if not isinstance(items, list):
                raise CheckFailed(f"{what} failed: GET {url} did not answer with a list")
            yield from items
            if len(items) < PAGE_SIZE:
                return


def error_message(exc: urllib.error.HTTPError) -> str:
    """The code host's own error message (its JSON `message`), sanitised and cut to one short line."""
    try:
        raw = exc.read(2000)
        doc = json.loads(raw)
        message = doc.get("message") if isinstance(doc, dict) else None
        return display(str(message or raw[:200].decode("utf-8", "replace")))[:300]
    except (ValueError, OSError):
        return display(str(exc.reason))[:300]


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
    agent: str = "mlci-ci",
) -> Host:
    """Where to send requests: flags first, then the CI variables, then the origin URL.

    The repository and API root are checked here, before any token goes anywhere: a
    repository of an unexpected shape could steer a path, an API URL with credentials leak them.
    """
    env = dict(os.environ if env is None else env)
    if kind not in DEFAULT_API:
        raise InputError(f"code host {display(kind)!r}: expected github or gitlab")
    api = api_url or env.get(API_VARS[kind]) or DEFAULT_API[kind]
    repo = repo or next((env[k] for k in REPO_VARS[kind] if env.get(k)), None)
    repo = repo or (repo_from_remote_url(remote_url) if remote_url else None)
    if not repo:
        raise InputError(f"{kind}: no repository: pass --repo, or set it in the CI variables, or add an origin remote")
    pattern, shape = _REPO_SHAPES[kind]
    if not pattern.match(repo):
        raise InputError(f"--repo {display(repo)!r}: expected {shape}")
    parsed = urllib.parse.urlsplit(api)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username or parsed.password:
        raise InputError(f"--api-url {display(scrub_text(api))!r}: expected http(s)://HOST[/PATH] without credentials")
    names = token_vars or TOKEN_VARS[kind]
    token_env = next((k for k in names if env.get(k)), names[0])
    return Host(kind, api.rstrip("/"), repo, env.get(token_env) or None, token_env, agent)
