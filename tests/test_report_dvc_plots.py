"""`mlci report` draws DVC plots as dvc.yaml defines them (issue 13).

A DVC project written by the test (real git, DVC's file layouts, no DVC installed): ROC and
precision-recall curves overlaid for baseline and candidate (Mermaid on a 0-1 grid, HTML
exact), a confusion TSV as a table (heat-shaded in HTML), a PNG linked in Markdown and
embedded in HTML, at most 6 charts by default, `report.plots` to choose, untrusted names
inert, a plot file DVC keeps out of git read from DVC's cache. Mermaid blocks are parsed by
the Mermaid CLI in Debian's chromium where both can be had.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import dvc_plot_project as project
import pytest
from conftest import commit, git, run_mlci
from markdown_it import MarkdownIt
from npm_tools import npm_package
from test_report import gfm_rows

MERMAID_CLI_VERSION = "12.2.0"
CHROMIUM = "/usr/bin/chromium"


def _report(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = run_mlci(repo, "report", "--base", "HEAD~1", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _blocks(md: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", md, re.S)


def _lines(block: str) -> list[list[float]]:
    return [[float(v) for v in m.split(", ")] for m in re.findall(r"^    line \[(.*)\]$", block, re.M)]


@pytest.fixture
def dvc_repo(repo: Path) -> tuple[Path, dict[str, str]]:
    shas = project.build(repo, commit)
    assert run_mlci(repo, "capture", "HEAD~1", "HEAD").returncode == 0
    return repo, shas


def test_markdown_draws_roc_pr_confusion_and_images_as_dvc_defines_them(dvc_repo: tuple[Path, dict[str, str]]) -> None:
    repo, shas = dvc_repo
    md = _report(repo, "--format", "md")
    blocks = _blocks(md)
    roc = next(b for b in blocks if 'title "ROC curve"' in b)
    # one shared numeric x axis 0..1 and y 0..1; baseline and candidate overlaid, resampled on 0.05 steps
    assert 'x-axis "fpr" 0 --> 1' in roc and 'y-axis "tpr" 0 --> 1' in roc
    base, head = _lines(roc)
    assert len(base) == len(head) == 21
    assert base[0] == head[0] == 0.2  # the vertical step at fpr 0 reaches tpr 0.2
    assert base[2] == round(0.1**0.5, 4) and head[2] == round(0.1**0.3, 4)  # x = 0.1 is a data point
    assert base[-1] == head[-1] == 1
    assert "resampled onto x = 0, 0.05, …, 1" in md and "the HTML report draws the exact points" in md
    prc = next(b for b in blocks if 'x-axis "recall" 0 --> 1' in b)
    assert 'y-axis "precision" 0 --> 1' in prc and len(_lines(prc)) == 2
    # a plot id over two columns of one file keeps its title and its steps as the x axis
    training = next(b for b in blocks if 'title "training"' in b)
    assert 'x-axis "step" 0 --> 3' in training and len(_lines(training)) == 4
    assert _lines(training)[0] == [1, 0.8, 0.6, 0.55]
    # a DVC plot file is not drawn again as a series "by step" (the bug: ROC drawn by step)
    assert "fpr by step" not in md and "tpr by step" not in md and "### Step curves" not in md

    rows = gfm_rows(md)
    header = next(r for r in rows if r[0] == "predicted ↓ actual →")
    assert header[1:] == ["bird", "cat", "dog"]
    table = {r[0]: r[1:] for r in rows if len(r) == 4 and r[0] in ("bird", "cat", "dog")}
    assert table == {"bird": ["10", "0", "0"], "cat": ["0", "8 (+2)", "2 (-2)"], "dog": ["0", "2 (-2)", "8 (+2)"]}

    # the image: the path at each commit, linked to the code host when CI names it
    assert f"eval/importance.png at {shas['head'][:7]}" in md and f"at {shas['base'][:7]}" in md
    assert "http" not in md
    env = {"GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "acme/churn"}
    linked = _report(repo, "--format", "md", env=env)
    url = f"https://github.example/acme/churn/blob/{shas['head']}/eval/importance.png"
    assert f"]({url})" in linked
    assert f'<a href="{url}">' in MarkdownIt("commonmark").render(linked)

    # at most 6 charts in all: 4 x/y plots, the confusion table and the image take them all
    assert len(blocks) == 4 and "### History" not in md


def test_html_draws_exact_curves_a_heat_shaded_matrix_and_embedded_images(
    dvc_repo: tuple[Path, dict[str, str]],
) -> None:
    repo, _shas = dvc_repo
    page = _report(repo, "--format", "html")
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(svgs) == 4  # ROC, PR, training, loss: one drawing each
    roc = next(s for s in svgs if "aria-label='ROC curve'" in s)
    polylines = re.findall(r"points='([^']*)'", roc)
    assert len(polylines) == 2 and all(len(p.split()) == len(project.ROC_FPR) for p in polylines)  # exact points
    ticks = re.findall(r"text-anchor='middle'>([0-9.]+)</text>", roc)
    assert ticks == ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]  # round, spaced
    tables = re.findall(r"<table class='confusion'>.*?</table>", page, re.S)
    assert len(tables) == 2 and "<caption>baseline</caption>" in tables[0]
    shades = re.findall(r"background:rgba\(31,111,235,([0-9.]+)\)", tables[1])
    assert len(shades) == 9 and max(map(float, shades)) == 0.88 and min(map(float, shades)) == 0
    images = re.findall(r"<img src='data:image/png;base64,([^']+)'", page)
    assert [base64.b64decode(i) for i in images] == [
        project.png(4, 3, (150, 150, 150)),
        project.png(4, 3, (31, 111, 235)),
    ]
    assert "<script" not in page and not re.search(r"(src|href)\s*=\s*'(?!data:image/)", page)
    assert "img-src data:" in page  # the page's policy allows images from data: URIs only

    doc = json.loads(_report(repo, "--format", "json"))
    assert [c["chart"] for c in doc["plots"]] == ["roc", "linear", "pr", "confusion", "image", "linear"]
    assert doc["plots"][0]["id"] == "eval/roc.json"  # the gate rule on auc speaks for the ROC curve: first
    term = _report(repo, "--format", "term", env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert "ROC curve" in term and re.search(r"cat\s+0\s+8 \(\+2\)\s+2 \(-2\)", term)


def test_at_most_six_charts_by_default_and_report_plots_chooses(repo: Path) -> None:
    project.build(repo, commit)
    extra = {f"curves/c{i}.csv": project.curve([1.0 - i / 10, 0.5]) for i in range(4)}
    dvc = project.DVC_YAML + "".join(f"  - curves/c{i}.csv\n" for i in range(4))
    commit(repo, {"dvc.yaml": dvc, **extra}, "more plots")
    assert run_mlci(repo, "capture", "HEAD~2", "HEAD~1", "HEAD").returncode == 0
    proc = run_mlci(repo, "report", "--base", "HEAD~2", "--format", "md")
    assert proc.returncode == 0, proc.stderr
    charts = len(_blocks(proc.stdout)) + proc.stdout.count("| predicted ↓ actual →") + proc.stdout.count("- image")
    assert charts == 6 and "4 more plots in dvc.yaml not drawn (name them in `report.plots`)." in proc.stdout

    (repo / "mlci.yaml").write_text(
        project.MLCI_YAML + "report:\n  plots: [eval/confusion.tsv, loss_and_acc, curves/c3.csv, no/such.json]\n"
    )
    doc = json.loads(run_mlci(repo, "report", "--base", "HEAD~2", "--format", "json").stdout)
    assert [c["id"] for c in doc["plots"]] == ["eval/confusion.tsv", "loss_and_acc", "curves/c3.csv"]
    assert "report.plots: 'no/such.json' is not a plot dvc.yaml declares" in doc["plot_notes"]
    assert [h["metrics"]["auc"] for h in doc["history"]] == [0.87, 0.91, 0.91]  # 3 charts left for the history
    bad = repo / "mlci.yaml"
    bad.write_text(project.MLCI_YAML + "report:\n  plots: {a: 1}\n")
    refused = run_mlci(repo, "report", "--format", "md")
    assert refused.returncode == 2 and "report.plots" in refused.stderr and "Traceback" not in refused.stderr


HOSTILE = '<script>x</script>|`y`"]}%%'


def test_untrusted_plot_ids_columns_paths_and_cells_stay_inert(repo: Path) -> None:
    dvc = (
        "plots:\n"
        f"  - '{HOSTILE}':\n"
        f"      y: {{'odd|<b>dir</b>/[x](http://e.example).csv': ['{HOSTILE}']}}\n"
        "  - cm.json: {template: confusion, x: actual, y: predicted}\n"
    )

    def data(shift: float) -> dict[str, str]:
        column = HOSTILE.replace('"', '""')
        return {
            "odd|<b>dir</b>/[x](http://e.example).csv": f'step,"{column}"\n0,{shift}\n1,{shift + 1}\n',
            "cm.json": json.dumps(
                [{"actual": "<img src=x>", "predicted": "a|b"}, {"actual": "a|b", "predicted": "a|b"}]
            ),
            "eval/metrics.json": json.dumps({"auc": 0.8 + shift / 10}),
        }

    commit(repo, {"mlci.yaml": project.MLCI_YAML, "dvc.yaml": dvc, ".dvc/config": "", **data(0)}, "a")
    commit(repo, data(1), "b")
    assert run_mlci(repo, "capture", "HEAD~1", "HEAD").returncode == 0
    md = _report(repo, "--format", "md")
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    for markup in ("<script", "<b>", "<img", "<a "):
        assert markup not in rendered, markup
    matrix = [r for r in gfm_rows(md) if len(r) != 6]  # all but the metrics table (6 cells a row)
    assert len(matrix) == 3 and {len(r) for r in matrix} == {3}, matrix  # two labels, whatever they hold
    assert matrix[0][1:] == ["&lt;img src=x&gt;", "a|b"]
    blocks = _blocks(md)
    assert len(blocks) == 2  # the plot and the history of auc
    for line in blocks[0].splitlines():
        if line.strip().startswith(("title", "x-axis", "y-axis")):
            assert line.count('"') == 2 and "<" not in line and "`" not in line and "%%" not in line, line
    page = _report(repo, "--format", "html")
    assert "<script" not in page and "<b>" not in page and "<img" not in page and "&lt;script&gt;" in page


def test_a_plot_kept_out_of_git_is_read_from_dvcs_cache(repo: Path) -> None:
    """`eval/roc.json` is a DVC output (in dvc.lock, .gitignore'd): its bytes are in .dvc/cache."""
    project.build(repo, commit)
    roc = project.roc(0.2)
    md5 = hashlib.md5(roc.encode()).hexdigest()
    lock = f"schema: '2.0'\nstages:\n  train:\n    cmd: python train.py\n    outs:\n    - path: eval/roc.json\n      md5: {md5}\n      size: {len(roc)}\n"
    git(repo, "rm", "-q", "--cached", "eval/roc.json")
    commit(repo, {"dvc.lock": lock, "eval/.gitignore": "/roc.json\n"}, "roc.json kept by DVC")
    assert run_mlci(repo, "capture", "HEAD~2", "HEAD").returncode == 0
    doc = json.loads(run_mlci(repo, "report", "--base", "HEAD~2", "--format", "json").stdout)
    chart = next(c for c in doc["plots"] if c["id"] == "eval/roc.json")
    assert [ln["side"] for ln in chart["lines"]] == ["baseline"]  # the candidate's curve is not here
    assert any("eval/roc.json" in n and "DVC's cache" in n for n in doc["plot_notes"]), doc["plot_notes"]

    cached = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    cached.parent.mkdir(parents=True)
    cached.write_text(roc)
    doc = json.loads(run_mlci(repo, "report", "--base", "HEAD~2", "--format", "json").stdout)
    chart = next(c for c in doc["plots"] if c["id"] == "eval/roc.json")
    head = next(ln for ln in chart["lines"] if ln["side"] == "candidate")
    assert head["points"][2] == [0.03, round(0.03**0.2, 4)]


def _mermaid_cli(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} for the Mermaid CLI (apt-get install chromium)")
    monkeypatch.setenv("PUPPETEER_SKIP_DOWNLOAD", "1")  # Debian's chromium, not a downloaded browser
    folder = npm_package("@mermaid-js/mermaid-cli", MERMAID_CLI_VERSION, "src/cli.js", "MLCI_MERMAID_CLI_DIR")
    return folder / "node_modules" / ".bin" / "mmdc"


def test_mermaid_blocks_parse_with_the_mermaid_cli(
    dvc_repo: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo, _shas = dvc_repo
    mmdc = _mermaid_cli(monkeypatch)
    md = tmp_path / "report.md"
    md.write_text(_report(repo, "--format", "md"))
    config = tmp_path / "puppeteer.json"
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    config.write_text(json.dumps({"executablePath": CHROMIUM, "args": args}))
    env = dict(os.environ, PUPPETEER_EXECUTABLE_PATH=CHROMIUM)
    node = shutil.which("node")
    assert node
    proc = subprocess.run(
        [str(mmdc), "-p", str(config), "-i", str(md), "-o", str(tmp_path / "out.md")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    drawn = sorted(tmp_path.glob("out-*.svg"))
    assert len(drawn) == len(_blocks(md.read_text())) == 4
    assert all("<svg" in p.read_text() for p in drawn)
