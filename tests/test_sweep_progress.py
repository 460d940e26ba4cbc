"""`mlci sweep start` on a terminal draws a Rich bar under its lines (trials finished of all, and
how many are done, failed and running) as trials finish; on a pipe it prints its lines and no bar."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import on_a_terminal, run_mlci
from sweep_helpers import ok, status_json, sweep_repo

SWEEPS = """\
  tty:
    params:
      lr: [0.1, 0.2, 0.3]
      sleep: [0.3]
    metric: acc
  piped:
    params:
      lr: [0.1, 0.2, 0.3]
    metric: acc
"""


def _on_a_terminal(cwd: Path, *args: str) -> tuple[int, str]:
    """(exit code, what `mlci ARGS` wrote) with stdout and stderr on a pseudo-terminal."""
    return on_a_terminal([sys.executable, "-m", "mlci_tui", *args], cwd)


def test_sweep_progress_is_a_bar_on_a_terminal_and_lines_on_a_pipe(repo: Path) -> None:
    sweep_repo(repo, SWEEPS)
    ok(run_mlci(repo, "sweep", "create", "tty"))
    code, shown = _on_a_terminal(repo, "sweep", "start", "tty", "-j", "2")
    assert code == 0, shown
    assert "sweep tty" in shown and "3/3" in shown and "3 done, 0 failed, 0 running" in shown, shown
    assert "━" in shown and "trial tty-2 started" in shown  # the bar, and the lines above it
    assert [r["state"] for r in status_json(repo, "tty")] == ["done"] * 3

    ok(run_mlci(repo, "sweep", "create", "piped"))
    proc = ok(run_mlci(repo, "sweep", "start", "piped", "-j", "2"))
    assert "trial piped-2 started" in proc.stderr  # the lines, as before
    assert "━" not in proc.stderr and "0 running" not in proc.stderr and "\x1b[" not in proc.stderr


def test_the_sweep_list_prints_times_as_tables_do_and_fits_the_terminal(repo: Path) -> None:
    sweep_repo(repo, SWEEPS)
    ok(run_mlci(repo, "sweep", "create", "piped"))
    listed = ok(run_mlci(repo, "sweep", "status")).stdout
    created = status_json(repo, "piped")  # the trials exist: the sweep row is there too
    assert created and re.search(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n", listed), listed  # not ISO's T...Z
    narrow = ok(run_mlci(repo, "sweep", "status", env={"COLUMNS": "80"})).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    assert "piped" in narrow and "grid" in narrow, "every column kept, the cells wrapped"
