"""DVC projects as real teams lay them out: capture and import are one run, `mlci init` follows dvc.yaml.

Each project is written here in DVC's documented file formats (DVC itself is not installed)
into a real git repository: DVC 3 `metrics:`/`plots:` with a dvc.lock, DVC 2.x `live:`,
templated `foreach`/`matrix` stages, DVC 0.x/1.x `.dvc` stage files with a `.metric` file,
and metrics DVC keeps out of git beside CML's `metrics.txt` opted in by a glob. For each:
a clone that captures every commit and a clone that imports the history hold the same runs
(same ids, same values), whichever ran first; `mlci init` then a commit captures what
dvc.yaml declares; outputs are not datasets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import commit, git, run_mlci, write
from ledger_helpers import LEDGER_REF, assert_clean_exit, query

from mlci_tui.ledger import records
from mlci_tui.ledger.conflicts import meaning

MD5 = {name: c * 32 for c, name in zip("abcdef", ["data", "prepared", "model", "png", "metrics", "eval"])}
DVC_DIR = {".dvc/config": "[core]\n    remote = storage\n", ".dvc/.gitignore": "/cache\n/tmp\n"}

DVC3_YAML = """\
stages:
  prepare:
    cmd: python src/prepare.py data/data.xml
    deps: [src/prepare.py, data/data.xml]
    params: [prepare.split]
    outs: [data/prepared]
  train:
    cmd: python src/train.py
    deps: [src/train.py, data/prepared]
    params: [train]
    outs: [model.pkl]
  evaluate:
    cmd: python src/evaluate.py
    deps: [model.pkl, data/prepared]
    metrics:
      - eval/metrics.json:
          cache: false
    plots:
      - eval/plots/roc.json:
          cache: false
          x: fpr
          y: tpr
      - eval/importance.png:
          cache: false
metrics:
  - eval/live/metrics.json
plots:
  - eval/live/plots/metrics:
      x: step
"""
DVC3_LOCK = f"""\
schema: '2.0'
stages:
  prepare:
    cmd: python src/prepare.py data/data.xml
    deps:
    - path: data/data.xml
      md5: {MD5["data"]}
    outs:
    - path: data/prepared
      md5: {MD5["prepared"]}.dir
      nfiles: 2
  train:
    cmd: python src/train.py
    deps:
    - path: data/prepared
      md5: {MD5["prepared"]}.dir
    outs:
    - path: model.pkl
      md5: {MD5["model"]}
  evaluate:
    cmd: python src/evaluate.py
    deps:
    - path: model.pkl
      md5: {MD5["model"]}
    - path: data/prepared
      md5: {MD5["prepared"]}.dir
    outs:
    - path: eval/importance.png
      md5: {MD5["png"]}
"""


def dvc3(acc: float) -> dict[str, str | bytes]:
    roc = {"roc": [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.2, "tpr": acc}, {"fpr": 1.0, "tpr": 1.0}]}
    return {
        **DVC_DIR,
        "params.yaml": f"prepare:\n  split: 0.2\ntrain:\n  n_est: {int(acc * 100)}\n  seed: 7\n",
        "dvc.yaml": DVC3_YAML,
        "dvc.lock": DVC3_LOCK,
        "data/data.xml.dvc": f"outs:\n- md5: {MD5['data']}\n  size: 100\n  path: data.xml\n",
        "data/.gitignore": "/data.xml\n/prepared\n",
        ".gitignore": "/model.pkl\n",
        "src/train.py": "print('train')\n",
        "eval/metrics.json": json.dumps({"avg_prec": acc - 0.05, "roc_auc": acc}),
        "eval/plots/roc.json": json.dumps(roc),
        "eval/importance.png": b"\x89PNG\r\n\x1a\n" + bytes([int(acc * 100)]) * 16,
        "eval/live/metrics.json": json.dumps({"train": {"loss": 1 - acc}}),
        "eval/live/plots/metrics/train/loss.tsv": f"step\tloss\n0\t0.9\n1\t{1 - acc}\n",
    }


LIVE_YAML = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [lr]
    live:
      training_metrics:
        summary: true
        html: true
"""


