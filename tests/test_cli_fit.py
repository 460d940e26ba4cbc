"""A command line that fits the terminal (issue 14): tables as wide as `COLUMNS`, columns by
priority, `--wide`, `--precision`; `--where` in the TUI's filter language or SQL; "did you
mean" for commands and options; the gate's hint when there is no baseline. Real git
repositories and the real `mlci` process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import commit, git, on_a_terminal, run_mlci

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


def test_the_lines_under_a_table_wrap_too(repo: Path) -> None:
    proc = run_mlci(repo, "runs", env={"COLUMNS": "40"})  # no runs yet: the hint says how to get some
    assert proc.returncode == 0 and "no runs yet" in proc.stdout, proc.stderr
    assert max(widths(proc.stdout)) <= 40, proc.stdout
    proc = run_mlci(repo, "stages", env={"COLUMNS": "40"})
    assert "nothing promoted yet" in proc.stdout and max(widths(proc.stdout)) <= 40, proc.stdout


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


NOTE = "the warmup helped early but the plateau after epoch 40 looks like the schedule, not the data " * 2


@pytest.fixture
def promoted_repo(runs_repo: Path) -> Path:
    """`runs_repo` with HEAD promoted, a repeat of HEAD (another seed: a group of two), a long note,
    and in the working tree a long param."""
    head = git(runs_repo, "rev-parse", "HEAD").strip()
    assert run_mlci(runs_repo, "promote", head).returncode == 0
    params = (runs_repo / "params.yaml").read_text().replace("seed: 5", "seed: 6")
    metrics = json.loads((runs_repo / "metrics.json").read_text()) | {"zeta_acc": 0.81}
    (runs_repo / "params.yaml").write_text(params)
    (runs_repo / "metrics.json").write_text(json.dumps(metrics))
    with (runs_repo / "mlci.yaml").open("a") as config:
        config.write("train:\n  repeats: {seed_param: seed}\n")
    proc = run_mlci(runs_repo, "record", "--repeat", "--commit", head)
    assert proc.returncode == 0, proc.stderr
    assert run_mlci(runs_repo, "note", head, NOTE).returncode == 0
    # the working tree (`diff --workspace`) gains a long param
    (runs_repo / "params.yaml").write_text(params + f"a_rather_long_parameter_name_that_explains_itself: {LONG}\n")
    return runs_repo


FITTED = {  # every table command but `mlci runs` (above), with what it must keep whole
    "show": ["show", "HEAD"],
    "gate": ["gate", "--head", "HEAD~2"],
    "diff": ["diff", "HEAD", "--workspace", "--all"],  # the group of HEAD's two runs, the working tree
    "stages": ["stages"],
    "sql": ["sql", "SELECT run_id, kind, message, author, params, metrics FROM runs"],
    "groups": ["runs", "--groups"],
}


def column_text(table: str, name: str) -> str:
    """The text of the column headed `name` in the first table of `table`, its wrapped lines joined."""
    lines = table.splitlines()
    top = next(n for n, line in enumerate(lines) if line.split()[:1] and name in line.split())
    start = lines[top].index(name)
    body = []
    for line in lines[top + 2 :]:
        if not line.strip():
            break
        body.append(line[start:].strip())
    return " ".join(part for part in body if part)


@pytest.mark.parametrize("columns", [60, 80])
@pytest.mark.parametrize("command", sorted(FITTED))
def test_every_table_command_fits_the_terminal(promoted_repo: Path, command: str, columns: int) -> None:
    proc = run_mlci(promoted_repo, *FITTED[command], env={"COLUMNS": str(columns)})
    assert proc.returncode in (0, 1), proc.stderr  # the gate fails this candidate
    assert max(widths(proc.stdout)) <= columns, proc.stdout
    piped = run_mlci(promoted_repo, *FITTED[command])  # a pipe without COLUMNS: the table whole
    if max(widths(piped.stdout)) <= columns:
        assert proc.stdout == piped.stdout, "a table that fits is printed as it is"
        return
    header = proc.stdout.splitlines()
    if command in ("gate", "diff", "show", "stages"):  # every column kept: text wraps instead
        wide = [line.split() for line in piped.stdout.splitlines() if line.startswith(("metric", "field", "stage"))]
        assert wide, piped.stdout
        for name in wide[0]:
            assert any(name in line.split() for line in header), f"{name} dropped:\n{proc.stdout}"
    else:  # columns by priority, the rest behind --wide
        assert "more columns: --wide" in proc.stdout
        assert "more columns" not in run_mlci(promoted_repo, *FITTED[command], "--wide").stdout


def test_the_gate_reason_and_a_long_value_wrap_whole(promoted_repo: Path) -> None:
    verdict = json.loads(run_mlci(promoted_repo, "gate", "--head", "HEAD~2", "--json").stdout)
    rule = next(r for r in verdict["rules"] if r["metric"] == "zeta_acc")
    assert rule["verdict"] == "fail" and rule["reason"].startswith("dropped by")
    narrow = run_mlci(promoted_repo, "gate", "--head", "HEAD~2", env={"COLUMNS": "60"}).stdout
    assert f"fail: {rule['reason']}" not in narrow, "at 60 columns the reason is wrapped ..."
    assert column_text(narrow, "verdict") == f"fail: {rule['reason']}", narrow  # ... and whole
    diff = run_mlci(promoted_repo, *FITTED["diff"], env={"COLUMNS": "60"}).stdout
    assert "0.805 ± 0.0071 (2)" in diff, "the base is a group of repeats: a spread is not cut"
    params = next(block for block in diff.split("\n\n") if block.startswith("param"))
    assert LONG in column_text(params, "head"), "a long value wraps whole"
    shown = run_mlci(promoted_repo, "show", "HEAD", env={"COLUMNS": "60"}).stdout
    assert LONG in " ".join(line[len("message   ") :].strip() for line in _rows_of(shown, "message"))
    assert " ".join(NOTE.split()) in " ".join(shown.split()), "the note, wrapped"


def _rows_of(table: str, field: str) -> list[str]:
    """The lines of `field`'s row in a field/value table: its own, then its continuation lines."""
    lines = table.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(field + " "))
    rows = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        rows.append(line)
    return rows


