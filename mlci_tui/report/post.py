"""Post the Markdown report as ONE comment per pull/merge request, created or updated in place.

The comment is found by a hidden marker (`<!-- mlci-report -->`) on its first line. The
repository, request number and API root come from the CI environment or flags; the token
only from the environment, and it is sent to the API root alone (redirects are refused, so
it never follows a `Location` elsewhere) and never printed. A report longer than the host
takes in one comment is cut at a line, with open blocks closed and a pointer to the full
report, written to an artifact file. A 403 (a read-only token: pull requests from forks)
sends the report to the job summary with a warning instead of failing. urllib only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.report.build import Report
from mlci_tui.report.markdown import MARKER
from mlci_tui.report.markdown import render as render_md
from mlci_tui.sanitize import display
from mlci_tui.scrub import scrub_text

LIMITS = {"github": 65_536, "gitlab": 1_000_000}
SUMMARY_LIMIT = 1_000_000  # GitHub's job summary takes 1 MiB per step
DEFAULT_ARTIFACT = "mlci-report.md"
PAGE_SIZE = 100
MAX_PAGES = 50
TIMEOUT = 30

_GITHUB_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_GITLAB_PROJECT = re.compile(r"^(?:\d+|[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)$")
_PLAIN_URL = re.compile(r"^https?://[^\s()<>\[\]@\"'`\\]+$")


class ApiError(Exception):
    def __init__(self, status: int, method: str, url: str, message: str) -> None:
        super().__init__(f"HTTP {status} from {method} {url}: {message}")
        self.status = status


@dataclass
class Target:
    host: str  # github or gitlab
    api: str
    repo: str
    number: int
    token: str | None
    token_env: str

    @property
    def auth_header(self) -> tuple[str, str] | None:
        if not self.token:
            return None
        if self.host == "github":
            return "Authorization", f"Bearer {self.token}"
        return ("JOB-TOKEN" if self.token_env == "CI_JOB_TOKEN" else "PRIVATE-TOKEN"), self.token

    @property
    def where(self) -> str:
        return f"{self.repo}#{self.number}" if self.host == "github" else f"{self.repo}!{self.number}"

    def _base(self) -> str:
        if self.host == "github":
            return f"{self.api}/repos/{self.repo}/issues"
        return f"{self.api}/projects/{urllib.parse.quote(self.repo, safe='')}/merge_requests/{self.number}"

    def list_url(self, page: int) -> str:
        if self.host == "github":
            return f"{self._base()}/{self.number}/comments?per_page={PAGE_SIZE}&page={page}"
        return f"{self._base()}/notes?per_page={PAGE_SIZE}&page={page}&sort=asc&order_by=created_at"

    def create(self) -> tuple[str, str]:
        if self.host == "github":
            return "POST", f"{self._base()}/{self.number}/comments"
        return "POST", f"{self._base()}/notes"

    def update(self, comment_id: object) -> tuple[str, str]:
        if self.host == "github":
            return "PATCH", f"{self._base()}/comments/{comment_id}"
        return "PUT", f"{self._base()}/notes/{comment_id}"


def _event_number(path: str | None) -> str | None:
    if not path:
        return None
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(f"GITHUB_EVENT_PATH {display(path)}: not a readable JSON file") from None
    if not isinstance(event, dict):
        return None
    for key in ("pull_request", "issue"):
        item = event.get(key)
        if isinstance(item, dict) and item.get("number") is not None:
            return str(item["number"])
    return str(event["number"]) if event.get("number") is not None else None


def target_from(host: str, args: argparse.Namespace, env: dict[str, str]) -> Target:
    """Repository, request number, API root and token: flags first, then the CI environment."""
    if host == "github":
        api = args.api_url or env.get("GITHUB_API_URL") or "https://api.github.com"
        repo = args.repo or env.get("GITHUB_REPOSITORY")
        number = args.pr or _event_number(env.get("GITHUB_EVENT_PATH"))
        token_env = next((k for k in ("GITHUB_TOKEN", "GH_TOKEN") if env.get(k)), "GITHUB_TOKEN")
        if not repo:
            raise InputError("--post github: no repository: pass --repo OWNER/NAME or set GITHUB_REPOSITORY")
        if not _GITHUB_REPO.match(repo):
            raise InputError(f"--repo {display(repo)!r}: expected OWNER/NAME")
        if not number:
            raise InputError(
                "--post github: no pull request number: pass --pr N, or run on a pull_request event (GITHUB_EVENT_PATH)"
            )
    else:
        api = args.api_url or env.get("CI_API_V4_URL") or "https://gitlab.com/api/v4"
        repo = args.repo or env.get("CI_PROJECT_ID")
        number = args.pr or env.get("CI_MERGE_REQUEST_IID")
        token_env = next((k for k in ("GITLAB_TOKEN", "CI_JOB_TOKEN") if env.get(k)), "GITLAB_TOKEN")
        if not repo:
            raise InputError("--post gitlab: no project: pass --repo ID or set CI_PROJECT_ID")
        if not _GITLAB_PROJECT.match(repo):
            raise InputError(f"--repo {display(repo)!r}: expected a project id or GROUP/PROJECT path")
        if not number:
            raise InputError("--post gitlab: no merge request: pass --pr IID, or run in a merge request pipeline")
    if not str(number).isdigit() or int(number) <= 0:
        raise InputError(f"--pr {display(str(number))!r}: expected a positive number")
    parsed = urllib.parse.urlsplit(api)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username or parsed.password:
        raise InputError(f"--api-url {display(scrub_text(api))!r}: expected http(s)://HOST[/PATH] without credentials")
    return Target(host, api.rstrip("/"), repo, int(number), env.get(token_env) or None, token_env)


def job_url(host: str, env: dict[str, str]) -> str | None:
    if host == "github":
        parts = [env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
        url = f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None
    else:
        url = env.get("CI_JOB_URL")
    return url if url and _PLAIN_URL.match(url) else None


def fit(text: str, limit: int, pointer: str) -> str:
    """`text` if it fits, else its first lines up to `limit` with open blocks closed and `pointer`."""
    if len(text) <= limit:
        return text
    budget = limit - len(pointer) - 64  # room for the closing fence and tags
    kept: list[str] = []
    size = 0
    fence = False
    details = 0
    for line in text.split("\n"):
        closing = ("```\n" if fence else "") + "</details>\n" * details
        if size + len(line) + 1 + len(closing) > budget:
            break
        kept.append(line)
        size += len(line) + 1
        if line.startswith("```"):
            fence = not fence
        details += line.count("<details>") - line.count("</details>")
    if fence:
        kept.append("```")
    kept += ["", "</details>"] * max(details, 0)
    return "\n".join(kept).rstrip("\n") + "\n" + pointer


def pointer_text(shown_of: int, limit: int, artifact: str, url: str | None) -> str:
    where = f"the CI artifact `{display(artifact)}`" + (f" of [this job]({url})" if url else "")
    return (
        f"\n---\n**This report is cut**: it is {shown_of:,} characters and a comment here takes {limit:,}. "
        f"The full report is {where}.\n"
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the token must reach the API root and nothing else."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        return None


class Client:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.opener = urllib.request.build_opener(_NoRedirect)

    def redact(self, text: str) -> str:
        if self.target.token:
            text = text.replace(self.target.token, "***")
        return scrub_text(text)

    def request(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/vnd.github+json" if self.target.host == "github" else "application/json")
        req.add_header("User-Agent", "mlci-report")
        if self.target.host == "github":
            req.add_header("X-GitHub-Api-Version", "2022-11-28")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        auth = self.target.auth_header
        if auth:
            req.add_header(*auth)
        try:
            with self.opener.open(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, method, url, self.redact(error_message(exc))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CheckFailed(f"posting the report failed: {method} {url}: {self.redact(str(reason))}") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise CheckFailed(f"posting the report failed: {method} {url} answered with something not JSON") from None

    def find(self) -> Any:
        """The id of the comment carrying the marker (the newest, a bot's if any is), else None.

        Anyone can write the marker into a comment: a bot's comment is preferred, and a
        comment that cannot be updated is replaced by a new one (see `post`).
        """
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            items = self.request("GET", self.target.list_url(page))
            if not isinstance(items, list):
                raise CheckFailed(f"posting the report failed: GET {self.target.list_url(page)} did not list comments")
            found += [i for i in items if isinstance(i, dict) and str(i.get("body") or "").startswith(MARKER)]
            if len(items) < PAGE_SIZE:
                break
        bots = [i for i in found if _is_bot(i)]
        return (bots or found)[-1].get("id") if found else None


def _is_bot(item: dict[str, Any]) -> bool:
    user = item.get("user") or item.get("author")
    if not isinstance(user, dict):
        return False
    return user.get("type") == "Bot" or bool(user.get("bot")) or str(user.get("username", "")).startswith("project_")


def error_message(exc: urllib.error.HTTPError) -> str:
    """The code host's own error message (its JSON `message`), sanitised and cut to one short line."""
    try:
        raw = exc.read(2000)
        doc = json.loads(raw)
        message = doc.get("message") if isinstance(doc, dict) else None
        return display(str(message or raw[:200].decode("utf-8", "replace")))[:300]
    except (ValueError, OSError):
        return display(str(exc.reason))[:300]


def _fallback(target: Target, full: str, artifact: Path, env: dict[str, str], why: str) -> int:
    summary = env.get("GITHUB_STEP_SUMMARY") if target.host == "github" else None
    warning = f"mlci: warning: cannot comment on {display(target.where)} ({display(why)}; a read-only token?"
    warning += " pull requests from forks get one)"
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(fit(full, SUMMARY_LIMIT, pointer_text(len(full), SUMMARY_LIMIT, str(artifact), None)) + "\n")
        if len(full) > SUMMARY_LIMIT:
            _write(artifact, full)
        print(f"{warning}: the report is in the job summary instead", file=sys.stderr)
    else:
        _write(artifact, full)
        print(f"{warning}: the report is in {display(str(artifact))} instead", file=sys.stderr)
    return 0


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--artifact {display(str(path))}: {exc.strerror}") from None


def post(report: Report, args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    host = args.post
    target = target_from(host, args, env)
    limit = LIMITS[host]
    artifact = Path(args.artifact or DEFAULT_ARTIFACT)
    full = render_md(report, marker=True)
    body = fit(full, limit, pointer_text(len(full), limit, str(artifact), job_url(host, env)))
    cut = body != full
    if args.dry_run:
        return _dry_run(target, body, cut, artifact)
    if not target.token:
        names = "GITHUB_TOKEN" if host == "github" else "GITLAB_TOKEN or CI_JOB_TOKEN"
        raise InputError(f"--post {host}: no token in the environment: set {names}")
    if cut or args.artifact:
        _write(artifact, full)
    client = Client(target)
    try:
        existing = client.find()
        answer = None
        if existing is not None:
            try:
                answer = client.request(*target.update(existing), {"body": body})
            except ApiError as exc:
                if exc.status not in (403, 404):
                    raise
                # someone else's comment holding the marker, or one deleted meanwhile: post our own
                print(f"mlci: cannot update comment {display(str(existing))} (HTTP {exc.status}); posting a new one")
                existing = None
        if existing is None:
            answer = client.request(*target.create(), {"body": body})
    except ApiError as exc:
        if exc.status == 403:
            return _fallback(target, full, artifact, env, f"HTTP 403 from the {host} API")
        raise CheckFailed(f"posting the report failed: {display(str(exc))}") from None
    link = answer.get("html_url") if isinstance(answer, dict) else None
    done = "updated" if existing is not None else "created"
    text = f"{done} the mlci report comment on {display(target.where)}"
    if isinstance(link, str) and _PLAIN_URL.match(link):
        text += f": {display(link)}"
    if cut:
        text += f" (cut to {len(body):,} of {len(full):,} characters; full report in {display(str(artifact))})"
    print(text)
    return 0


def _dry_run(target: Target, body: str, cut: bool, artifact: Path) -> int:
    auth = target.auth_header
    auth_line = f"{auth[0]}: {'Bearer ***' if target.host == 'github' else '***'}" if auth else None
    lines = ["# dry run: nothing is sent"]
    lines.append(f"GET {target.list_url(1)}")
    lines.append(auth_line or f"# no token in the environment ({target.token_env}): a real run stops here")
    method, url = target.create()
    update_method, update_url = target.update("{id}")
    lines += [
        f"# then, if no comment starts with {MARKER}:",
        f"{method} {url}",
        "# or, if one does (its id in place of {id}):",
        f"{update_method} {update_url}",
    ]
    if auth_line:
        lines.append(auth_line)
    lines.append("Content-Type: application/json")
    lines.append("")
    lines.append(json.dumps({"body": body}, ensure_ascii=False))
    if cut:
        lines.append(f"# the body is cut to {len(body):,} characters; a real run writes the full report to {artifact}")
    text = "\n".join(lines)
    if target.token:
        text = text.replace(target.token, "***")
    sys.stdout.write(display(text, multiline=True) + "\n")
    return 0