def live(acc: float) -> dict[str, str | bytes]:
    return {
        **DVC_DIR,
        "params.yaml": f"lr: {acc / 100}\n",
        "dvc.yaml": LIVE_YAML,
        "train.py": "print('train')\n",
        "training_metrics.json": json.dumps({"acc": acc, "loss": 1 - acc, "step": 1}),
        "training_metrics/scalars/acc.tsv": f"timestamp\tstep\tacc\n1\t0\t0.5\n2\t1\t{acc}\n",
        "training_metrics/scalars/loss.tsv": f"timestamp\tstep\tloss\n1\t0\t0.5\n2\t1\t{1 - acc}\n",
        ".gitignore": "/training_metrics.html\n",
    }


TEMPLATED_YAML = """\
vars:
  - models: [cnn, xgb]
  - config/paths.yaml
stages:
  evaluate:
    foreach: ${models}
    do:
      cmd: python eval.py ${item}
      metrics:
        - ${results}/${item}/metrics.json:
            cache: false
  sweep:
    matrix:
      model: ${models}
      split: [a, b]
    cmd: python sweep.py ${item.model} ${item.split}
    metrics:
      - sweeps/${item.model}-${item.split}.json:
          cache: false
"""


def templated(acc: float) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        **DVC_DIR,
        "params.yaml": "seed: 1\n",
        "config/paths.yaml": "results: results\n",
        "dvc.yaml": TEMPLATED_YAML,
    }
    for i, model in enumerate(["cnn", "xgb"]):
        files[f"results/{model}/metrics.json"] = json.dumps({"acc": acc + i / 100})
        for j, split in enumerate(["a", "b"]):
            files[f"sweeps/{model}-{split}.json"] = json.dumps({"f1": acc - (i + j) / 100})
    return files


def old_stages(acc: float) -> dict[str, str | bytes]:
    return {
        **DVC_DIR,
        "data.csv.dvc": f"outs:\n- md5: {MD5['data']}\n  path: data.csv\n",
        "train.dvc": (
            f"md5: {MD5['eval']}\ncmd: python train.py\ndeps:\n- path: data.csv\n  md5: {MD5['data']}\n"
            f"outs:\n- path: model.pkl\n  md5: {MD5['model']}\n  cache: true\n"
        ),
        "evaluate.dvc": (
            f"cmd: python evaluate.py\ndeps:\n- path: model.pkl\n  md5: {MD5['model']}\n"
            "outs:\n- path: auc.metric\n  cache: false\n  metric: true\n"
        ),
        "auc.metric": f"{acc}\n",
        ".gitignore": "/data.csv\n/model.pkl\n",
    }


KEPT_OUT_YAML = """\
stages:
  evaluate:
    cmd: python evaluate.py
    deps: [evaluate.py]
    params: [threshold]
    metrics: [eval/metrics.json]
"""


def kept_out(acc: float) -> dict[str, str | bytes]:
    return {
        **DVC_DIR,
        "params.yaml": f"threshold: {acc}\n",
        "dvc.yaml": KEPT_OUT_YAML,
        "dvc.lock": (
            "schema: '2.0'\nstages:\n  evaluate:\n    cmd: python evaluate.py\n    deps:\n    - path: evaluate.py\n"
            f"      md5: {MD5['eval']}\n    outs:\n    - path: eval/metrics.json\n      md5: {MD5['metrics']}\n"
        ),
        "eval/.gitignore": "/metrics.json\n",
        "evaluate.py": "print('eval')\n",
        "reports/metrics.txt": f"Accuracy: {acc}\nPrecision = {acc * 100:.1f}%\n# a comment\n",
        "mlci.yaml": "metrics:\n  files: ['reports/*.txt']\n",
    }


