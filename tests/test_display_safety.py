"""Untrusted text prints inertly: markup, ANSI escapes and bidi controls in every output format.

Run names, commit messages, authors, notes, tags, metric names, series names, param names and
values all carry Rich markup (`[/]`, `[link=...]`, `[bold red]`), terminal escapes (CSI clear
screen, OSC 8 hyperlink, C1 CSI, carriage return) and bidi overrides. `mlci runs`, `mlci show`
and `mlci sql` in table, json, csv and md must print no raw control character, JSON must still
round-trip to the original strings, and Markdown must escape `|`, `[` and `<`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import git, run_mlci, write

from mlci_tui.output import write as write_rows
from mlci_tui.sanitize import display, markdown_cell

MARKUP = "run-[/] [link=https://evil.example]x[/link] [bold red]R"
ESCAPES = "\x1b[2J\x1b]8;;https://evil.example\x07L\x1b]8;;\x07\x9b31m\rZ"
BIDI = "\u202eabc\u2066"
EVIL = f"{MARKUP} {ESCAPES} {BIDI} | <img src=x>"
# characters that must never reach a terminal raw
FORBIDDEN = ["\x1b", "\x07", "\x9b", "\r", "\u202e", "\u2066"]
FORMATS = ["table", "json", "csv", "md"]
SQL = (
    "SELECT run_id, name, message, author, params, metrics, tags, "
    "(SELECT list(s.name ORDER BY s.name) FROM steps s WHERE s.run_id = r.run_id) AS series, "
    "(SELECT list(p.value ORDER BY p.name) FROM params p WHERE p.run_id = r.run_id) AS param_values "
    "FROM runs r ORDER BY kind"
)
COMMANDS = {
    "runs": ["runs", "--all-params", "--wide"],  # --wide: the message whole, as the check reads it
    "show": ["show", "HEAD"],
    "sql": ["sql", SQL],
}
_OUTPUTS: dict[tuple[str, str], subprocess.CompletedProcess[str]] = {}


def _build(root: Path) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    curve = io.StringIO()
    csv.writer(curve, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(["step", "s" + EVIL])
    curve.write("0,0.5\n1,0.25\n")
    write(
        root,
        {
            "mlci.yaml": "metrics:\n  files: [metrics.json, curve.csv]\n",
            # JSON is YAML 1.2: the escapes stay escapes in the file, real characters once read
            "params.yaml": json.dumps({"p" + EVIL: EVIL, "lr": 0.1}) + "\n",
            "metrics.json": json.dumps({EVIL: 0.5, "acc": 0.9}) + "\n",
            "curve.csv": curve.getvalue(),
        },
    )
    git(root, "add", "-A")
    env_author = {"GIT_AUTHOR_NAME": "Eve " + EVIL.replace("<", "").replace(">", "")}
    proc = subprocess.run(
        ["git", "commit", "-q", "-m", EVIL + "\n\nsecond line " + EVIL],
        cwd=root,
        env={**os.environ, **env_author},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    for args in (
        ["capture"],
        ["record", "--name", EVIL, "-m", EVIL],
        ["note", "HEAD", EVIL + "\nsecond line"],
        ["tag", "HEAD", "[link=https://evil.example]x[/link]"],
    ):
        proc = run_mlci(root, *args)
        assert proc.returncode == 0, (args, proc.stderr)


@pytest.fixture
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """Every command in every format, once per session, run side by side after a warm-up."""
    if not _OUTPUTS:
        root = tmp_path_factory.mktemp("display") / "repo"
        _build(root)
        jobs = [(cmd, fmt) for cmd in COMMANDS for fmt in FORMATS]
        _OUTPUTS[jobs[0]] = run_mlci(root, *COMMANDS[jobs[0][0]], "--format", jobs[0][1])  # builds the cache
        with ThreadPoolExecutor(4) as pool:
            done = pool.map(lambda job: run_mlci(root, *COMMANDS[job[0]], "--format", job[1]), jobs[1:])
            _OUTPUTS.update(zip(jobs[1:], done))
    return _OUTPUTS


def _check_inert(text: str) -> None:
    for char in FORBIDDEN:
        assert char not in text, f"raw {char!r} in output:\n{text}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_raw_control_or_bidi_character_in_any_format(
    outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]], command: str, fmt: str
) -> None:
    proc = outputs[(command, fmt)]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    _check_inert(proc.stdout)
    _check_inert(proc.stderr)
    if fmt == "csv":  # CSV is data: the characters are dropped, the text around them kept (output.csv_cell)
        assert "R [2J]8;;https://evil.exampleL" in proc.stdout, proc.stdout
    elif fmt == "md" or (fmt == "table" and command != "sql"):
        # the text is shown, made visible, not dropped (sql's table cuts long cells short)
        assert "\\x1b[2J" in proc.stdout.replace("\\\\", "\\").replace("\\[", "["), proc.stdout
        assert "\\u202e" in proc.stdout.replace("\\\\", "\\"), proc.stdout


def test_runs_json_round_trips_to_the_original_strings(
    outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]],
) -> None:
    runs = json.loads(outputs[("runs", "json")].stdout)
    assert len(runs) == 2
    by_kind = {r["kind"]: r for r in runs}
    workspace, captured = by_kind["workspace"], by_kind["commit"]
    assert workspace["name"] == EVIL and workspace["message"] == EVIL
    assert captured["message"] == EVIL + "\n\nsecond line " + EVIL
    assert captured["author"].startswith("Eve " + MARKUP)
    for run in runs:
        assert run["metrics"][EVIL] == 0.5
        assert run["metrics"]["s" + EVIL] == 0.25
        assert run["params"]["p" + EVIL] == EVIL
    assert "[link=https://evil.example]x[/link]" in workspace["tags"]


def test_show_json_round_trips_to_the_original_strings(
    outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]],
) -> None:
    doc = json.loads(outputs[("show", "json")].stdout)
    assert doc["name"] == EVIL
    assert {"file": "params.yaml", "name": "p" + EVIL, "value": EVIL} in doc["params_by_file"]
    assert {"file": "metrics.json", "name": EVIL, "value": 0.5} in doc["metrics_by_file"]
    assert "s" + EVIL in [s["name"] for s in doc["steps"]]
    assert doc["notes"][0]["text"] == EVIL + "\nsecond line"


def test_sql_json_round_trips_to_the_original_strings(
    outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]],
) -> None:
    rows = json.loads(outputs[("sql", "json")].stdout)
    for row in rows:
        assert row["params"]["p" + EVIL] == EVIL
        assert row["metrics"][EVIL] == 0.5
        assert row["series"] == ["s" + EVIL, "s" + EVIL]
        assert EVIL in row["param_values"]
    assert EVIL in [r["name"] for r in rows]


_UNESCAPED_MD = re.compile(r"(?<!\\)[\[<]")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_md_escapes_pipes_brackets_and_angle_brackets(
    outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]], command: str
) -> None:
    text = outputs[(command, "md")].stdout
    tables: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("|"):
            tables[-1].append(line)
        elif tables[-1]:
            tables.append([])
    tables = [t for t in tables if t]
    assert tables, text
    for table in tables:
        widths = {len(_CELL_SPLIT.split(line)) for line in table}
        assert len(widths) == 1, table  # an unescaped `|` would add a cell
        for line in table:
            assert not _UNESCAPED_MD.search(line), line
    assert "\\[link=https&#58;//evil.example\\]" in text  # no autolink either
    assert "\\<img src=x\\>" in text
    assert "\\|" in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_csv_parses_with_a_constant_number_of_columns(
    outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]], command: str
) -> None:
    text = outputs[(command, "csv")].stdout
    blocks = [b for b in text.split("\n\n") if b.strip()]
    for block in blocks:
        rows = list(csv.reader(io.StringIO(block)))
        assert len({len(r) for r in rows}) == 1, rows


def test_show_md_notes_and_warnings_are_escaped_too(
    outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]],
) -> None:
    # every line of a Markdown document is Markdown: a note printed raw would become a live link
    text = outputs[("show", "md")].stdout
    for line in text.splitlines():
        assert not _UNESCAPED_MD.search(line), line


# ---- the sanitiser and the writer, in-process ----------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "\x1b[31mred",
        "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\",
        "\x9b2J",
        "a\rb",
        "\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
        "\x00\x08\x7f",
        "x\u2028y\u2029z",
    ],
)
def test_display_leaves_no_control_character(raw: str) -> None:
    shown = display(raw)
    assert all(ch.isprintable() and ch not in "\u202e\u2066" for ch in shown), repr(shown)
    assert display(raw, multiline=True).count("\n") == raw.count("\n")


def test_display_keeps_newlines_only_when_multiline() -> None:
    assert display("a\nb\tc") == "a\\x0ab\\x09c"
    assert display("a\nb\tc", multiline=True) == "a\nb\tc"


def test_markdown_cell_keeps_mentions_and_urls_inert() -> None:
    cell = markdown_cell("ping @octocat at https://evil.example or www.evil.example")
    assert "@octocat" not in cell and "https://" not in cell and "www." not in cell
    assert "@&#8203;octocat" in cell


def test_markdown_cell_escapes_every_markdown_special() -> None:
    cell = markdown_cell("[x](http://e) <b> | `c` *e* _u_ ![i](j) # ~s~ \\")
    # the entities that stop mentions and autolinks (&#58; &#8203;) are the only bare `#`
    assert not re.search(r"(?<!\\)[\[\]()<>|`*_!#~]", re.sub(r"&#\d+;", "", cell.replace("\\\\", ""))), cell


def test_writer_json_keeps_strings_and_escapes_controls() -> None:
    buf = io.StringIO()
    write_rows([{"name": EVIL, "value": float("nan")}], ["name", "value"], "json", buf)
    _check_inert(buf.getvalue())
    assert json.loads(buf.getvalue()) == [{"name": EVIL, "value": "NaN"}]


def test_writer_table_truncation_never_splits_into_a_raw_escape() -> None:
    buf = io.StringIO()
    write_rows([{"name": "x" * 40 + ESCAPES * 3}], ["name"], "table", buf)
    _check_inert(buf.getvalue())