def test_groups_and_sql_keep_columns_by_priority(promoted_repo: Path) -> None:
    groups = run_mlci(promoted_repo, "runs", "--groups", env={"COLUMNS": "60"}).stdout
    assert {"run", "message", "zeta_acc"} <= set(groups.splitlines()[0].split()), "id, subject, the gate's metric"
    assert "(2)" in groups, "the group of two"
    rows = run_mlci(promoted_repo, "sql", "SELECT run_id, kind, message, author FROM runs", env={"COLUMNS": "40"})
    assert rows.stdout.splitlines()[0].split()[:2] == ["run_id", "kind"], "the query's columns in its order"
    assert max(widths(rows.stdout)) <= 40
    csv = run_mlci(promoted_repo, "sql", "SELECT run_id, message FROM runs", "--csv", env={"COLUMNS": "40"})
    assert LONG in csv.stdout, "machine formats are never cut"


def exported(repo: Path, name: str, *where: str) -> list[dict[str, object]]:
    proc = run_mlci(repo, "export", name, *where)
    assert proc.returncode == 0, proc.stderr
    return sorted(json.loads((repo / name).read_text()), key=lambda r: str(r["run_id"]))


def test_export_where_takes_the_filter_language_and_sql(runs_repo: Path) -> None:
    expression = exported(runs_repo, "a.json", "--where", "zeta_acc > 0.7")
    assert len(expression) == 3
    assert expression == exported(runs_repo, "b.json", "--where", "sql: metrics['zeta_acc'] > 0.7")
    assert expression == exported(runs_repo, "c.json", "--where", "metrics['zeta_acc'] > 0.7"), "SQL as before"
    assert [r["run_id"] for r in expression] == sorted(ids(runs_repo, "--where", "zeta_acc > 0.7")), "as runs reads it"
    assert len(exported(runs_repo, "d.json", "--where", "zeta_acc > 0.7 or lr in (0.1, 0.05)")) == 5
    proc = run_mlci(runs_repo, "export", "e.json", "--where", "zeta_ac > 0.7")  # neither: one line, exit 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert "did you mean zeta_acc" in proc.stderr and not (runs_repo / "e.json").exists()
    proc = run_mlci(runs_repo, "export", "f.json", "--where", "sql: run_id IN (SELECT * FROM read_text('/etc/passwd'))")
    assert proc.returncode == 2 and not (runs_repo / "f.json").exists(), "the SQL path keeps its sandbox"