PROJECTS = {"dvc3": dvc3, "live": live, "templated": templated, "old_stages": old_stages, "kept_out": kept_out}
# what the second commit's run must hold, (file, name) -> value: the metrics dvc.yaml declares
EXPECTED = {
    "dvc3": {
        ("eval/metrics.json", "roc_auc"): 0.9,
        ("eval/metrics.json", "avg_prec"): 0.85,
        ("eval/live/metrics.json", "train.loss"): 1 - 0.9,
    },
    "live": {("training_metrics.json", "acc"): 0.9, ("training_metrics.json", "loss"): 1 - 0.9},
    "templated": {
        ("results/cnn/metrics.json", "acc"): 0.9,
        ("results/xgb/metrics.json", "acc"): 0.91,
        ("sweeps/cnn-a.json", "f1"): 0.9,
        ("sweeps/cnn-b.json", "f1"): 0.89,
        ("sweeps/xgb-a.json", "f1"): 0.89,
        ("sweeps/xgb-b.json", "f1"): 0.88,
    },
    "old_stages": {("auc.metric", "auc"): 0.9},
    "kept_out": {("reports/metrics.txt", "Accuracy"): 0.9, ("reports/metrics.txt", "Precision"): 90.0},
}


def build(root: Path, name: str) -> list[str]:
    """Two commits of the project (the values change), no hooks installed."""
    git(root, "init", "-q", "-b", "main")
    return [commit(root, PROJECTS[name](acc), f"{name} at {acc}") for acc in (0.8, 0.9)]


def ledger_records(root: Path) -> dict[str, dict[str, Any]]:
    """Every run record on the ledger ref, by id, as stored."""
    out = {}
    listing = git(root, "ls-tree", "-r", "--name-only", LEDGER_REF).split()
    for path in listing:
        if path.startswith("events/"):
            body = json.loads(git(root, "show", f"{LEDGER_REF}:{path}"))
            if body.get("type") == "run":
                out[body["id"]] = body
    return out


def metrics_of(root: Path, sha: str) -> dict[tuple[str, str], float]:
    rows = query(
        root, 'SELECT m.file, m.name, m.value FROM metrics m JOIN runs r USING (run_id) WHERE r."commit" = ?', [sha]
    )
    return {(f, n): v for f, n, v in rows}


@pytest.fixture(params=sorted(PROJECTS))
def project(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, list[str]]:
    root = tmp_path / "origin"
    root.mkdir()
    return request.param, root, build(root, request.param)


