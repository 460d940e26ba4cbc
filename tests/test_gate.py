"""Promotion, diff and the gate: baselines, rules, exit codes, the pre-push hook and a CI-like clone."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import commit, git, metrics_json, run_mlci

GATE = """\
params:
  files: [params.yaml]
metrics:
  files: [metrics.json]
  fields:
    acc: {direction: max}
gate:
  on_push: %s
  rules:
    acc: {max_drop: 0.01}
    loss: {direction: min, max_rise_pct: 5}
    latency_ms: {max: 50}
    f1: {min: 0.5, required: %s}
"""


def _setup(repo: Path, *, on_push: bool = False, f1_required: bool = False) -> None:
    (repo / "mlci.yaml").write_text(GATE % ("true" if on_push else "false", "true" if f1_required else "false"))


def _train(repo: Path, message: str, **metrics: float) -> str:
    return commit(repo, {"params.yaml": f"note: {message!r}\n", "metrics.json": metrics_json(**metrics)}, message)


def test_no_baseline_passes_then_a_regression_fails_and_an_improvement_passes(repo: Path) -> None:
    _setup(repo)
    _train(repo, "first", acc=0.80, loss=0.5, latency_ms=20, f1=0.7)
    run_mlci(repo, "capture")
    first = run_mlci(repo, "gate", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["verdict"] == "no baseline"
    assert run_mlci(repo, "promote", "HEAD", "--tag").returncode == 0
    assert git(repo, "tag", "--list").split() == ["deployed/1"]
    _train(repo, "worse", acc=0.78, loss=0.5, latency_ms=20, f1=0.7)
    run_mlci(repo, "capture")
    worse = run_mlci(repo, "gate")
    assert worse.returncode == 1
    assert "fail: dropped by 0.02" in worse.stdout
    assert "verdict: FAIL" in worse.stdout
    _train(repo, "better", acc=0.85, loss=0.51, latency_ms=20, f1=0.7)
    run_mlci(repo, "capture")
    better = run_mlci(repo, "gate", "--json")
    assert better.returncode == 0, better.stdout
    rules = {r["metric"]: r for r in json.loads(better.stdout)["rules"]}
    assert rules["acc"]["verdict"] == "pass" and rules["loss"]["verdict"] == "pass"  # +2% within 5%


def test_floors_ceilings_required_and_nan(repo: Path) -> None:
    _setup(repo, f1_required=True)
    _train(repo, "slow", acc=0.8, loss=float("nan"), latency_ms=80)
    run_mlci(repo, "capture")
    proc = run_mlci(repo, "gate", "--json")
    assert proc.returncode == 1
    verdicts = {r["metric"]: (r["verdict"], r["reason"]) for r in json.loads(proc.stdout)["rules"]}
    assert verdicts["latency_ms"] == ("fail", "above 50")
    assert verdicts["f1"] == ("fail", "missing")
    assert verdicts["loss"] == ("fail", "NaN")


def test_require_baseline_and_bad_rules_are_usage_errors(repo: Path) -> None:
    _setup(repo)
    _train(repo, "first", acc=0.8)
    run_mlci(repo, "capture")
    text = (repo / "mlci.yaml").read_text().replace("gate:\n", "gate:\n  require_baseline: true\n")
    (repo / "mlci.yaml").write_text(text)
    proc = run_mlci(repo, "gate")
    assert proc.returncode == 1 and "require_baseline" in proc.stdout
    (repo / "mlci.yaml").write_text(text.replace("max_drop: 0.01", "max_drop: lots"))
    bad = run_mlci(repo, "gate")
    assert bad.returncode == 2
    assert "gate.rules.acc.max_drop: expected a number" in bad.stderr


def test_diff_shows_changed_params_and_metrics_without_float_noise(repo: Path) -> None:
    _setup(repo)
    commit(repo, {"params.yaml": "lr: 0.1\nepochs: 3\n", "metrics.json": metrics_json(acc=0.1)}, "a")
    commit(repo, {"params.yaml": "lr: 0.2\nepochs: 3\n", "metrics.json": metrics_json(acc=0.3)}, "b")
    run_mlci(repo, "capture", "HEAD~1", "HEAD")
    proc = run_mlci(repo, "diff", "HEAD~1", "HEAD")
    assert proc.returncode == 0, proc.stderr
    assert "+0.2 (+200%)" in proc.stdout
    assert "0.30000000000000004" not in proc.stdout
    assert "lr" in proc.stdout and "epochs" not in proc.stdout
    doc = json.loads(run_mlci(repo, "diff", "HEAD~1", "HEAD", "--json").stdout)
    assert doc["params"] == [{"name": "lr", "base": "0.1", "head": "0.2"}]
    (repo / "metrics.json").write_text(metrics_json(acc=0.5))
    ws = json.loads(run_mlci(repo, "diff", "HEAD", "--workspace", "--json").stdout)
    assert ws["metrics"][0]["head"] == 0.5


def test_pre_push_gate_refuses_a_regression_and_ci_clone_agrees(repo: Path, upstream: Path, tmp_path: Path) -> None:
    _setup(repo, on_push=True)
    git(repo, "remote", "add", "origin", str(upstream))
    assert run_mlci(repo, "install").returncode == 0
    _train(repo, "first", acc=0.80, loss=0.5)
    git(repo, "push", "-q", "origin", "main")
    assert run_mlci(repo, "promote", "HEAD").returncode == 0
    assert run_mlci(repo, "ledger", "push").returncode == 0
    _train(repo, "worse", acc=0.70, loss=0.5)
    push = subprocess_push(repo)
    assert push.returncode != 0
    assert "push refused by the mlci gate" in push.stderr
    assert "dropped by 0.1" in push.stderr
    # CI: a depth-1 clone of what is pushed, with the ledger pulled, decides the same
    git(repo, "push", "-q", "--no-verify", "origin", "main")
    ci = tmp_path / "ci"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{upstream}", str(ci))
    assert run_mlci(ci, "ledger", "pull").returncode == 0
    assert run_mlci(ci, "capture").returncode == 0
    gate = run_mlci(ci, "gate")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    _train(repo, "better", acc=0.9, loss=0.4)
    ok = subprocess_push(repo)
    assert ok.returncode == 0, ok.stderr


def subprocess_push(repo: Path):  # type: ignore[no-untyped-def]
    import subprocess

    return subprocess.run(["git", "push", "origin", "main"], cwd=repo, capture_output=True, text=True, check=False)
