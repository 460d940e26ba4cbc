"""`mlci demo`: the main job builds a real project whose commits go through the real hooks."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import git, run_mlci


def test_demo_builds_a_project_and_captures_every_commit(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    proc = run_mlci(tmp_path, "demo", str(target), "--commits", "4")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # two data commits (the dataset's pointer, its schema), then four training commits
    all_commits = git(target, "log", "--format=%H", "main").split()
    assert len(all_commits) == 6
    log = all_commits[:4]
    # the dataset is versioned beside git and a bad version of it was refused at commit
    assert (target / "data" / "customers.csv.mlci").is_file()
    assert "refused by the pre-commit hook" in proc.stdout and "allowed_values" in proc.stdout
    assert json.loads(run_mlci(target, "data", "validate", "--format", "json").stdout)
    # the third run is promoted and pushed; the fourth regresses and its push is refused
    assert "push refused by the gate" in proc.stdout and "fail: dropped by" in proc.stdout
    stages = json.loads(run_mlci(target, "stages", "--json").stdout)
    assert [(s["stage"], s["commit"]) for s in stages] == [("deployed", log[1][:8])]
    origin = target / ".git" / "demo-origin.git"
    assert git(origin, "rev-parse", "main").strip() == log[1]
    assert git(origin, "rev-parse", "refs/mlci/ledger").strip()
    assert run_mlci(target, "gate").returncode == 1
    everything = json.loads(run_mlci(target, "runs", "--json").stdout)
    # the sweep: six grid trials over the demo's train.py, at the last commit
    trials = [r for r in everything if r["kind"] == "trial"]
    assert len(trials) == 6 and {r["parent"] for r in trials} == {log[0]}
    assert {r["commit"] for r in trials} == {None}, "a trial is not its base commit's run"
    assert "best: lr-search-" in proc.stdout
    runs = [r for r in everything if r["kind"] != "trial"]
    assert sorted(r["commit"] for r in runs) == sorted(log)
    assert all(r["kind"] == "commit" and r["branch"] == "main" for r in runs)
    datasets = json.loads(run_mlci(target, "sql", "SELECT datasets FROM runs WHERE kind = 'commit'", "--json").stdout)
    assert len(datasets) == 4 and all("data/customers.csv" in json.loads(d["datasets"]) for d in datasets)
    assert all(set(r["metrics"]) == {"acc", "loss"} for r in runs)
    assert {r["params"]["train.lr"] for r in runs} == {"0.0005", "0.005", "0.01", "2.0"}
    # per-epoch curves from the dvclive layout are step series
    steps = json.loads(run_mlci(target, "sql", "SELECT name, count(*) AS n FROM steps GROUP BY name", "--json").stdout)
    assert {s["name"] for s in steps} == {"acc", "loss"}
    # the hooks it installed are mlci's
    assert "mlci-hook" in (target / ".git" / "hooks" / "post-commit").read_text()
    assert "mlci runs" in proc.stdout
    # the report a pull request would get, against the deployed model
    report = (target / "mlci-report.md").read_text()
    assert "FAIL" in report and "acc" in report
    assert (target / "mlci-report.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_demo_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    proc = run_mlci(tmp_path, "demo", str(tmp_path / "busy"))
    assert proc.returncode == 2
    assert "not empty" in proc.stderr
    assert "Traceback" not in proc.stderr
