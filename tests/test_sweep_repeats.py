"""Sweeps produce repeats: with `train.repeats: {count: 3, seed_param: seed}` each trial's params are
trained three times (seed 0, 1, 2), each a run of the trial's own commit with the id derived from
(kind, commit, repeat index); `runs --groups`, `diff` and the gate see one group per trial, and
the trial's value (what the strategy is told) is the group's mean. A sweep's `repeats:` overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git, run_mlci
from sweep_helpers import ok, status_json, sweep_repo

from mlci_tui.ledger.records import derived_id

TRAIN = (
    "import json, yaml\n"
    "p = yaml.safe_load(open('params.yaml'))\n"
    "json.dump({'acc': round(p['lr'] * 2 + p['seed'] / 100, 6)}, open('metrics.json', 'w'))\n"
)
CONFIG = """\
train:
  command: python train.py
  repeats: {count: 3, seed_param: seed}
gate:
  rules:
    acc: {direction: max, max_drop: 0.5, confidence: 0.9}
sweeps:
  rep:
    params:
      lr: [0.1, 0.2]
    metric: acc
  twice:
    params:
      lr: [0.3]
    repeats: 2
    metric: acc
"""


def _runs(repo: Path) -> list[dict[str, object]]:
    sql = "SELECT run_id, commit, trial_id, params FROM runs WHERE kind = 'trial' ORDER BY run_id"
    return json.loads(ok(run_mlci(repo, "sql", sql, "--json")).stdout)


def _values(doc: object, key: str) -> list[object]:
    """Every value of `key` anywhere in a JSON document."""
    if isinstance(doc, dict):
        return [v for k, v in doc.items() if k == key] + [x for v in doc.values() for x in _values(v, key)]
    if isinstance(doc, list):
        return [x for v in doc for x in _values(v, key)]
    return []


def test_each_trial_is_a_group_of_seeded_repeats(repo: Path) -> None:
    sweep_repo(repo, "", extra={"mlci.yaml": CONFIG, "train.py": TRAIN})
    ok(run_mlci(repo, "sweep", "create", "rep"))
    ok(run_mlci(repo, "sweep", "start", "rep", "-j", "2"))
    rows = status_json(repo, "rep")
    assert [r["state"] for r in rows] == ["done", "done"]
    assert [round(r["acc"], 6) for r in rows] == [0.21, 0.41]  # the mean of lr*2 + 0, 0.01, 0.02

    runs = _runs(repo)
    assert len(runs) == 6
    by_trial: dict[object, list[dict[str, object]]] = {}
    for run in runs:
        by_trial.setdefault(run["trial_id"], []).append(run)
    base = git(repo, "rev-parse", "HEAD").strip()
    for trial in rows:
        group = by_trial[trial["trial_id"]]
        (commit,) = {r["commit"] for r in group}
        assert commit != base and git(repo, "rev-parse", f"{commit}^").strip() == base  # the trial's own commit
        expected = {derived_id("trial", str(commit), str(i)) for i in range(3)}
        assert {r["run_id"] for r in group} == expected
        assert trial["run_id"] in expected

    groups = json.loads(ok(run_mlci(repo, "runs", "--groups", "--json", "--where", "kind = 'trial'")).stdout)
    assert sorted(g["runs"] for g in groups) == [3, 3]
    first, second = (t["run_id"] for t in rows)
    diff = json.loads(ok(run_mlci(repo, "diff", first, second, "--json")).stdout)
    (acc,) = [m for m in diff["metrics"] if m["name"] == "acc"]
    assert acc["base_group"]["n"] == 3 and acc["head_group"]["n"] == 3, acc
    assert abs(acc["base"] - 0.21) < 1e-9 and abs(acc["head"] - 0.41) < 1e-9  # group means
    gate = run_mlci(repo, "gate", "--base", first, "--head", second, "--json")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert sorted(_values(json.loads(gate.stdout), "n")) == [3, 3], gate.stdout  # a test over two groups of 3

    ok(run_mlci(repo, "sweep", "create", "twice"))
    ok(run_mlci(repo, "sweep", "start", "twice"))
    (row,) = status_json(repo, "twice")
    assert round(row["acc"], 6) == 0.605 and len(_runs(repo)) == 8


def test_tpe_is_told_each_trial_s_group_mean(repo: Path) -> None:
    """tpe proposes from the trials' values: with repeats each is its group's mean, so the next
    proposals follow the means (every trial's value is checked against its runs)."""
    pytest.importorskip("optuna")
    config = CONFIG.replace(
        "sweeps:\n",
        "sweeps:\n  tuned:\n    method: tpe\n    seed: 3\n    max_trials: 4\n    repeats: 2\n"
        "    params:\n      lr: {uniform: [0.1, 0.5]}\n    metric: acc\n",
    )
    sweep_repo(repo, "", extra={"mlci.yaml": config, "train.py": TRAIN})
    ok(run_mlci(repo, "sweep", "create", "tuned"))
    ok(run_mlci(repo, "sweep", "start", "tuned"))
    rows = status_json(repo, "tuned")
    assert [r["state"] for r in rows] == ["done"] * 4  # tpe asked for more after each group's mean
    sql = "SELECT trial_id, metrics FROM runs WHERE kind = 'trial'"
    accs: dict[str, list[float]] = {}
    for run in json.loads(ok(run_mlci(repo, "sql", sql, "--json")).stdout):
        metrics = run["metrics"] if isinstance(run["metrics"], dict) else json.loads(run["metrics"])
        accs.setdefault(run["trial_id"], []).append(metrics["acc"])
    for row in rows:
        assert len(accs[row["trial_id"]]) == 2
        assert abs(row["acc"] - sum(accs[row["trial_id"]]) / 2) < 1e-9  # the value tpe is told
