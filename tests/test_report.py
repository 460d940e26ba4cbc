"""`mlci report`: verdict, metrics (key first, rest folded), params, data, charts, in four formats.

Real git repositories and real `mlci` processes. Snapshots of the Markdown and terminal reports
live in tests/snapshots/ (regenerate with MLCI_UPDATE_SNAPSHOTS=1); run ids and commit ids are
replaced by stable placeholders before comparing.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import IDENTITY, commit, git, run_mlci
from markdown_it import MarkdownIt

SNAPSHOTS = Path(__file__).parent / "snapshots"
FIXED_DATE = {"GIT_AUTHOR_DATE": "2024-05-01T12:00:00Z", "GIT_COMMITTER_DATE": "2024-05-01T12:00:00Z"}
TERM_ENV = {"COLUMNS": "80", "NO_COLOR": "1"}

CONFIG = """\
params:
  files: [params.yaml]
metrics:
  files: [metrics.json, train.csv]
  fields:
    acc: {direction: max}
    loss: {direction: min}
gate:
  rules:
    acc: {max_drop: 0.01}
    loss: {direction: min, max_rise_pct: 5}
    latency_ms: {max: 50}
    f1: {min: 0.5, required: true}
"""


def _metrics(**values: float) -> str:
    return json.dumps(values) + "\n"  # NaN written as the bare NaN token, as Python does


def _curve(**columns: list[float]) -> str:
    names = list(columns)
    rows = ["step," + ",".join(names)]
    for i in range(len(columns[names[0]])):
        rows.append(f"{i}," + ",".join(repr(columns[n][i]) for n in names))
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `_scenario` repository, built once for the tests that only read it.

    Module scope runs before conftest's per-test git isolation, so it sets its own: a private
    HOME, no system config, a fixed identity and fixed dates (stable commit and run ids).
    """
    root = tmp_path_factory.mktemp("regression")
    home = root / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for key, value in {**IDENTITY, **FIXED_DATE}.items():
            mp.setenv(key, value)
        repo = root / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        _scenario(repo)
    return repo


def _scenario(repo: Path) -> dict[str, str]:
    """Three commits: the deployed baseline, a better one, and a candidate that drops acc.

    The candidate also loses a metric (old_metric), gains one (new_metric), has a NaN
    (calibration), changes a param, and both ends have training curves.
    """
    shas = {}
    shas["base"] = commit(
        repo,
        {
            "mlci.yaml": CONFIG,
            "params.yaml": "lr: 0.1\nepochs: 5\nmodel: {depth: 4}\n",
            "metrics.json": _metrics(acc=0.8, loss=0.5, latency_ms=20, f1=0.7, old_metric=3, calibration=0.1),
            "train.csv": _curve(train_loss=[1.0, 0.7, 0.55, 0.5, 0.48], val_acc=[0.5, 0.7, 0.75, 0.79, 0.8]),
        },
        "baseline model",
    )
    shas["mid"] = commit(
        repo,
        {"metrics.json": _metrics(acc=0.82, loss=0.47, latency_ms=21, f1=0.71, old_metric=3, calibration=0.1)},
        "mid",
    )
    shas["head"] = commit(
        repo,
        {
            "params.yaml": "lr: 0.3\nepochs: 5\nmodel: {depth: 6}\n",
            "metrics.json": _metrics(
                acc=0.78, loss=0.45, latency_ms=20.1, f1=0.7, new_metric=0.1 + 0.2, calibration=float("nan")
            ),
            "train.csv": _curve(train_loss=[0.9, 0.6, 0.5, 0.46, 0.45], val_acc=[0.55, 0.7, 0.74, 0.77, 0.78]),
        },
        "candidate: deeper model",
    )
    assert run_mlci(repo, "capture", shas["base"], shas["mid"], shas["head"]).returncode == 0
    promoted = run_mlci(repo, "promote", shas["base"])
    assert promoted.returncode == 0, promoted.stderr
    return shas