def test_capture_and_import_are_one_run_whichever_runs_first(
    project: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    name, origin, shas = project
    captured, imported = tmp_path / "captured", tmp_path / "imported"
    for clone in (captured, imported):
        git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert_clean_exit(run_mlci(captured, "capture", *shas))
    proc = run_mlci(imported, "import", "dvc")
    assert_clean_exit(proc)
    assert "imported 2 run(s)" in proc.stdout
    by_capture, by_import = ledger_records(captured), ledger_records(imported)
    ids = {records.derived_id("commit", sha) for sha in shas}
    assert set(by_capture) == set(by_import) == ids
    for rid in ids:
        # value for value: what the runs say is equal; only how they were captured differs
        assert meaning(by_capture[rid]) == meaning(by_import[rid]), name
        assert by_capture[rid]["source"] == "capture" and by_import[rid]["source"] == "import:dvc"
    assert metrics_of(imported, shas[1]) == metrics_of(captured, shas[1])
    expected = EXPECTED[name]
    got = metrics_of(captured, shas[1])
    assert {k: got.get(k) for k in expected} == pytest.approx(expected), got
    # the other one second: nothing added either way
    again = run_mlci(captured, "import", "dvc")
    assert_clean_exit(again)
    assert "imported 0 run(s)" in again.stdout and "2 already in the ledger" in again.stdout
    assert_clean_exit(run_mlci(imported, "capture", *shas))
    assert set(ledger_records(imported)) == ids


def test_init_then_a_commit_captures_what_dvc_yaml_declares(
    project: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    name = project[0]
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, {k: v for k, v in PROJECTS[name](0.9).items() if k != "mlci.yaml"})
    if name == "kept_out":
        write(root, {"mlci.yaml": PROJECTS[name](0.9)["mlci.yaml"]})
    proc = run_mlci(root, "init")
    assert_clean_exit(proc)
    assert "mlci follows dvc.yaml" in proc.stdout and "Proposed train.command: dvc repro" in proc.stdout
    if name != "kept_out":
        config = (root / "mlci.yaml").read_text()
        assert "command: dvc repro" in config
        assert not any(line.startswith(("  files:", "params:", "metrics:")) for line in config.splitlines())
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")  # the post-commit hook captures it
    sha = git(root, "rev-parse", "HEAD").strip()
    got = metrics_of(root, sha)
    assert {k: got.get(k) for k in EXPECTED[name]} == pytest.approx(EXPECTED[name]), (got, proc.stdout)
    if name == "kept_out":
        # declared, cached by DVC and ignored by git: init said so, and what CI must do
        assert "eval/metrics.json (cache: true)" in proc.stdout
        assert "mlci record --commit HEAD" in proc.stdout
        assert not any(f == "eval/metrics.json" for f, _ in got)


def test_outputs_are_not_datasets(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    shas = build(root, "dvc3")
    assert_clean_exit(run_mlci(root, "capture", shas[1]))
    body = ledger_records(root)[records.derived_id("commit", shas[1])]
    # the `dvc add` pointer and the prepared data a stage reads are data
    assert body["datasets"] == {"data/data.xml": f"md5:{MD5['data']}", "data/prepared": f"md5:{MD5['prepared']}"}
    # the model (read by evaluate, still a model) and the plot image are outputs
    assert body["outputs"] == {"eval/importance.png": f"md5:{MD5['png']}", "model.pkl": f"md5:{MD5['model']}"}
    old = tmp_path / "old"
    old.mkdir()
    old_shas = build(old, "old_stages")
    assert_clean_exit(run_mlci(old, "capture", old_shas[1]))
    old_body = ledger_records(old)[records.derived_id("commit", old_shas[1])]
    assert old_body["datasets"] == {"data.csv": f"md5:{MD5['data']}"}
    assert old_body["outputs"] == {"model.pkl": f"md5:{MD5['model']}"}


def test_all_branches_import_keeps_the_branch_walked(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    main = build(root, "dvc3")
    git(root, "checkout", "-q", "-b", "feature")
    feature = commit(root, dvc3(0.95), "feature work")
    git(root, "checkout", "-q", "-b", "zeta", main[0])
    zeta = commit(root, dvc3(0.7), "zeta work")
    git(root, "checkout", "-q", "main")
    assert_clean_exit(run_mlci(root, "import", "dvc", "--all-branches"))
    rows = dict(query(root, 'SELECT "commit", branch FROM runs'))
    assert rows == {main[0]: "main", main[1]: "main", feature: "feature", zeta: "zeta"}
    # two clones walking the same branches write the same ids; a capture of one adds nothing
    assert_clean_exit(run_mlci(root, "capture", feature))
    assert query(root, "SELECT count(*) FROM runs") == [(4,)]
    # the branches holding a commit are read from the refs when asked: a merge shows at once
    assert _shown_branches(root, main[0]) == ["feature", "main", "zeta"]
    assert _shown_branches(root, feature) == ["feature"]
    git(root, "merge", "-q", "--ff-only", "feature")
    shown = json.loads(run_mlci(root, "show", feature, "--json").stdout)
    assert shown["branches"] == ["feature", "main"] and shown["branch"] == "feature"  # the stored one stays


def _shown_branches(root: Path, sha: str) -> list[str]:
    proc = run_mlci(root, "show", sha, "--json")
    assert_clean_exit(proc)
    return list(json.loads(proc.stdout)["branches"])


def test_record_in_ci_reads_the_metrics_dvc_keeps_out_of_git(tmp_path: Path) -> None:
    """What init tells a project whose metrics DVC caches: `mlci record --commit HEAD` after
    `dvc repro` records the files dvc.yaml declares, from the working tree."""
    root = tmp_path / "repo"
    root.mkdir()
    shas = build(root, "kept_out")
    write(root, {"eval/metrics.json": json.dumps({"auc": 0.77})})  # what `dvc repro` wrote; ignored by git
    assert git(root, "status", "--porcelain").strip() == ""
    proc = run_mlci(root, "record", "--commit", "HEAD")
    assert_clean_exit(proc)
    rows = query(root, 'SELECT r.kind, r."commit", m.file, m.name, m.value FROM runs r JOIN metrics m USING (run_id)')
    assert ("ci", shas[1], "eval/metrics.json", "auc", 0.77) in rows
    assert ("ci", shas[1], "reports/metrics.txt", "Accuracy", 0.9) in rows
