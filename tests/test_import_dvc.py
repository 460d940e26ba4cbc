"""`mlci import dvc`: a DVC project's history, built here in DVC's documented file formats.

One repository is built per module and imported once through the real `mlci` process; the
tests then read the ledger through the real DuckDB cache. An optional test compares every
value with `dvc metrics show -A --json` from the peers venv (skipped when it is absent).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import IDENTITY, run_mlci
from ledger_helpers import assert_clean_exit, ledger_tip, query

PEER_DVC = Path("/tmp/mlci-bench/peers/bin/dvc")

DVC_YAML = """\
vars:
  - config/eval.yaml
stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [train.lr, train.epochs]
    metrics:
      - ${out_dir}/metrics.json:
          cache: false
      - ${eval.name}.json
      - results/never.json
    plots:
      - dvclive/plots/metrics:
          x: step
metrics:
  - dvclive/metrics.json
"""

OLD_STAGE = """\
cmd: python evaluate.py
outs:
- path: auc.metric
  cache: false
  metric: true
- path: model.pkl
  md5: 0123456789abcdef0123456789abcdef
"""


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _commit(root: Path, env: dict[str, str], files: dict[str, str | None], message: str) -> str:
    for name, text in files.items():
        path = root / name
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(root, "add", "-A", env=env)
    _git(root, "commit", "-q", "-m", message, env=env)
    return _git(root, "rev-parse", "HEAD", env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("dvcimport")
    home = base / "home"
    home.mkdir()
    env = {**os.environ, **IDENTITY, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("MLCI_NO_HOOKS", None)
    root = base / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main", env=env)
    c = {}
    c["first"] = _commit(
        root,
        env,
        {
            ".dvc/config": "[core]\n    autostage = true\n",
            ".dvc/.gitignore": "/cache\n",
            "params.yaml": "train:\n  lr: 1e-3\n  epochs: 3\nout_dir: results\n",
            "config/eval.yaml": "eval:\n  name: scores\n",
            "dvc.yaml": DVC_YAML,
            "train.py": "print('train')\n",
            "results/metrics.json": json.dumps({"acc": 0.9, "nested": {"f1": 0.8, "deep": {"x": 2}}, "a/b": 1.5}),
            "scores.json": json.dumps({"auc": 0.7}),
            "dvclive/metrics.json": json.dumps({"train": {"loss": 0.2}, "val/acc": 0.5}),
            "dvclive/plots/metrics/train/loss.tsv": "step\tloss\n0\t0.5\n1\t0.3\n2\t0.2\n",
            "dvclive/plots/metrics/val/acc.tsv": "step\tacc\n0\t0.1\n1\t0.5\n",
            "data.csv.dvc": "outs:\n- md5: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n  size: 10\n  path: data.csv\n",
        },
        "first",
    )
    conflict = '<<<<<<< HEAD\n{"acc": 0.91}\n=======\n{"acc": 0.92}\n>>>>>>> feature\n'
    c["conflict"] = _commit(root, env, {"results/metrics.json": conflict}, "conflicted metrics")
    c["odd"] = _commit(
        root,
        env,
        {
            "results/metrics.json": '{"acc": 0.93, "loss": Infinity, "worst": -Infinity}',
            "scores.json": "0.75\n",
            "eval.dvc": OLD_STAGE,
            "auc.metric": "0.81\n",
        },
        "old layouts and odd values",
    )
    c["deleted"] = _commit(root, env, {"results/metrics.json": None}, "metrics deleted")
    c["plain"] = _commit(root, env, {"README.md": "no change to values\n"}, "docs")
    # an experiment in DVC 3's layout: refs/exps/<baseline[:2]>/<baseline[2:]>/<name>,
    # a commit whose parent is the baseline, never on a branch
    _git(root, "checkout", "-q", "-b", "exp-tmp", c["first"], env=env)
    c["exp"] = _commit(root, env, {"results/metrics.json": json.dumps({"acc": 0.99})}, "exp result")
    _git(root, "checkout", "-q", "main", env=env)
    _git(root, "branch", "-q", "-D", "exp-tmp", env=env)
    base_sha = c["first"]
    _git(root, "update-ref", f"refs/exps/{base_sha[:2]}/{base_sha[2:]}/lucky-lark", c["exp"], env=env)
    _git(root, "update-ref", "refs/exps/celery/stash", c["exp"], env=env)  # DVC's queue: not an experiment
    status_before = _git(root, "status", "--porcelain", "--ignored", env=env)
    proc = run_mlci(root, "import", "dvc", "--all-branches", "--exps", env={"HOME": str(home)})
    assert_clean_exit(proc)
    return {"root": root, "commits": c, "env": env, "home": home, "first": proc, "status": status_before}


def _run(root: Path, commit: str, kind: str = "commit") -> dict[str, Any]:
    rows = query(
        root,
        'SELECT run_id, kind, name, parent, status, warnings, datasets FROM runs WHERE "commit" = ? AND kind = ?',
        [commit, kind],
    )
    assert len(rows) == 1, rows
    run_id, kind_, name, parent, status, warnings, datasets = rows[0]
    metrics = {(f, n): v for f, n, v in query(root, "SELECT file, name, value FROM metrics WHERE run_id = ?", [run_id])}
    params = {(f, n): v for f, n, v in query(root, "SELECT file, name, value FROM params WHERE run_id = ?", [run_id])}
    steps = query(root, "SELECT file, name, step, value FROM steps WHERE run_id = ? ORDER BY name, step", [run_id])
    return {
        "id": run_id,
        "kind": kind_,
        "name": name,
        "parent": parent,
        "status": status,
        "warnings": json.loads(warnings),
        "datasets": json.loads(datasets),
        "metrics": metrics,
        "params": params,
        "steps": steps,
    }


def test_first_commit_values_nested_slash_and_templated(project: dict[str, Any]) -> None:
    run = _run(project["root"], project["commits"]["first"])
    # an imported commit is the run its capture would be: kind `commit`, source import:dvc
    assert run["kind"] == "commit" and run["status"] == "done"
    m = run["metrics"]
    # ${out_dir}/metrics.json and ${eval.name}.json resolved from params.yaml and vars
    assert m[("results/metrics.json", "acc")] == 0.9
    assert m[("results/metrics.json", "nested.f1")] == 0.8
    assert m[("results/metrics.json", "nested.deep.x")] == 2
    assert m[("results/metrics.json", "a/b")] == 1.5  # a key holding `/` stays whole
    assert m[("scores.json", "auc")] == 0.7
    assert m[("dvclive/metrics.json", "train.loss")] == 0.2
    assert m[("dvclive/metrics.json", "val/acc")] == 0.5
    assert run["params"][("params.yaml", "train.lr")] == "0.001"  # YAML 1.2: 1e-3 is a float
    assert run["params"][("params.yaml", "out_dir")] == "results"
    series = {(n, s): v for _f, n, s, v in run["steps"]}
    assert series == {
        ("train.loss", 0): 0.5,
        ("train.loss", 1): 0.3,
        ("train.loss", 2): 0.2,
        ("val.acc", 0): 0.1,
        ("val.acc", 1): 0.5,
    }
    # an output declared in dvc.yaml and never committed: absent, not invented
    assert not any(f == "results/never.json" for f, _ in m)
    assert any("results/never.json" in w and "absent" in w for w in run["warnings"])
    assert run["datasets"] == {"data.csv": "md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}


def test_conflict_markers_recorded_as_unparseable_and_import_goes_on(project: dict[str, Any]) -> None:
    run = _run(project["root"], project["commits"]["conflict"])
    assert not any(f == "results/metrics.json" for f, _ in run["metrics"])
    assert run["metrics"][("scores.json", "auc")] == 0.7  # the other files still count
    assert any("results/metrics.json" in w and "merge-conflict markers at line 1" in w for w in run["warnings"])
    assert "merge-conflict markers" in project["first"].stderr


def test_infinity_bare_numbers_and_old_stage_files(project: dict[str, Any]) -> None:
    run = _run(project["root"], project["commits"]["odd"])
    m = run["metrics"]
    assert m[("results/metrics.json", "acc")] == 0.93
    assert m[("results/metrics.json", "loss")] == math.inf
    assert m[("results/metrics.json", "worst")] == -math.inf
    assert m[("scores.json", "scores")] == 0.75  # a bare number is named after its file
    assert m[("auc.metric", "auc")] == 0.81  # declared `metric: true` in an old single-stage file
    # model.pkl is an output of the old stage file (it has `cmd`), nothing depends on it: not data
    assert "model.pkl" not in run["datasets"]
    assert run["datasets"] == {"data.csv": "md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}


def test_metrics_deleted_later_are_absent_there_and_kept_before(project: dict[str, Any]) -> None:
    root, c = project["root"], project["commits"]
    after = _run(root, c["deleted"])
    assert not any(f == "results/metrics.json" for f, _ in after["metrics"])
    assert any(w.startswith("results/metrics.json: declared but not committed") for w in after["warnings"])
    before = _run(root, c["odd"])
    assert before["metrics"][("results/metrics.json", "acc")] == 0.93


def test_experiment_ref_is_an_experiment_run_with_name_and_baseline(project: dict[str, Any]) -> None:
    root, c = project["root"], project["commits"]
    run = _run(root, c["exp"], kind="experiment")
    assert run["name"] == "lucky-lark"
    assert run["parent"] == c["first"]
    assert run["metrics"][("results/metrics.json", "acc")] == 0.99
    # only the experiment ref: DVC's queue refs are not experiments, and the commit is on no branch
    assert query(root, "SELECT count(*) FROM runs WHERE kind = 'experiment'") == [(1,)]
    assert query(root, "SELECT count(*) FROM runs WHERE kind = 'commit' AND \"commit\" = ?", [c["exp"]]) == [(0,)]


def test_one_run_per_commit_one_ledger_commit(project: dict[str, Any]) -> None:
    root = project["root"]
    # five commits on main (all hold params or metrics) and one experiment
    assert query(root, "SELECT count(*) FROM runs") == [(6,)]
    assert "imported 6 run(s) in 1 ledger commit(s)" in project["first"].stdout


def test_rerun_adds_nothing_and_leaves_the_working_tree(project: dict[str, Any]) -> None:
    root = project["root"]
    tip = ledger_tip(root)
    proc = run_mlci(root, "import", "dvc", "--all-branches", "--exps", env={"HOME": str(project["home"])})
    assert_clean_exit(proc)
    assert "imported 0 run(s)" in proc.stdout and "6 already in the ledger" in proc.stdout
    assert ledger_tip(root) == tip
    assert _git(root, "status", "--porcelain", "--ignored", env=project["env"]) == project["status"]
    assert _git(root, "rev-parse", "--abbrev-ref", "HEAD", env=project["env"]) == "main"


def test_range_and_bad_revision(project: dict[str, Any]) -> None:
    root, c = project["root"], project["commits"]
    proc = run_mlci(root, "import", "dvc", "--range", f"{c['odd']}..{c['plain']}", "--dry-run")
    assert_clean_exit(proc)
    assert "would import 0 run(s)" in proc.stdout and "2 already in the ledger" in proc.stdout
    bad = run_mlci(root, "import", "dvc", "--rev", "no-such-branch")
    assert_clean_exit(bad, 2)
    assert "no-such-branch" in bad.stderr


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = float(value)


@pytest.mark.skipif(not PEER_DVC.exists(), reason="peers venv with dvc not present (/tmp/mlci-bench/peers)")
def test_values_equal_dvc_metrics_show(project: dict[str, Any]) -> None:
    root, c = project["root"], project["commits"]
    proc = subprocess.run(
        [str(PEER_DVC), "metrics", "show", "-A", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**project["env"], "DVC_NO_ANALYTICS": "1"},
        check=False,
    )
    shown = json.loads(proc.stdout.replace("Infinity", "1e999"))  # DVC prints bare Infinity tokens
    compared = 0
    for sha in (c["first"], c["conflict"], c["odd"], c["deleted"]):
        if "data" not in shown[sha]:
            # DVC 3 refuses the whole revision when it holds an old single-stage file with `cmd`
            # (eval.dvc); mlci still reads it, so there is nothing of DVC's to compare with there
            assert "eval.dvc" in shown[sha]["error"]["msg"]
            continue
        ours = _run(root, sha)["metrics"]
        for file, result in shown[sha]["data"].items():
            if "data" not in result:  # DVC could not read it either: we must not have values for it
                assert not any(f == file for f, _ in ours), (sha, file)
                continue
            theirs: dict[str, float] = {}
            data = result["data"]
            if isinstance(data, (int, float)):
                theirs[file.rsplit("/", 1)[-1].rsplit(".", 1)[0]] = float(data)
            else:
                _flatten("", data, theirs)
            mine = {n: v for (f, n), v in ours.items() if f == file}
            assert mine == theirs, (sha, file)
            compared += 1
    assert compared >= 5


# ------------------------------------------------------------------ speed paths
# The importer parses plain params YAML with importers/simple_yaml.py, parses each blob once,
# and fetches objects ahead in batches. These check that none of that changes a value.

SCALARS = [
    "1",
    "0",
    "-7",
    "+1",
    "017",
    "0o17",
    "0x1f",
    "1_000",
    "1.5",
    "-0.25",
    "1e-5",
    "1E5",
    "1.0e+3",
    ".5",
    "1.",
    ".inf",
    "-.inf",
    ".nan",
    "inf",
    "nan",
    "Infinity",
    "true",
    "False",
    "TRUE",
    "yes",
    "NO",
    "on",
    "off",
    "y",
    "null",
    "~",
    "Null",
    "adam",
    "resnet-50",
    "a/b",
    "x.y",
    "2023-01-01",
    "1:20",
    "'quoted str'",
    '"dq str"',
    "'it''s'",
    '"esc\\n"',
    "''",
    "[1, 2.5, x]",
    "[]",
    "[a, [b]]",
    "{a: 1}",
    "a b",
    "v # comment",
    "&anc 1",
    "=",
    "<<",
]
KEYS = ["lr", "epochs", "batch_size", "a.b", "a/b", "x-y", "_private", "yes", "no", "on", "true", "null", "1", "k"]


def _yaml_doc(rng: Any, depth: int = 0, indent: int = 0, width: int = 2) -> str:
    lines = []
    for key in rng.sample(KEYS, rng.randint(1, 5)):
        pad = " " * indent
        if rng.random() < 0.1:
            lines.append(f"{pad}# a comment")
        if depth < 3 and rng.random() < 0.3:
            lines.append(f"{pad}{key}:")
            lines.append(_yaml_doc(rng, depth + 1, indent + width, width))
        elif rng.random() < 0.05:
            lines.append(f"{pad}{key}:")  # an empty value: null
        else:
            lines.append(f"{pad}{key}: {rng.choice(SCALARS)}")
    return "\n".join(lines)


def test_simple_yaml_reads_what_yaml_1_2_reads() -> None:
    """On generated documents, the fast reader either declines or gives exactly ruamel's YAML 1.2 values."""
    import random

    from ruamel.yaml import YAML

    from mlci_tui.capture.readers import parse_yaml12
    from mlci_tui.errors import InputError
    from mlci_tui.importers import simple_yaml

    rng = random.Random(5)
    simple = 0
    for i in range(3000):
        text = _yaml_doc(rng, width=rng.choice([2, 4])) + ("\n" if i % 2 else "")
        got = simple_yaml.load(text)
        if got is simple_yaml.NOT_SIMPLE:
            continue
        simple += 1
        try:
            expected = parse_yaml12("p.yaml", text)
        except InputError as exc:
            raise AssertionError(f"fast reader accepted what YAML 1.2 refuses: {text!r}: {exc}") from None
        assert got == expected and repr(got) == repr(expected), text
    assert simple > 300  # the generator reaches the fast path often enough to mean something
    # line breaks YAML knows beyond \n (here hidden in a comment) and control characters: declined
    for text in ("# note\u2028lr: 1\nx: 2\n", "# note\x85lr: 1\nx: 2\n", "a: 1\n# \x0c\n"):
        assert simple_yaml.load(text) is simple_yaml.NOT_SIMPLE, text
    # the shape of a typical params.yaml is read by the fast path
    typical = "train:\n  lr: 0.001\n  epochs: 20\n  optimizer: adam\n  layers: [64, 32]\nmodel:\n  dropout: 0.2\n"
    assert simple_yaml.load(typical) == YAML(typ="safe", pure=True).load(typical)