def normalise(text: str) -> str:
    """Run ids (26 base32 or their 8-char short form) and commit ids become stable placeholders."""
    seen: dict[str, str] = {}

    def stable(kind: str, value: str) -> str:
        key = value[:7]
        if key not in seen:
            seen[key] = f"{kind}{sum(1 for v in seen.values() if v.startswith(kind)) + 1}"
        return seen[key].ljust(len(value), "_")[: len(value)] if len(value) >= 4 else value

    text = re.sub(r"\b(?=[0-9]*[a-f])[0-9a-f]{7,40}\b", lambda m: stable("C", m.group()), text)
    text = re.sub(r"\b(run |run_id\W+)([a-z2-7]{8,26})\b", lambda m: m.group(1) + stable("R", m.group(2)), text)
    text = re.sub(r"mlci \d+\.\d+\.\d+\S*", "mlci X.Y.Z", text)
    return text


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("MLCI_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path.name}: run with MLCI_UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{path.name} differs (MLCI_UPDATE_SNAPSHOTS=1 regenerates it):\n{text}"


def gfm_rows(markdown: str) -> list[list[str]]:
    """The Markdown's tables as rendered by a CommonMark+tables parser: one list of cells per row."""
    rendered = MarkdownIt("commonmark").enable("table").render(markdown)
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", rendered, re.S):
        rows.append(re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S))
    return rows


