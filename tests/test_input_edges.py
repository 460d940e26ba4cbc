"""Inputs that reached the ledger wrongly or ended in exit 70 (issue 18, edges): each is now a
one-line error naming the file and key, exit 2, with nothing recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, run_mlci, write


def _runs(repo: Path) -> int:
    proc = run_mlci(repo, "sql", "SELECT count(*) AS n FROM runs", "--json")
    return int(proc.stdout.split('"n": ')[1].split("}")[0]) if proc.returncode == 0 else 0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"metrics.json": '{"acc": ' + "9" * 400 + "}"}, "metrics.json: acc: integer too large (400 digits)"),
        ({"metrics.json": '{"acc": 0.5, "acc": 0.9}'}, "metrics.json: invalid JSON: duplicate key 'acc'"),
        ({"params.yaml": "tags: !!set {a, b}\n", "metrics.json": '{"acc": 1}'}, "params.yaml: tags: a YAML set"),
        (
            {"params.yaml": "blob: !!binary aGVsbG8=\n", "metrics.json": '{"acc": 1}'},
            "params.yaml: blob: a YAML binary",
        ),
        ({"params.yaml": "lr: [1, !!set {a}]\n", "metrics.json": '{"acc": 1}'}, "params.yaml: lr: a YAML set"),
    ],
    ids=["huge-int", "json-duplicate-key", "yaml-set", "yaml-binary", "set-in-a-list"],
)
def test_bad_values_are_one_line_errors_and_record_nothing(repo: Path, files: dict[str, str], message: str) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    write(repo, files)
    proc = run_mlci(repo, "record")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert _runs(repo) == 0


def test_a_config_nested_ten_thousand_levels_is_a_config_error(repo: Path) -> None:
    write(repo, {"mlci.yaml": "a: " + "{b: " * 10_000 + "1" + "}" * 10_000 + "\n"})
    proc = run_mlci(repo, "gate")
    assert proc.returncode == 2 and "mlci.yaml: nested too deeply" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_gitignore_entries_match_exactly_the_added_file(repo: Path) -> None:
    """`[abc].csv` used to ignore `a.csv`, a trailing space was dropped, a line break in a name
    injected a line of its own (`!/secret.txt`)."""
    git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    write(repo, {"data/[abc].csv": "x\n1\n", "data/a.csv": "x\n2\n", "data/trail ": "x\n3\n", "data/q?.csv": "x\n4\n"})
    for name in ("data/[abc].csv", "data/trail ", "data/q?.csv"):
        proc = run_mlci(repo, "data", "add", name)
        assert proc.returncode == 0, proc.stderr
    ignored = git(
        repo, "check-ignore", "--no-index", "data/[abc].csv", "data/trail ", "data/q?.csv", check=False
    ).splitlines()
    assert ignored == ["data/[abc].csv", "data/trail ", "data/q?.csv"]
    assert git(repo, "check-ignore", "--no-index", "data/a.csv", check=False) == ""
    (repo / "data" / "x\n!").mkdir()
    write(repo, {"data/x\n!/secret.txt": "s\n"})
    proc = run_mlci(repo, "data", "add", "data/x\n!/secret.txt")
    assert proc.returncode == 2 and "line break" in proc.stderr and "Traceback" not in proc.stderr
    assert "!/" not in (repo / ".gitignore").read_text()
    assert not (repo / "data" / "x\n!" / "secret.txt.mlci").exists()  # refused before anything was written


def test_csv_cells_a_spreadsheet_would_run_are_made_inert(repo: Path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    write(repo, {"metrics.json": '{"acc": -0.5}'})
    assert run_mlci(repo, "record", "--name", '=HYPERLINK("http://evil.example","click")').returncode == 0
    proc = run_mlci(repo, "runs", "--csv")
    assert proc.returncode == 0
    assert "'=HYPERLINK" in proc.stdout and ',"=HYPERLINK' not in proc.stdout
    sql = run_mlci(repo, "sql", "SELECT name, metrics['acc'] AS acc FROM runs", "--csv").stdout.splitlines()
    assert sql[1].startswith("\"'=HYPERLINK") and sql[1].endswith(",-0.5")  # a negative number stays a number


def _csv(text: str) -> list[list[str]]:
    import csv
    import io

    return list(csv.reader(io.StringIO(text)))


def test_every_csv_output_strips_controls_and_neutralises_formulas_unless_raw(repo: Path) -> None:
    """`runs --csv`, `sql --csv` and `export FILE.csv` share one rule (output.csv_cell): control
    and bidi characters removed, line breaks and tabs a space, a text cell starting with
    `= + - @` (after spaces) prefixed with `'`, numbers and numeric text left alone; `--raw`
    keeps the formula text (never the control characters)."""
    git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    write(
        repo,
        {
            "metrics.json": '{"acc": -0.5, "loss": 1e-7}',
            "params.yaml": 'opt: "@SUM(A1)"\nshift: "-0.25"\nlabel: " -1+cmd|calc"\nplus: "+1"\n',
        },
    )
    name = "\x1b[31mred\x1b[0m \u202eevil\u2066 line\nbreak\x07"
    assert run_mlci(repo, "record", "--name", name).returncode == 0, "record"
    query = "SELECT name, params['opt'] AS opt, params['shift'] AS shift, params['label'] AS label, params['plus'] AS plus, metrics['acc'] AS acc FROM runs"
    expected = ["[31mred[0m evil line break", "'@SUM(A1)", "-0.25", "' -1+cmd|calc", "+1", "-0.5"]
    rows = _csv(run_mlci(repo, "sql", query, "--csv").stdout)
    assert rows[1] == expected, rows
    raw = _csv(run_mlci(repo, "sql", query, "--csv", "--raw").stdout)
    assert raw[1] == ["[31mred[0m evil line break", "@SUM(A1)", "-0.25", " -1+cmd|calc", "+1", "-0.5"], raw

    listing = run_mlci(repo, "runs", "--csv").stdout
    assert "\x1b" not in listing and "\u202e" not in listing and "\x07" not in listing
    assert "[31mred[0m evil line break" in listing

    out = repo / "out.csv"
    assert run_mlci(repo, "export", str(out)).returncode == 0
    params = _csv((repo / "out.params.csv").read_text())
    values = {row[2]: row[3] for row in params[1:]}
    assert values["opt"] == "'@SUM(A1)" and values["label"] == "' -1+cmd|calc" and values["shift"] == "-0.25"
    runs = (repo / "out.runs.csv").read_text()
    assert "\x1b" not in runs and "\u202e" not in runs and "[31mred[0m evil line break" in runs
    metrics = _csv((repo / "out.metrics.csv").read_text())
    assert sorted(row[-1] for row in metrics[1:]) == ["-0.5", "1e-07"]  # numbers as DuckDB wrote them
    assert run_mlci(repo, "export", str(out), "--force", "--raw").returncode == 0
    values = {row[2]: row[3] for row in _csv((repo / "out.params.csv").read_text())[1:]}
    assert values["opt"] == "@SUM(A1)" and values["label"] == " -1+cmd|calc"
    assert not list(repo.glob(".out*"))  # no temporary file left