def test_long_history_through_batches_and_caches(tmp_path: Path) -> None:
    """300 commits (two prefetch windows), params.yaml changing at some commits and shared by
    others: every run holds exactly the values of its own commit's files."""
    import random

    from mlci_tui.capture.readers import parse_yaml12
    from mlci_tui.gitio import Repo
    from mlci_tui.importers import dvc as dvc_import

    root = tmp_path / "hist"
    env = {**os.environ, **IDENTITY, "GIT_CONFIG_NOSYSTEM": "1"}
    _git(root.parent, "init", "-q", "-b", "main", str(root), env=env)
    rng = random.Random(3)
    expected: dict[str, tuple[dict[str, Any], dict[str, float]]] = {}
    chunks = []
    params = ""
    for i in range(300):
        if i % 3 == 0:  # params change at every third commit; metrics at every commit
            params = f"train:\n  lr: {rng.choice(['1e-3', '0.01', '5e-4'])}\n  seed: {i}\n  opt: {rng.choice(['adam', 'NO'])}\n"
        metrics = json.dumps({"acc": round(rng.random(), 6), "val": {"loss": round(rng.random(), 6)}})
        files = {"params.yaml": params, "metrics.json": metrics}
        if i == 0:
            files["dvc.yaml"] = "params:\n- params.yaml\nmetrics:\n- metrics.json\n"
        chunks.append(
            f"commit refs/heads/main\nmark :{i + 1}\ncommitter t <t@localhost> {1_700_000_000 + i} +0000\ndata 4\nc{i:03d}\n"
            + "".join(f"M 100644 inline {n}\ndata {len(t.encode())}\n{t}\n" for n, t in files.items())
            + "\n"
        )
        expected[f":{i + 1}"] = (parse_yaml12("params.yaml", params), json.loads(metrics))
    subprocess.run(
        ["git", "fast-import", "--quiet", "--export-marks=marks"],
        cwd=root,
        input="".join(chunks).encode(),
        check=True,
        env=env,
    )
    marks = dict(line.split() for line in (root / "marks").read_text().splitlines())
    report = dvc_import.import_history(Repo.find(root), ["main"], dry_run=True)
    assert len(report.added) == 300 and not report.warnings
    by_commit = {r["commit"]: r for r in report.added}
    for mark, (p, m) in expected.items():
        record = by_commit[marks[mark]]
        assert record["params"]["params.yaml"] == {f"train.{k}": v for k, v in p["train"].items()}
        assert record["metrics"]["metrics.json"] == {"acc": m["acc"], "val.loss": m["val"]["loss"]}
