"""SQL from a pull request's config or from a flag is data, not code (issue 18): one SELECT, no
file but the dataset's, no extension, no setting. Each attack below wrote a file, read a
secret or tried a download on the code before the guard."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import commit, git, run_mlci, write

from mlci_tui import config as config_mod
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query.filter import FilterError
from mlci_tui.ledger.query.runs_view import ViewSpec, load_view

CONFIG = """\
datasets:
  customers:
    path: data/customers.csv
    columns:
      customer_id: {type: int64}
    checks:
      - name: attack
        sql: %s
"""
DATA = "customer_id\n1\n2\n3\n"
OUT = "SELECT * FROM (SELECT 1"  # what reopens mlci's wrapper after an injected statement
ATTACKS = {
    "copy": f"SELECT 1 AS x) AS a; COPY (SELECT 42) TO 'pwned.csv'; {OUT}",
    "read_text": "SELECT content FROM read_text('/etc/passwd')",
    "read_csv_outside": "SELECT * FROM read_csv('outside.csv')",
    "install": f"SELECT 1 AS x) AS a; INSTALL httpfs; {OUT}",
    "attach": f"SELECT 1 AS x) AS a; ATTACH 'pwned.db'; {OUT}",
    "set": f"SELECT 1 AS x) AS a; SET enable_external_access = true; {OUT}",
}


def _project(repo: Path, sql: str) -> None:
    write(repo, {"mlci.yaml": CONFIG % json.dumps(sql), "data/customers.csv": DATA, "outside.csv": "secret\n42\n"})


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_check_cannot_write_read_or_load_anything(repo: Path, attack: str) -> None:
    _project(repo, ATTACKS[attack])
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "datasets.customers.checks attack" in proc.stderr and "Traceback" not in proc.stderr
    assert not (repo / "pwned.csv").exists() and not (repo / "pwned.db").exists()
    assert "root:" not in proc.stdout + proc.stderr and "secret" not in proc.stdout


def test_a_check_that_is_a_query_still_runs(repo: Path) -> None:
    _project(repo, "SELECT * FROM data WHERE customer_id > 2")
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 1 and "attack" in proc.stdout, proc.stdout + proc.stderr  # one failing row
    _project(repo, "SELECT * FROM data WHERE customer_id > 5")
    assert run_mlci(repo, "data", "validate").returncode == 0


def test_the_fsmonitor_attack_through_the_pre_commit_hook(repo: Path) -> None:
    """A pull request's check that rewrites .git/config to run a command at the next `git status`."""
    assert run_mlci(repo, "install").returncode == 0
    config_before = (repo / ".git/config").read_text()
    payload = (
        "SELECT 1 AS x) AS a; COPY (SELECT '[core]' || chr(10) || 'fsmonitor = touch FSMONITOR_RAN') "
        f"TO '.git/config' (HEADER false, QUOTE ''); {OUT}"
    )
    _project(repo, payload)
    git(repo, "add", "-A")
    proc = subprocess.run(["git", "commit", "-q", "-m", "innocent"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode != 0 and "only one SELECT" in proc.stderr, proc.stderr
    assert (repo / ".git/config").read_text() == config_before
    git(repo, "status")
    assert not (repo / "FSMONITOR_RAN").exists()


@pytest.mark.parametrize(
    "query",
    [
        "COPY (SELECT 1) TO 'pwned.csv'",
        "ATTACH 'pwned.db'",
        "INSTALL httpfs",
        "SELECT 1; SELECT 2",
        "SELECT content FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('outside.csv')",
    ],
)
def test_mlci_sql_runs_one_select_over_the_views_only(repo: Path, query: str) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5}), "outside.csv": "secret\n42\n"}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    proc = run_mlci(repo, "sql", query)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert not (repo / "pwned.csv").exists() and not (repo / "pwned.db").exists()
    assert "root:" not in proc.stdout and "secret" not in proc.stdout
    assert "0.5" in run_mlci(repo, "sql", "SELECT metrics['acc'] AS acc FROM runs").stdout


def test_a_where_cannot_close_the_query_and_run_another(repo: Path) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    injected = "1=1); COPY (SELECT 1) TO 'pwned.csv'; SELECT * FROM runs WHERE (1=1"
    proc = run_mlci(repo, "runs", "--where", injected)
    assert proc.returncode == 2 and "only one SELECT" in proc.stderr, proc.stderr
    assert not (repo / "pwned.csv").exists()
    reading = run_mlci(repo, "runs", "--where", "(SELECT count(*) FROM read_text('/etc/passwd')) > 0")
    assert reading.returncode == 2 and "root:" not in reading.stdout
    assert run_mlci(repo, "runs", "--where", "metrics['acc'] > 0.4", "--json").returncode == 0


def test_the_tuis_sql_filter_is_a_query_too(repo: Path) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    cfg = config_mod.load(repo)
    for text in (
        "sql: 1=1 ORDER BY 1; COPY (SELECT 1) TO 'pwned.csv'",
        "sql: (SELECT count(*) FROM read_text('/etc/passwd')) > 0",
    ):
        with pytest.raises(FilterError):
            load_view(Repo.find(repo), ViewSpec(filter_text=text), cfg)
    assert not (repo / "pwned.csv").exists()
    assert load_view(Repo.find(repo), ViewSpec(filter_text="sql: metrics['acc'] > 0.4"), cfg).count == 1


def test_an_export_where_cannot_close_the_query(repo: Path) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    injected = "1=1 ORDER BY 1) TO 'pwned.csv'; COPY (SELECT 1"
    proc = run_mlci(repo, "export", "out.parquet", "--where", injected)
    assert proc.returncode == 2 and not (repo / "pwned.csv").exists() and not (repo / "out.parquet").exists()
    assert run_mlci(repo, "export", "out.parquet", "--where", "metrics['acc'] > 0.4").returncode == 0


SLOW = "SELECT * FROM data CROSS JOIN range(1000000000000) AS r WHERE hash(r.range) = 1"


def test_a_query_that_runs_too_long_is_stopped_in_one_line(repo: Path) -> None:
    """MLCI_SQL_SECONDS (an environment variable: a pull request's config cannot raise it)."""
    _project(repo, SLOW)
    proc = run_mlci(repo, "data", "validate", env={"MLCI_SQL_SECONDS": "1"}, timeout=60)
    assert proc.returncode == 2 and "checks attack: stopped after 1 s" in proc.stderr, proc.stderr
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    slow_sql = "SELECT count(*) FROM range(1000000000000) WHERE hash(range) = 1"
    proc = run_mlci(repo, "sql", slow_sql, env={"MLCI_SQL_SECONDS": "1"}, timeout=60)
    assert proc.returncode == 2 and "sql: stopped after 1 s" in proc.stderr and "Traceback" not in proc.stderr


def test_an_export_where_runs_on_a_locked_down_connection(repo: Path) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    reading = "(SELECT count(*) FROM read_text('/etc/passwd')) > 0"
    proc = run_mlci(repo, "export", "out.csv", "--table", "runs", "--where", reading)
    assert proc.returncode == 2 and "Permission Error" in proc.stderr, proc.stderr
    assert not (repo / "out.csv").exists()
    assert run_mlci(repo, "export", "out.csv", "--table", "runs", "--where", "kind = 'commit'").returncode == 0
    assert (repo / "out.csv").read_text().count("\n") == 2  # the header and the one run


def test_the_locked_connection_holds_its_memory_limit(repo: Path) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    shown = run_mlci(repo, "sql", "SELECT current_setting('memory_limit') AS m", "--json").stdout
    assert "GiB" in shown and float(json.loads(shown)[0]["m"].split()[0]) < 4