def _report(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = run_mlci(repo, "report", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_report_of_a_regression_in_every_format(regression: Path) -> None:
    repo = regression
    md = _report(repo, "--format", "md")
    # the verdict line, failing rule first, arrows coloured by direction in words
    assert md.startswith("## mlci report: FAIL\n")
    assert "**FAIL**: 4 gate rules (1 fail, 3 pass)" in md
    rows = gfm_rows(md)
    metric_rows = [r for r in rows if len(r) == 6]
    assert metric_rows[0] == ["metric", "baseline", "candidate", "change", "trend", "gate"]
    assert metric_rows[1][:5] == ["acc", "0.8", "0.78", "-0.02 (-2.5%)", "↓ worse"]
    assert metric_rows[1][5].startswith("<strong>fail: dropped by 0.02")
    by_name = {r[0]: r for r in rows if r and r[0] not in ("metric", "param")}
    assert by_name["loss"][4] == "↓ better"  # lower loss is better
    # new, removed, NaN, no float noise
    assert by_name["new_metric"][1:5] == ["—", "0.3", "", "new"]
    assert by_name["old_metric"][1:5] == ["3", "—", "", "removed"]
    assert by_name["calibration"][1:5] == ["0.1", "NaN", "", ""]
    assert "0.30000000000000004" not in md and "nan" not in md.replace("NaN", "")
    # params that changed (nested names dotted), data, charts as Mermaid, nothing uploaded
    assert by_name["lr"][1:] == ["0.1", "0.3"] and by_name["model.depth"][1:] == ["4", "6"]
    assert "epochs" not in md and "1 other param unchanged." in md
    assert "No datasets recorded for these runs." in md
    assert md.count("```mermaid") == 6  # 4 key metrics over the history; train_loss and val_acc by step
    assert 'x-axis "commit" [' in md and "line [0.8, 0.82, 0.78]" in md
    assert "line [1, 0.7, 0.55, 0.5, 0.48]\n    line [0.9, 0.6, 0.5, 0.46, 0.45]" in md
    assert "http" not in md and "<img" not in md

    # exit codes: the report reports; --fail-on-gate makes it decide; bad input is 2
    assert run_mlci(repo, "report", "--fail-on-gate", "--format", "json").returncode == 1
    assert run_mlci(repo, "report", "--base", "no-such-thing").returncode == 2
    assert run_mlci(repo, "report", "--dry-run").returncode == 2

    doc = json.loads(_report(repo, "--format", "json"))
    assert doc["verdict"] == "fail" and doc["base"]["resolved_by"] == "stage"
    metrics = {m["name"]: m for m in doc["metrics"]}
    assert metrics["calibration"]["candidate"] == "NaN" and metrics["new_metric"]["status"] == "new"
    assert metrics["acc"]["gate"]["verdict"] == "fail" and metrics["acc"]["better"] is False
    assert [p["metrics"]["acc"] for p in doc["history"]] == [0.8, 0.82, 0.78]
    assert doc["steps"][0]["name"] == "train_loss" and doc["steps"][0]["candidate"][-1] == [4, 0.45]

    html_path = repo.parent / "report.html"
    out = run_mlci(repo, "report", "-o", str(html_path))
    assert out.returncode == 0 and "verdict fail" in out.stdout
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 6
    assert not re.search(r"(src|href)\s*=|url\(|@import|<script|<link", page)  # one self-contained file
    assert "class='worse'>↓ worse</td>" in page and "class='better'>↓ better</td>" in page

    term = _report(repo, "--format", "term", env=TERM_ENV)
    assert "\x1b" not in term and "mlci report: FAIL" in term
    assert "Step curves" in term and ("⣀" in term or "⠤" in term)  # plotext braille
    coloured = _report(repo, "--format", "term", env={"COLUMNS": "80", "FORCE_COLOR": "1"})
    assert "\x1b[31m↓ worse\x1b[0m" in coloured and "\x1b[32m↓ better\x1b[0m" in coloured


def test_snapshots_of_markdown_and_terminal_reports(regression: Path) -> None:
    repo = regression
    check_snapshot("report_regression.md", normalise(_report(repo, "--format", "md")))
    check_snapshot("report_regression.term.txt", normalise(_report(repo, "--format", "term", env=TERM_ENV)))


def test_first_run_has_no_baseline_and_reports_the_candidate(repo: Path) -> None:
    commit(repo, {"mlci.yaml": CONFIG, "params.yaml": "lr: 0.1\n", "metrics.json": _metrics(acc=0.8, f1=0.6)}, "first")
    assert run_mlci(repo, "capture").returncode == 0
    md = _report(repo, "--format", "md")
    assert md.startswith("## mlci report: NO BASELINE\n")
    assert "- baseline: none" in md and "no baseline to compare with" in md
    rows = {r[0]: r for r in gfm_rows(md)}
    assert rows["acc"][1:4] == ["—", "0.8", ""]
    assert rows["f1"][5] == "pass"
    assert "No baseline: the candidate's 1 params are not compared." in md
    assert "```mermaid" not in md  # one commit: no history to draw, no steps
    proc = run_mlci(repo, "report", "--fail-on-gate", "--format", "term", env=TERM_ENV)
    assert proc.returncode == 0, proc.stdout  # "no baseline" passes, as the gate does
    assert "baseline : none" in proc.stdout


def test_hundreds_of_metrics_keep_key_metrics_first_and_fold_the_rest(repo: Path) -> None:
    many_base = {f"layer{i:03d}.score": i / 1000 for i in range(400)}
    many_head = dict(many_base, **{f"layer{i:03d}.score": i / 1000 + 0.5 for i in range(0, 400, 40)})
    commit(repo, {"mlci.yaml": CONFIG, "metrics.json": _metrics(acc=0.8, loss=0.5, **many_base)}, "a")
    commit(repo, {"metrics.json": _metrics(acc=0.81, loss=0.5, **many_head)}, "b")
    assert run_mlci(repo, "capture", "HEAD~1", "HEAD").returncode == 0
    started = time.perf_counter()
    md = _report(repo, "--base", "HEAD~1", "--format", "md")
    elapsed = time.perf_counter() - started
    assert elapsed < 10, elapsed
    shown, folded = md.split("<details>", 1)
    assert "<summary>400 more metrics (10 changed)</summary>" in folded
    shown_rows = [r[0] for r in gfm_rows(shown) if r[0] != "metric"]
    assert shown_rows == ["f1", "acc", "latency_ms", "loss"]  # the failing rule (f1 missing) first
    folded_rows = [r[0] for r in gfm_rows(folded) if r[0] != "metric"]
    assert len(folded_rows) == 400
    assert folded_rows[:3] == ["layer000.score", "layer040.score", "layer080.score"]  # changed ones first
    assert md.index("</details>") < md.index("### Params")
    term = _report(repo, "--base", "HEAD~1", "--format", "term", env=TERM_ENV)
    assert "400 more metrics: 10 changed (below), 390 unchanged" in term
    assert "layer040.score" in term and "layer041.score" not in term
    assert len(term.splitlines()) < 120


UNTRUSTED = [
    "a|b",
    "pipe\\|escaped",
    "tick`code`",
    "```fence",
    "<script>alert(1)</script>",
    "[link](https://evil.example)",
    "*bold*_x_",
    "<details>",
    'quote"title',
    "#heading",
    "esc\x1b[31mred",
]


def test_untrusted_names_do_not_break_tables_or_inject_markup(repo: Path) -> None:
    base = {name: float(i) for i, name in enumerate(UNTRUSTED)}
    head = {name: float(i) + 1 for i, name in enumerate(UNTRUSTED)}
    config = CONFIG.replace("    acc: {direction: max}\n", "    acc: {direction: max}\n    'a|b': {direction: max}\n")
    curve_name = "<b>x</b>|`y`"
    commit(
        repo,
        {
            "mlci.yaml": config,
            "params.yaml": json.dumps({"p|<img src=x>": "v`|`"}) + "\n",
            "metrics.json": json.dumps(dict(base, acc=0.8)) + "\n",
            "train.csv": f'step,"{curve_name}"\n0,1\n1,2\n',
        },
        "a",
    )
    commit(
        repo,
        {
            "params.yaml": json.dumps({"p|<img src=x>": "w</td>"}) + "\n",
            "metrics.json": json.dumps(dict(head, acc=0.81)) + "\n",
            "train.csv": f'step,"{curve_name}"\n0,1\n1,3\n',
        },
        "b",
    )
    assert run_mlci(repo, "capture", "HEAD~1", "HEAD").returncode == 0
    md = _report(repo, "--base", "HEAD~1", "--format", "md")
    rendered = MarkdownIt("commonmark").enable("table").render(md)  # raw HTML allowed: escaping must hold
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered and "<a " not in rendered
    assert "<details" not in rendered  # 12 metrics: nothing folded, and the name `<details>` stays text
    assert "\x1b" not in md
    rows = gfm_rows(md)
    widths = {len(r) for r in rows}
    assert widths <= {6, 3}, widths  # metric tables have 6 cells, the params table 3, whatever the names
    names = {r[0] for r in rows}
    for expected in ("a|b", "pipe\\|escaped", "tick`code`", "```fence", "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert expected in names, (expected, names)
    assert "esc\\x1b[31mred" in names
    assert {r[0]: r for r in rows}["a|b"][4] == "↑ better"
    # Mermaid blocks: titles keep no quotes, backticks or brackets from the names
    for block in re.findall(r"```mermaid\n(.*?)```", md, re.S):
        for line in block.splitlines():
            if line.strip().startswith(("title", "y-axis")):
                assert line.count('"') == 2 and "`" not in line and "<" not in line, line
    assert md.count("```") % 2 == 0

    page = _report(repo, "--base", "HEAD~1", "--format", "html")
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page and "<b>x" not in page
    term = _report(repo, "--base", "HEAD~1", "--format", "term", env=TERM_ENV)
    assert "\x1b" not in term and "esc\\x1b[31mred" in term
    doc = json.loads(_report(repo, "--base", "HEAD~1", "--format", "json"))
    assert {m["name"] for m in doc["metrics"] + doc["folded_metrics"]} >= set(UNTRUSTED)


def test_nan_and_infinity_never_break_the_numbers(repo: Path) -> None:
    commit(repo, {"mlci.yaml": CONFIG, "metrics.json": _metrics(acc=float("nan"), loss=float("inf"), f1=1)}, "a")
    commit(repo, {"metrics.json": _metrics(acc=float("nan"), loss=0.5, f1=float("-inf"))}, "b")
    assert run_mlci(repo, "capture", "HEAD~1", "HEAD").returncode == 0
    md = _report(repo, "--base", "HEAD~1", "--format", "md")
    rows = {r[0]: r for r in gfm_rows(md)}
    assert rows["acc"][1:5] == ["NaN", "NaN", "", "="]
    assert rows["acc"][5].startswith("<strong>fail: NaN")
    assert rows["loss"][1:3] == ["Infinity", "0.5"] and rows["f1"][2] == "-Infinity"
    doc = json.loads(_report(repo, "--base", "HEAD~1", "--format", "json"))
    values = {m["name"]: m["candidate"] for m in doc["metrics"]}
    assert values == {"acc": "NaN", "f1": "-Infinity", "loss": 0.5, "latency_ms": None}
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in values.values())


def test_report_reads_only_the_ledger_and_leaves_the_repository_alone(repo: Path) -> None:
    commit(repo, {"mlci.yaml": CONFIG, "metrics.json": _metrics(acc=0.8)}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    tip = git(repo, "rev-parse", "refs/mlci/ledger")
    status = git(repo, "status", "--porcelain")
    _report(repo, "--format", "md")
    assert git(repo, "rev-parse", "refs/mlci/ledger") == tip and git(repo, "status", "--porcelain") == status
    bad = run_mlci(repo, "report", "--format", "pdf")
    assert bad.returncode == 2


def test_markdown_html_json_and_posting_never_import_plotext_or_textual() -> None:
    code = (
        "import sys, mlci_tui.cli.report, mlci_tui.report.build, mlci_tui.report.markdown, "
        "mlci_tui.report.html, mlci_tui.report.post; "
        "print(sorted(m for m in ('plotext', 'textual') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


RECORD_WITH_DATASETS = """
import json, sys
from mlci_tui import config
from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.capture.build import capture_commit

repo = Repo.find()
cfg = config.load(repo.root)
records = []
for rev, datasets in json.loads(sys.argv[1]):
    record, _ = capture_commit(repo, cfg, rev)
    record["datasets"] = datasets
    records.append(record)
LedgerStore(repo).append(records)
"""


def test_data_changes_come_from_the_runs_datasets(repo: Path) -> None:
    """Dataset hashes as a data-capturing mlci records them (written here by the real ledger code)."""
    commit(repo, {"mlci.yaml": CONFIG, "metrics.json": _metrics(acc=0.8)}, "a")
    commit(repo, {"metrics.json": _metrics(acc=0.81)}, "b")
    same, old, new = "blake3:" + "1" * 64, "blake3:" + "2" * 64, "blake3:" + "3" * 64
    runs = [
        ["HEAD~1", {"data/eval.csv": old, "data/train.csv": same, "data/gone.csv": same}],
        ["HEAD", {"data/eval.csv": new, "data/train.csv": same, "data/<b>new</b>|.csv": same}],
    ]
    proc = subprocess.run(
        [sys.executable, "-c", RECORD_WITH_DATASETS, json.dumps(runs)], cwd=repo, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    md = _report(repo, "--base", "HEAD~1", "--format", "md")
    rows = {r[0]: r for r in gfm_rows(md) if len(r) == 4}
    assert rows["data/eval.csv"][1:] == ["blake3:222222222222", "blake3:333333333333", "changed"]
    assert rows["data/gone.csv"][2:] == ["—", "removed"]
    assert rows["data/&lt;b&gt;new&lt;/b&gt;|.csv"][1:] == ["—", "blake3:111111111111", "new"]
    assert "data/train.csv" not in rows
    assert "evaluated on different data: data/eval.csv" in md
    term = _report(repo, "--base", "HEAD~1", "--format", "term", env=TERM_ENV)
    assert re.search(r"data/eval\.csv\s+blake3:222222222222\s+blake3:333333333333\s+changed", term)
