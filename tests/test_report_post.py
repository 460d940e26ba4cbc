"""`mlci report --post github|gitlab` against a local stand-in for the code host's API.

The only stand-in in these tests is the HTTP server: a real `http.server` on 127.0.0.1 (random
port, in a thread) implementing exactly the endpoints mlci uses. GitHub: GET/POST
/repos/{o}/{r}/issues/{n}/comments and PATCH /repos/{o}/{r}/issues/comments/{id}. GitLab:
GET/POST /projects/{id}/merge_requests/{iid}/notes and PUT .../notes/{note_id}. It checks the
token on every request, so a test also proves the token was sent, and where.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import IDENTITY, commit, git, run_mlci
from test_report import CONFIG, _metrics

GITHUB_TOKEN = "ghp_" + "T0kenThatMustNeverLeak" + "x" * 14
GITLAB_TOKEN = "glpat-" + "N0teTokenNeverPrinted" + "y" * 4
JOB_TOKEN = "job-token-s3cret-4242"
MARKER = "<!-- mlci-report -->"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeHost:
    """One code host's comment API, in memory. `fail_writes`/`redirect` switch on failures."""

    kind: str  # github or gitlab
    token: str
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # thread path -> comments
    requests: list[Recorded] = field(default_factory=list)
    fail_writes: int | None = None
    redirect_to: str | None = None
    next_id: int = 1000
    url: str = ""

    def authorised(self, headers: dict[str, str]) -> bool:
        if self.kind == "github":
            return headers.get("authorization") == f"Bearer {self.token}"
        return self.token in (headers.get("private-token"), headers.get("job-token"))

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        self.requests.append(Recorded(method, path, query, headers, body))
        if self.redirect_to and method == "GET":
            return 302, {"message": "moved"}, {"Location": self.redirect_to}
        if not self.authorised(headers):
            return 401, {"message": "Bad credentials"}, {}
        if self.kind == "github":
            listing = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path)
            one = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", path)
            create, update = "POST", "PATCH"
        else:
            listing = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes", path)
            one = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes/(\d+)", path)
            create, update = "POST", "PUT"
        if listing and method == "GET":
            page, per_page = int(query["page"][0]), int(query["per_page"][0])
            items = self.comments.get(path, [])
            return 200, items[(page - 1) * per_page : page * per_page], {}
        if method in (create, update) and self.fail_writes:
            return self.fail_writes, {"message": "Resource not accessible by integration"}, {}
        if listing and method == create:
            self.next_id += 1
            item = {"id": self.next_id, "body": body["body"], "html_url": f"{self.url}/thread#c{self.next_id}"}
            item["user" if self.kind == "github" else "author"] = {"type": "Bot", "bot": True}
            self.comments.setdefault(path, []).append(item)
            return 201, item, {}
        if one and method == update:
            wanted = int(one.groups()[-1])
            for items in self.comments.values():
                for item in items:
                    if item["id"] == wanted and item.get("locked"):
                        return 403, {"message": "You cannot edit someone else's comment"}, {}
                    if item["id"] == wanted:
                        item["body"] = body["body"]
                        return 200, item, {}
            return 404, {"message": "Not Found"}, {}
        return 404, {"message": "Not Found"}, {}

    def mlci_comments(self) -> list[dict[str, Any]]:
        return [c for items in self.comments.values() for c in items if c["body"].startswith(MARKER)]


