"""Shared fixtures: real git repositories in temp dirs, a bare upstream, the real `mlci` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada Tester",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Tester",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


@pytest.fixture(autouse=True)
def _git_isolation(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's git config or hooks; every test has the same identity."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    monkeypatch.delenv("MLCI_NO_HOOKS", raising=False)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_INDEX_FILE", raising=False)
    # xdist's workers export COLUMNS=80: a table's width is a test's choice (env={"COLUMNS": ...})
    monkeypatch.delenv("COLUMNS", raising=False)
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path_factory.getbasetemp() / "pre-commit-cache"))


def git(cwd: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_mlci(
    cwd: Path, *args: str, input: str | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`mlci ARGS` as a real process: real exit codes, real stderr."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mlci_tui", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def write(root: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def commit(root: Path, files: Mapping[str, str | bytes], message: str, *, no_verify: bool = False) -> str:
    write(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message, *(["--no-verify"] if no_verify else []))
    return git(root, "rev-parse", "HEAD").strip()


def metrics_json(**values: float) -> str:
    return json.dumps(values) + "\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh repository (no hooks installed)."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    return root


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """A bare repository standing in for the team's remote."""
    bare = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    return bare


@pytest.fixture
def clone_of(tmp_path: Path, upstream: Path) -> Callable[[str], Path]:
    """Clone the bare upstream into a named folder."""

    def make(name: str, *extra: str) -> Path:
        target = tmp_path / name
        git(tmp_path, "clone", "-q", *extra, str(upstream), str(target))
        return target

    return make


@pytest.fixture
def mlci() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_mlci


def on_a_terminal(argv: list[str], cwd: Path | None = None) -> tuple[int, str]:
    """(exit code, what `argv` wrote) with its stdout and stderr on a pseudo-terminal: how a
    test sees what a user at a terminal sees (progress bars draw only there)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        if cwd is not None:
            os.chdir(cwd)
        os.execvp(argv[0], argv)
    out = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback (moto's server mode), one per test module."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def mlci_in_process(monkeypatch: pytest.MonkeyPatch, repo: Path, *args: str) -> str:
    """`mlci ARGS` run in this process (for fsspec's memory filesystem, which lives in one
    process): its stdout; a non-zero exit fails the test with both outputs."""
    import contextlib
    import io

    from mlci_tui.cli.main import main

    monkeypatch.chdir(repo)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert code == 0, (args, out.getvalue(), err.getvalue())
    return out.getvalue()