def _on_a_terminal(code: str, cwd: Path | None = None) -> str:
    """What the Python `code` writes when its stderr (and stdout) is a terminal."""
    return on_a_terminal([sys.executable, "-c", code], cwd)[1]


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


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_mlflow_import_shows_progress_on_a_terminal_only(repo: Path, tmp_path: Path, kind: str) -> None:
    from test_import_mlflow import make_file_store, make_sqlite_store

    sha = commit(repo, {"train.py": "print(1)\n"}, "training code")
    store = tmp_path / ("mlruns" if kind == "files" else "mlflow.db")
    (make_file_store if kind == "files" else make_sqlite_store)(store, sha)  # three runs: two imported, one deleted
    code = f"import sys; from mlci_tui.cli.main import main; sys.exit(main(['import', 'mlflow', {str(store)!r}]))"
    shown = _on_a_terminal(code, cwd=repo)
    # the file store's run folders (the deleted one too) as they are read; the database's runs
    assert "read mlflow runs" in shown and ("3/3" if kind == "files" else "2/2") in shown, shown
    assert "import mlflow" in shown and "2/2" in shown, shown
    assert "imported 2 run(s)" in shown
    git(repo, "update-ref", "-d", "refs/mlci/ledger")  # again, into an empty ledger, through a pipe
    piped = run_mlci(repo, "import", "mlflow", str(store))
    assert piped.returncode == 0 and "imported 2 run(s)" in piped.stdout, piped.stderr
    assert "mlflow" not in piped.stderr and "━" not in piped.stderr + piped.stdout


def test_wrapped_cells_stay_inert(tmp_path: Path) -> None:
    """Markup, escapes and bidi controls in every field, shown at 40 columns: folded, never read."""
    from test_display_safety import FORBIDDEN, _build

    root = tmp_path / "evil"
    _build(root)
    for args in (["show", "HEAD"], ["diff", "HEAD", "--workspace", "--all"], ["runs"], ["sql", "SELECT * FROM runs"]):
        proc = run_mlci(root, *args, env={"COLUMNS": "40"})
        assert proc.returncode == 0, proc.stderr
        assert max(widths(proc.stdout)) <= 40, proc.stdout
        assert not [c for c in FORBIDDEN if c in proc.stdout], proc.stdout
    shown = run_mlci(root, "show", "HEAD", env={"COLUMNS": "40"}).stdout
    tags = "".join(" ".join(_rows_of(shown, "tags")).split())
    assert "[link=https://evil.example]x[/link]" in tags, "markup printed as text, not read"
    assert "\\x1b[2J" in "".join(" ".join(_rows_of(shown, "message")).split()), "an escape made visible"


def test_a_table_no_command_shaped_fits_by_wrapping(repo: Path) -> None:
    """`data status` (like the sweep and bisect tables) says nothing about fitting: output.write
    fits it to `COLUMNS` by default, every column kept and the long path wrapped whole."""
    path = "data/" + "a_dataset_whose_name_says_what_it_holds_" * 2 + ".csv"
    (repo / "data").mkdir()
    (repo / path).write_text("id,v\n1,2\n")
    assert run_mlci(repo, "data", "add", path).returncode == 0
    roomy = run_mlci(repo, "data", "status", env={"COLUMNS": "200"})
    assert roomy.returncode == 0, roomy.stderr
    assert path in roomy.stdout and max(widths(roomy.stdout)) > 60, "a wide terminal: one line a row"
    narrow = run_mlci(repo, "data", "status", env={"COLUMNS": "60"})
    assert max(widths(narrow.stdout)) <= 60, narrow.stdout
    assert roomy.stdout.split()[:6] == narrow.stdout.split()[:6], "every column is kept"
    lines = narrow.stdout.splitlines()
    path_width = len(lines[1].split()[0])  # the dashes under the first column
    assert "".join(line[:path_width].strip() for line in lines[2:]) == path, "the path wraps whole"