def _serve(host: FakeHost) -> Iterator[FakeHost]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer, extra = host.handle(self.command, self.path, headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def github() -> Iterator[FakeHost]:
    yield from _serve(FakeHost("github", GITHUB_TOKEN))


@pytest.fixture
def gitlab() -> Iterator[FakeHost]:
    yield from _serve(FakeHost("gitlab", JOB_TOKEN))


@pytest.fixture(autouse=True)
def _no_ci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no CI variables, tokens or proxies from the machine running the tests."""
    import os

    for key in list(os.environ):
        if key.startswith(("GITHUB_", "CI_", "GITLAB_")) or key in ("GH_TOKEN",) or "proxy" in key.lower():
            monkeypatch.delenv(key)


def _build(root: Path, big: bool) -> Path:
    home = root / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for key, value in IDENTITY.items():
            mp.setenv(key, value)
        repo = root / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        extra = {f"a_rather_long_metric_name_that_fills_the_comment_{i:04d}": i / 7 for i in range(1500)} if big else {}
        commit(repo, {"mlci.yaml": CONFIG, "metrics.json": _metrics(acc=0.8, loss=0.5, f1=0.7, **extra)}, "base")
        more = {k: v + 1 for k, v in extra.items()}
        commit(repo, {"metrics.json": _metrics(acc=0.81, loss=0.5, f1=0.7, **more)}, "better")
        commit(repo, {"metrics.json": _metrics(acc=0.7, loss=0.5, f1=0.7, **more)}, "worse")
        assert run_mlci(repo, "capture", "HEAD~2", "HEAD~1", "HEAD").returncode == 0
        assert run_mlci(repo, "promote", "HEAD~2").returncode == 0
    return repo


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("post-small"), big=False)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("post-big"), big=True)


def _github_env(host: FakeHost, tmp_path: Path, number: int = 7) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": number}}))
    return {
        "GITHUB_REPOSITORY": "acme/model",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_API_URL": host.url,
        "GITHUB_TOKEN": GITHUB_TOKEN,
    }


def _assert_secret_kept(repo: Path, *outputs: str) -> None:
    for text in outputs:
        for token in (GITHUB_TOKEN, GITLAB_TOKEN, JOB_TOKEN):
            assert token not in text
    for token in (GITHUB_TOKEN, GITLAB_TOKEN, JOB_TOKEN):
        assert git(repo, "grep", "-c", token, "refs/mlci/ledger", check=False) == ""
        for path in (repo / ".git" / "mlci").rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


def test_github_creates_one_comment_then_updates_it(small: Path, github: FakeHost, tmp_path: Path) -> None:
    thread = "/repos/acme/model/issues/7/comments"
    others = [{"id": n, "body": f"LGTM {n}", "html_url": ""} for n in range(1, 121)]  # marker lands on page 2
    # someone else's comment holding the marker: mlci cannot edit it, so it posts its own
    others[5] = {"id": 6, "body": MARKER + " ha", "html_url": "", "locked": True, "user": {"type": "User"}}
    github.comments[thread] = [dict(c) for c in others]
    env = _github_env(github, tmp_path)
    first = run_mlci(small, "report", "--post", "github", "--head", "HEAD~1", env=env)
    assert first.returncode == 0, first.stderr
    assert "created the mlci report comment on acme/model#7" in first.stdout
    [mine] = [c for c in github.mlci_comments() if c["id"] != 6]
    assert mine["body"].startswith(MARKER + "\n## mlci report: PASS")
    assert [r.method for r in github.requests] == ["GET", "GET", "PATCH", "POST"]
    assert github.requests[-1].path == thread

    second = run_mlci(small, "report", "--post", "github", env=env)
    assert second.returncode == 0, second.stderr  # the gate fails, the report still posts and exits 0
    assert "updated the mlci report comment" in second.stdout
    [mine] = [c for c in github.mlci_comments() if c["id"] != 6]
    assert mine["body"].startswith(MARKER + "\n## mlci report: FAIL")
    assert (
        github.requests[-1].method == "PATCH"
        and github.requests[-1].path == f"/repos/acme/model/issues/comments/{mine['id']}"
    )
    assert [r.query["page"] for r in github.requests if r.method == "GET"][-2:] == [["1"], ["2"]]
    assert github.comments[thread][:120] == others  # nobody else's comment touched
    assert all(r.headers["authorization"] == f"Bearer {GITHUB_TOKEN}" for r in github.requests)
    assert run_mlci(small, "report", "--post", "github", "--fail-on-gate", env=env).returncode == 1
    _assert_secret_kept(small, first.stdout, first.stderr, second.stdout, second.stderr)


def test_gitlab_creates_one_note_then_updates_it(small: Path, gitlab: FakeHost) -> None:
    env = {
        "CI_API_V4_URL": f"{gitlab.url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "3",
        "CI_JOB_TOKEN": JOB_TOKEN,
    }
    first = run_mlci(small, "report", "--post", "gitlab", env=env)
    second = run_mlci(small, "report", "--post", "gitlab", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    [mine] = gitlab.mlci_comments()
    assert [(r.method, r.path) for r in gitlab.requests] == [
        ("GET", "/api/v4/projects/42/merge_requests/3/notes"),
        ("POST", "/api/v4/projects/42/merge_requests/3/notes"),
        ("GET", "/api/v4/projects/42/merge_requests/3/notes"),
        ("PUT", f"/api/v4/projects/42/merge_requests/3/notes/{mine['id']}"),
    ]
    assert all(r.headers.get("job-token") == JOB_TOKEN for r in gitlab.requests)
    # a project path from the flags is one URL segment; a personal token goes in PRIVATE-TOKEN
    gitlab.token = GITLAB_TOKEN
    env = dict(env, GITLAB_TOKEN=GITLAB_TOKEN)
    third = run_mlci(small, "report", "--post", "gitlab", "--repo", "acme/ml-model", "--pr", "9", env=env)
    assert third.returncode == 0, third.stderr
    assert gitlab.requests[-1].path == "/api/v4/projects/acme%2Fml-model/merge_requests/9/notes"
    assert gitlab.requests[-1].headers.get("private-token") == GITLAB_TOKEN
    _assert_secret_kept(small, first.stdout, first.stderr, second.stdout, third.stdout, third.stderr)


def test_a_report_too_long_for_one_comment_is_cut_with_a_pointer(big: Path, github: FakeHost, tmp_path: Path) -> None:
    env = _github_env(github, tmp_path) | {
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_RUN_ID": "99",
    }
    artifact = tmp_path / "out" / "full-report.md"
    proc = run_mlci(big, "report", "--post", "github", "--artifact", str(artifact), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "cut to" in proc.stdout
    [mine] = github.mlci_comments()
    body = mine["body"]
    full = artifact.read_text()
    assert len(full) > 65_536 >= len(body) > 60_000
    assert full.startswith(MARKER) and body.startswith(MARKER)
    assert body.rstrip().endswith(
        "The full report is the CI artifact `"
        + str(artifact)
        + "` of [this job](https://github.example/acme/model/actions/runs/99)."
    )
    assert body.count("```") % 2 == 0 and body.count("<details>") == body.count("</details>") == 1
    assert "| acc | 0.8 | 0.7 |" in body  # the key metrics come first, so they survive the cut
    # GitLab takes 1,000,000 characters: the same report goes whole (dry run: nothing sent)
    dry = run_mlci(
        big, "report", "--post", "gitlab", "--repo", "1", "--pr", "2", "--dry-run", env={"CI_JOB_TOKEN": "x"}
    )
    assert dry.returncode == 0 and "is cut" not in dry.stdout


def test_a_read_only_token_sends_the_report_to_the_job_summary(
    small: Path, github: FakeHost, gitlab: FakeHost, tmp_path: Path
) -> None:
    github.fail_writes = 403
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = _github_env(github, tmp_path) | {"GITHUB_STEP_SUMMARY": str(summary)}
    proc = run_mlci(small, "report", "--post", "github", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "warning: cannot comment on acme/model#7" in proc.stderr and "job summary" in proc.stderr
    text = summary.read_text()
    assert text.startswith("earlier step\n" + MARKER) and "## mlci report: FAIL" in text
    assert github.mlci_comments() == []
    # no job summary (GitLab): the report goes to the artifact file
    gitlab.fail_writes = 403
    artifact = tmp_path / "mr-report.md"
    env = {"CI_API_V4_URL": f"{gitlab.url}/api/v4", "CI_PROJECT_ID": "5", "CI_MERGE_REQUEST_IID": "1"}
    lab = run_mlci(
        small, "report", "--post", "gitlab", "--artifact", str(artifact), env=env | {"CI_JOB_TOKEN": JOB_TOKEN}
    )
    assert lab.returncode == 0 and "mr-report.md instead" in lab.stderr
    assert artifact.read_text().startswith(MARKER)
    _assert_secret_kept(small, proc.stdout, proc.stderr, lab.stdout, lab.stderr, text)


def test_dry_run_prints_the_requests_with_the_token_redacted(small: Path, github: FakeHost, tmp_path: Path) -> None:
    saved = tmp_path / "report.md"
    env = _github_env(github, tmp_path, number=12)
    proc = run_mlci(small, "report", "--post", "github", "--dry-run", "-o", str(saved), env=env)
    assert proc.returncode == 0, proc.stderr
    assert saved.read_text().startswith("## mlci report: FAIL")  # -o keeps a copy (no marker)
    assert f"GET {github.url}/repos/acme/model/issues/12/comments?per_page=100&page=1" in proc.stdout
    assert f"POST {github.url}/repos/acme/model/issues/12/comments" in proc.stdout
    assert f"PATCH {github.url}/repos/acme/model/issues/comments/{{id}}" in proc.stdout
    assert "Authorization: Bearer ***" in proc.stdout
    payload = json.loads(proc.stdout.split("Content-Type: application/json\n\n", 1)[1].splitlines()[0])
    assert payload["body"].startswith(MARKER + "\n## mlci report: FAIL")
    assert github.requests == []
    _assert_secret_kept(small, proc.stdout, proc.stderr)


def test_bad_input_and_api_failures(small: Path, github: FakeHost, tmp_path: Path) -> None:
    env = _github_env(github, tmp_path)
    no_pr = {k: v for k, v in env.items() if k != "GITHUB_EVENT_PATH"}
    cases = [
        (no_pr, [], "no pull request number"),
        ({k: v for k, v in env.items() if k != "GITHUB_TOKEN"}, [], "no token in the environment"),
        (env, ["--pr", "seven"], "expected a positive number"),
        (env, ["--format", "html"], "--post publishes Markdown"),
        (env, ["--api-url", "http://user:pw@127.0.0.1:1"], "without credentials"),
    ]
    for case_env, flags, message in cases:
        proc = run_mlci(small, "report", "--post", "github", *flags, env=case_env)
        assert proc.returncode == 2 and message in proc.stderr, (flags, proc.stderr)
    assert github.requests == []
    github.fail_writes = 500
    failed = run_mlci(small, "report", "--post", "github", env=env)
    assert failed.returncode == 1 and "HTTP 500" in failed.stderr
    # a redirect is refused: the token never follows it
    github.fail_writes, github.requests = None, []
    github.redirect_to = f"{github.url}/elsewhere"
    moved = run_mlci(small, "report", "--post", "github", env=env)
    assert moved.returncode == 1 and "HTTP 302" in moved.stderr
    assert [r.path for r in github.requests] == ["/repos/acme/model/issues/7/comments"]
    _assert_secret_kept(small, failed.stdout, failed.stderr, moved.stdout, moved.stderr)
