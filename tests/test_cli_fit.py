"""A command line that fits the terminal (issue 14): tables as wide as `COLUMNS`, columns by
priority, `--wide`, `--precision`; `--where` in the TUI's filter language or SQL; "did you
mean" for commands and options; the gate's hint when there is no baseline. Real git
repositories and the real `mlci` process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import commit, git, run_mlci

LONG = "tune the learning rate schedule and the warmup once more, then evaluate on the held-out split"
PARAMS = {f"param_{name}": i for i, name in enumerate("abcdefgh")}
GATE = "gate:\n  rules:\n    zeta_acc: {max_drop: 0.01}\n"


@pytest.fixture
def runs_repo(repo: Path) -> Path:
    """Six commits, each with ten metrics and eight params, two of which differ; captured."""
    shas = []
    for i in range(6):
        metrics = {f"metric_{n:02d}": 0.123456789 * (n + 1) + i / 1000 for n in range(9)}
        metrics["zeta_acc"] = 0.6 + i * 0.04
        params = "\n".join(f"{k}: {v}" for k, v in PARAMS.items())
        files = {
            "mlci.yaml": "params:\n  files: [params.yaml]\nmetrics:\n  files: [metrics.json]\n" + GATE,
            "params.yaml": f"{params}\nlr: {0.1 / (i + 1)}\nseed: {i}\n",
            "metrics.json": json.dumps(metrics),
        }
        shas.append(commit(repo, files, f"{LONG} ({i})", no_verify=True))
    proc = run_mlci(repo, "capture", *shas)
    assert proc.returncode == 0, proc.stderr
    return repo


def widths(text: str) -> list[int]:
    return [len(line) for line in text.splitlines()]


@pytest.mark.parametrize("columns", [80, 60, 40])
def test_a_table_is_never_wider_than_columns(runs_repo: Path, columns: int) -> None:
    proc = run_mlci(runs_repo, "runs", env={"COLUMNS": str(columns)})
    assert proc.returncode == 0, proc.stderr
    assert max(widths(proc.stdout)) <= columns, proc.stdout
    header = proc.stdout.splitlines()[0].split()
    assert header[:2] == ["run", "message"], "the id and the subject come first"
    assert "zeta_acc" in header, "then the gate's metrics"
    assert "more columns: --wide" in proc.stdout
    # --wide: every column, whatever the width; a pipe without COLUMNS is not cut either
    wide = run_mlci(runs_repo, "runs", "--wide", env={"COLUMNS": str(columns)})
    assert max(widths(wide.stdout)) > 200
    assert {"metric_08", "lr", "seed", "time", "branch"} <= set(wide.stdout.splitlines()[0].split())


def test_precision_and_machine_formats(runs_repo: Path) -> None:
    default = run_mlci(runs_repo, "runs", "--wide").stdout
    assert "0.12346" in default and "0.123456789" not in default, "five significant digits"
    three = run_mlci(runs_repo, "runs", "--wide", "--precision", "3").stdout
    assert "0.124" in three and "0.1235" not in three
    bad = run_mlci(runs_repo, "runs", "--precision", "0")
    assert bad.returncode == 2 and "--precision" in bad.stderr
    # JSON and CSV keep full precision and ignore the terminal
    narrow = run_mlci(runs_repo, "runs", "--json", env={"COLUMNS": "40"}).stdout
    assert narrow == run_mlci(runs_repo, "runs", "--json").stdout
    assert json.loads(narrow)[0]["metrics"]["metric_00"] == pytest.approx(0.123456789 + 0.005)


def ids(repo: Path, *args: str) -> list[str]:
    proc = run_mlci(repo, "runs", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return [r["run_id"] for r in json.loads(proc.stdout)]


def test_where_takes_the_filter_language_and_sql(runs_repo: Path) -> None:
    expression = ids(runs_repo, "--where", "zeta_acc > 0.7")
    assert len(expression) == 3
    assert expression == ids(runs_repo, "--where", "sql: metrics['zeta_acc'] > 0.7")
    assert expression == ids(runs_repo, "--where", "metrics['zeta_acc'] > 0.7"), "SQL as before"
    assert ids(runs_repo, "--where", "zeta_acc > 0.7 and lr < 0.03") == ids(
        runs_repo, "--where", "metrics['zeta_acc'] > 0.7 AND CAST(params['lr'] AS DOUBLE) < 0.03"
    )
    # neither a filter nor SQL: one line naming both readings, exit 2
    proc = run_mlci(runs_repo, "runs", "--where", "zeta_ac > 0.7")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert "did you mean zeta_acc" in proc.stderr and "as a filter" in proc.stderr
    # the SQL path keeps its sandbox
    proc = run_mlci(runs_repo, "runs", "--where", "run_id IN (SELECT column0 FROM read_csv('/etc/passwd'))")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_a_typo_suggests_the_command_or_option(runs_repo: Path) -> None:
    proc = run_mlci(runs_repo, "rnus")
    assert proc.returncode == 2
    assert "did you mean 'runs'?" in proc.stderr
    proc = run_mlci(runs_repo, "ledger", "psuh")
    assert proc.returncode == 2 and "did you mean 'push'?" in proc.stderr
    proc = run_mlci(runs_repo, "runs", "--wdie")
    assert proc.returncode == 2 and "did you mean --wide?" in proc.stderr


def test_gate_without_a_baseline_says_how_to_set_one(runs_repo: Path) -> None:
    proc = run_mlci(runs_repo, "gate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for hint in ("mlci promote", "gate.baseline", "--base", "gate.require_baseline"):
        assert hint in proc.stderr, proc.stderr
    assert run_mlci(runs_repo, "promote", "HEAD~1").returncode == 0
    proc = run_mlci(runs_repo, "gate")
    assert "hint" not in proc.stderr and git(runs_repo, "rev-parse", "HEAD~1")[:8] in proc.stdout


def _on_a_terminal(code: str) -> str:
    """What `code` writes to stderr when stderr is a terminal (a pseudo-terminal)."""
    import os
    import pty
    import sys

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp(sys.executable, [sys.executable, "-c", code])
    out = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    os.waitpid(pid, 0)
    return out.decode("utf-8", "replace")


TRANSFER = """
from mlci_tui.data.transfer import Progress
p = Progress("push", 2, 3_000_000)
cb = p.callback()
if cb is not None:
    cb.relative_update(1_000_000)  # fsspec reports bytes while one large object moves
p.step(2_000_000, cb)
p.step(1_000_000)
p.close()
"""


def test_transfer_progress_is_rich_on_a_terminal_and_silent_in_a_pipe() -> None:
    import subprocess
    import sys

    shown = _on_a_terminal(TRANSFER)
    assert "push 2/2" in shown and "3.0/3.0 MB" in shown, shown
    piped = subprocess.run([sys.executable, "-c", TRANSFER], capture_output=True, text=True, check=True)
    assert piped.stderr == ""
