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

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci_tui.codehost import PAGE_SIZE, ApiError, Host, host_for
from mlci_tui.errors import InputError
from mlci_tui.report.build import Report
from mlci_tui.report.markdown import MARKER
from mlci_tui.report.markdown import render as render_md
from mlci_tui.sanitize import display

LIMITS = {"github": 65_536, "gitlab": 1_000_000}
SUMMARY_LIMIT = 1_000_000  # GitHub's job summary takes 1 MiB per step
DEFAULT_ARTIFACT = "mlci-report.md"
WHAT = "posting the report"

_PLAIN_URL = re.compile(r"^https?://[^\s()<>\[\]@\"'`\\]+$")


@dataclass(frozen=True)
class PostOptions:
    """Where and how to post, as `mlci report --post HOST` takes it; None: from the CI environment.

    A plain value, so `mlci report` and the CI report step hand the same thing to `post`.
    """

    host: str  # "github" or "gitlab"
    repo: str | None = None  # owner/name (GitHub), project id or path (GitLab)
    pr: str | None = None  # the pull/merge request number
    api_url: str | None = None
    artifact: str | None = None  # where the full report goes when the comment is cut
    dry_run: bool = False  # print the requests instead of sending them


@dataclass
class Target:
    """The pull/merge request the comment goes on: its host's endpoints for comments."""

    host: Host
    number: int

    @property
    def where(self) -> str:
        sep = "#" if self.host.kind == "github" else "!"
        return f"{self.host.repo}{sep}{self.number}"

    def _base(self) -> str:
        if self.host.kind == "github":
            return f"{self.host.project_url()}/issues"
        return f"{self.host.project_url()}/merge_requests/{self.number}"

    def list_url(self, page: int) -> str:
        if self.host.kind == "github":
            return f"{self._base()}/{self.number}/comments?per_page={PAGE_SIZE}&page={page}"
        return f"{self._base()}/notes?per_page={PAGE_SIZE}&page={page}&sort=asc&order_by=created_at"

    def create(self) -> tuple[str, str]:
        if self.host.kind == "github":
            return "POST", f"{self._base()}/{self.number}/comments"
        return "POST", f"{self._base()}/notes"

    def update(self, comment_id: object) -> tuple[str, str]:
        if self.host.kind == "github":
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


def target_from(options: PostOptions, env: dict[str, str]) -> Target:
    """Repository, request number, API root and token: flags first, then the CI environment."""
    kind = options.host
    if kind == "github":
        repo = options.repo or env.get("GITHUB_REPOSITORY")
        number = options.pr or _event_number(env.get("GITHUB_EVENT_PATH"))
        if not repo:
            raise InputError("--post github: no repository: pass --repo OWNER/NAME or set GITHUB_REPOSITORY")
        if not number:
            raise InputError(
                "--post github: no pull request number: pass --pr N, or run on a pull_request event (GITHUB_EVENT_PATH)"
            )
    else:
        repo = options.repo or env.get("CI_PROJECT_ID")
        number = options.pr or env.get("CI_MERGE_REQUEST_IID")
        if not repo:
            raise InputError("--post gitlab: no project: pass --repo ID or set CI_PROJECT_ID")
        if not number:
            raise InputError("--post gitlab: no merge request: pass --pr IID, or run in a merge request pipeline")
    if not str(number).isdigit() or int(number) <= 0:
        raise InputError(f"--pr {display(str(number))!r}: expected a positive number")
    return Target(host_for(kind, env, repo=repo, api_url=options.api_url, agent="mlci-report"), int(number))


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


def _find(target: Target) -> Any:
    """The id of the comment carrying the marker (the newest, a bot's if any is), else None.

    Anyone can write the marker into a comment: a bot's comment is preferred, and a
    comment that cannot be updated is replaced by a new one (see `post`).
    """
    items = target.host.listing(target.list_url, what=WHAT)
    found = [i for i in items if isinstance(i, dict) and str(i.get("body") or "").startswith(MARKER)]
    bots = [i for i in found if _is_bot(i)]
    return (bots or found)[-1].get("id") if found else None


def _is_bot(item: dict[str, Any]) -> bool:
    user = item.get("user") or item.get("author")
    if not isinstance(user, dict):
        return False
    return user.get("type") == "Bot" or bool(user.get("bot")) or str(user.get("username", "")).startswith("project_")


def _fallback(target: Target, full: str, artifact: Path, env: dict[str, str], why: str) -> int:
    summary = env.get("GITHUB_STEP_SUMMARY") if target.host.kind == "github" else None
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


def post(report: Report, options: PostOptions, env: Mapping[str, str] | None = None) -> int:
    """Create or update the report comment `options` names; 0 also when a read-only token sends it elsewhere.

    `env` (default this process's) is where the target, the token and the job link come from.
    """
    env = dict(os.environ if env is None else env)
    host = options.host
    target = target_from(options, env)
    limit = LIMITS[host]
    artifact = Path(options.artifact or DEFAULT_ARTIFACT)
    full = render_md(report, marker=True)
    body = fit(full, limit, pointer_text(len(full), limit, str(artifact), job_url(host, env)))
    cut = body != full
    if options.dry_run:
        return _dry_run(target, body, cut, artifact)
    if not target.host.token:
        names = "GITHUB_TOKEN" if host == "github" else "GITLAB_TOKEN or CI_JOB_TOKEN"
        raise InputError(f"--post {host}: no token in the environment: set {names}")
    if cut or options.artifact:
        _write(artifact, full)
    try:
        existing = _find(target)
        answer = None
        if existing is not None:
            try:
                answer = target.host.request(*target.update(existing), {"body": body}, what=WHAT, expect_json=True)
            except ApiError as exc:
                if exc.status not in (403, 404):
                    raise
                # someone else's comment holding the marker, or one deleted meanwhile: post our own
                print(f"mlci: cannot update comment {display(str(existing))} (HTTP {exc.status}); posting a new one")
                existing = None
        if existing is None:
            answer = target.host.request(*target.create(), {"body": body}, what=WHAT, expect_json=True)
    except ApiError as exc:
        if exc.status == 403:
            return _fallback(target, full, artifact, env, f"HTTP 403 from the {host} API")
        raise
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
    auth = target.host.auth_header
    auth_line = f"{auth[0]}: {'Bearer ***' if target.host.kind == 'github' else '***'}" if auth else None
    lines = ["# dry run: nothing is sent"]
    lines.append(f"GET {target.list_url(1)}")
    lines.append(auth_line or f"# no token in the environment ({target.host.token_env}): a real run stops here")
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
    if target.host.token:
        text = text.replace(target.host.token, "***")
    sys.stdout.write(display(text, multiline=True) + "\n")
    return 0
