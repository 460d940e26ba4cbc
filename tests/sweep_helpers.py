"""Shared by the sweep tests: a small repo whose command writes metrics.json from params.yaml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import commit, git, run_mlci

# reads params.yaml (YAML 1.1 via PyYAML, as many training scripts do), optionally sleeps
# `sleep` seconds, and writes acc = lr * 2 (+ epochs / 100)
TRAIN = (
    "import json, time, yaml\n"
    "p = yaml.safe_load(open('params.yaml'))\n"
    "time.sleep(float(p.get('sleep', 0)))\n"
    "json.dump({'acc': round(p['lr'] * 2 + p.get('epochs', 0) / 100, 6)}, open('metrics.json', 'w'))\n"
)


def sweep_repo(
    root: Path, sweeps: str, *, command: str = "python train.py", extra: dict[str, str] | None = None
) -> Path:
    git(root, "init", "-q", "-b", "main") if not (root / ".git").exists() else None
    files = {
        "train.py": TRAIN,
        "params.yaml": "# training params\nlr: 0.5  # learning rate\nepochs: 1\nsleep: 0\n",
        "mlci.yaml": f"train:\n  command: {json.dumps(command)}\nsweeps:\n{sweeps}",
        ".gitignore": "metrics.json\n",
    }
    files.update(extra or {})
    commit(root, files, "project", no_verify=True)
    return root


def shared_project(clone: Path, store: Path, sweeps: str, train: str) -> Path:
    """A sweep project in a clone of the upstream with a `file://` data remote at `store` (made
    here), committed and pushed: where trial logs and checkpoints travel between clones."""
    store.mkdir(exist_ok=True)
    sweep_repo(clone, sweeps, extra={"train.py": train})
    config = (clone / "mlci.yaml").read_text() + f"data:\n  remotes:\n    store: {{url: 'file://{store}'}}\n"
    (clone / "mlci.yaml").write_text(config)
    git(clone, "commit", "-qam", "data remote")
    git(clone, "push", "-q", "origin", "main")
    return clone


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc


def status_json(root: Path, name: str) -> list[dict[str, Any]]:
    proc = ok(run_mlci(root, "sweep", "status", name, "--json"))
    return json.loads(proc.stdout)


def trial_runs(root: Path) -> list[tuple[Any, ...]]:
    proc = ok(run_mlci(root, "sql", "SELECT run_id, trial_id, kind, status FROM runs WHERE kind = 'trial'", "--json"))
    return [tuple(r.values()) for r in json.loads(proc.stdout)]


def start_background(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`mlci sweep start ARGS` as a process the test can interrupt: SIGINT at its default even
    when the test run ignores it (a shell without job control starts a background job so, and
    Python then installs no KeyboardInterrupt handler)."""
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "mlci_tui", "sweep", "start", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def leases(root: Path) -> list[dict[str, Any]]:
    out = []
    for path in (root / ".git" / "mlci" / "queue").glob("*/*.lease"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def worktrees(root: Path) -> list[str]:
    return [line for line in git(root, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def processes_with_env(key: str, value: str) -> list[int]:
    """Pids of live (not zombie) processes whose environment holds KEY=VALUE: what a trial left running."""
    wanted = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if wanted in env and state != "Z":
            found.append(int(entry.name))
    return found


def processes_in_group(pgid: int) -> list[int]:
    """Live pids whose process group is `pgid` (a trial's supervisor leads its command's group)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def sweep_id_of(root: Path, name: str) -> str:
    proc = ok(run_mlci(root, "sweep", "status", "--json"))
    return next(r["sweep_id"] for r in json.loads(proc.stdout) if r["name"] == name)
