"""A gate that knows noise (issue 16): repeats and groups, rules with a confidence, Holm's correction,
per-example results (paired bootstrap, normal approximation, McNemar), the JSON the gate writes.

Every number the gate states is checked against one computed here independently: scipy's Welch
test and binomial test, a plain-Python mean, scipy's bootstrap within its resampling error.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import commit, git, metrics_json, run_mlci, write
from scipy import stats as sps

from mlci_tui import stats

CONFIG = """\
params:
  files: [params.yaml]
metrics:
  files: [metrics.json]
train:
  repeats: {count: 6, seed_param: seed}
gate:
  baseline: deployed
  rules:
%s
"""

BASE = [0.900, 0.907, 0.893, 0.910, 0.890, 0.900]  # seed noise of +-1%
SAME = [0.902, 0.893, 0.908, 0.897, 0.888, 0.911]  # the same model, other seeds
DROP = [v - 0.02 for v in BASE[::-1]]  # a real drop of 2 points, the same noise


def _config(repo: Path, rules: str, extra: str = "") -> None:
    write(repo, {"mlci.yaml": CONFIG % rules + extra})


def _repeats(repo: Path, message: str, values: list[float], **other: list[float]) -> str:
    """A commit whose capture is seed 0, then `mlci record --repeat` for seeds 1..n-1 (the working tree
    changed as a training run with that seed would change it; the commit stays the same)."""
    sha = commit(
        repo,
        {"params.yaml": "seed: 0\nlr: 0.1\n", "metrics.json": metrics_json(acc=values[0], **_at(other, 0))},
        message,
    )
    assert run_mlci(repo, "capture").returncode == 0
    for seed in range(1, len(values)):
        write(
            repo,
            {
                "params.yaml": f"seed: {seed}\nlr: 0.1\n",
                "metrics.json": metrics_json(acc=values[seed], **_at(other, seed)),
            },
        )
        done = run_mlci(repo, "record", "--repeat")
        assert done.returncode == 0, done.stderr
        assert f"(repeat {seed - 1} of {sha[:8]})" in done.stdout
    git(repo, "checkout", "-q", "--", ".")
    return sha


def _at(other: dict[str, list[float]], i: int) -> dict[str, float]:
    return {k: v[i] for k, v in other.items()}


def _gate(repo: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_mlci(repo, "gate", "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _welch_upper(base: list[float], head: list[float], confidence: float) -> float:
    """The upper bound of mean(base) - mean(head), from scipy's Welch test."""
    result = sps.ttest_ind(base, head, equal_var=False, alternative="less")
    return float(result.confidence_interval(confidence).high)


def test_a_real_drop_fails_a_1pct_margin_and_seed_noise_passes(repo: Path) -> None:
    _config(repo, "    acc: {direction: max, max_drop: 0.01, confidence: 0.95}")
    base = _repeats(repo, "baseline", BASE)
    assert run_mlci(repo, "promote", base).returncode == 0
    _repeats(repo, "same model", SAME)
    code, doc = _gate(repo)
    rule = doc["rules"][0]
    assert code == 0 and rule["verdict"] == "pass", rule
    test = rule["test"]
    assert (test["test"], test["n_base"], test["n_head"], test["decision"]) == ("welch", 6, 6, "pass")
    assert test["upper"] == pytest.approx(_welch_upper(BASE, SAME, 0.95), abs=1e-9)
    p = sps.ttest_ind([v + 0.01 for v in SAME], BASE, equal_var=False, alternative="greater").pvalue
    assert test["p"] == pytest.approx(p, abs=1e-9)
    assert rule["baseline"] == pytest.approx(sum(BASE) / 6) and rule["candidate"] == pytest.approx(sum(SAME) / 6)
    assert rule["candidate_group"]["n"] == 6
    assert rule["candidate_group"]["sd"] == pytest.approx(float(np.std(SAME, ddof=1)))
    # the point rule alone would have blocked this: the commit's own run is 0.902 against 0.900...
    # but the newest repeat, 0.911, or the worst, 0.888, is one seed away
    table = run_mlci(repo, "gate")
    assert table.returncode == 0 and "at 95% (Welch's t, n 6/6)" in table.stdout
    assert "0.9 ± 0.0077 (6)" in table.stdout

    _repeats(repo, "broken", DROP)
    code, doc = _gate(repo)
    rule = doc["rules"][0]
    assert code == 1 and doc["verdict"] == "fail"
    assert rule["test"]["decision"] == "fail"
    assert rule["test"]["regression"] == pytest.approx(0.02)
    assert rule["test"]["upper"] == pytest.approx(_welch_upper(BASE, DROP, 0.95), abs=1e-9)
    assert rule["test"]["upper"] > 0.01
    assert rule["reason"] == "the bound is above the allowance" and rule["limit"] == "drop <= 0.01"
    assert rule["interval"].startswith("drop <= 0.0") and "at 95% (Welch's t, n 6/6)" in rule["interval"]


def test_one_run_a_side_falls_back_to_the_point_rule_and_says_so(repo: Path) -> None:
    _config(repo, "    acc: {direction: max, max_drop: 0.01, confidence: 0.95}")
    base = commit(repo, {"params.yaml": "seed: 0\n", "metrics.json": metrics_json(acc=0.90)}, "one")
    run_mlci(repo, "capture")
    run_mlci(repo, "promote", base)
    commit(repo, {"metrics.json": metrics_json(acc=0.895)}, "two")
    run_mlci(repo, "capture")
    code, doc = _gate(repo)
    rule = doc["rules"][0]
    assert code == 0 and rule["test"] is None and rule["verdict"] == "pass"
    assert rule["notice"].startswith("1 baseline and 1 candidate run(s): the point rule")
    assert "the point rule" in run_mlci(repo, "gate").stdout
    commit(repo, {"metrics.json": metrics_json(acc=0.88)}, "three")
    run_mlci(repo, "capture")
    code, doc = _gate(repo)
    assert code == 1 and doc["rules"][0]["reason"] == "dropped by 0.02"


def test_holm_correction_across_rules_at_one_level(repo: Path) -> None:
    rules = (
        "    acc: {direction: max, max_drop: 0.01, confidence: 0.9}\n"
        "    f1: {direction: max, max_drop: 0.01, confidence: 0.9}\n"
        "    loss: {direction: min, max_rise: 0.05, confidence: 0.9, test: bootstrap}"
    )
    _config(repo, rules)
    f1_base = [0.80, 0.81, 0.79, 0.80, 0.82, 0.78]
    loss = [0.30, 0.31, 0.29, 0.30, 0.32, 0.28]
    base = _repeats(repo, "baseline", BASE, f1=f1_base, loss=loss)
    run_mlci(repo, "promote", base)
    _repeats(repo, "candidate", SAME, f1=[v + 0.003 for v in f1_base], loss=loss[::-1])
    code, doc = _gate(repo)
    tests = {r["metric"]: r["test"] for r in doc["rules"]}
    assert code == 0, doc
    by_p = sorted(tests, key=lambda m: tests[m]["p"])
    # Holm: the smallest p at 1 - 0.1/3, then 1 - 0.1/2, then 0.9
    assert [tests[m]["level"] for m in by_p] == pytest.approx([1 - 0.1 / 3, 0.95, 0.9])
    assert all(t["correction"] == "holm" and t["rules_corrected"] == 3 for t in tests.values())
    level = tests["acc"]["level"]
    assert tests["acc"]["upper"] == pytest.approx(_welch_upper(BASE, SAME, level), abs=1e-9)
    assert tests["loss"]["test"] == "bootstrap"
    assert "Holm over 3 rules" in run_mlci(repo, "gate").stdout
    report = run_mlci(repo, "report", "--format", "md")
    assert report.returncode == 0, report.stderr
    assert "Holm" in report.stdout and "Welch's t" in report.stdout


def test_holm_stops_at_the_first_failure(repo: Path) -> None:
    """Two rules, each of which passes alone at 95% (p = 0.036): Holm judges the first at 97.5%, where
    it fails, and the procedure stops, so the second fails too though its own bound is below 0.01."""
    rules = (
        "    acc: {direction: max, max_drop: 0.01, confidence: 0.95}\n"
        "    f1: {direction: max, max_drop: 0.01, confidence: 0.95}"
    )
    _config(repo, rules)
    base = _repeats(repo, "baseline", BASE, f1=BASE)
    run_mlci(repo, "promote", base)
    near = [v - 0.001 for v in BASE[::-1]]
    _repeats(repo, "candidate", near, f1=near)
    code, doc = _gate(repo)
    by = {r["metric"]: r for r in doc["rules"]}
    assert code == 1
    assert by["acc"]["test"]["p"] == pytest.approx(by["f1"]["test"]["p"]) and 0.025 < by["acc"]["test"]["p"] < 0.05
    assert (by["acc"]["test"]["level"], by["f1"]["test"]["level"]) == (pytest.approx(0.975), pytest.approx(0.95))
    assert by["acc"]["verdict"] == "fail" and by["acc"]["test"]["upper"] > 0.01
    assert by["f1"]["verdict"] == "fail" and by["f1"]["test"]["upper"] < 0.01
    assert (
        by["f1"]["test"]["stopped_by"] == "acc" and by["f1"]["reason"] == "Holm's correction stopped at an earlier rule"
    )


# ---------------------------------------------------------------- per example

PER_EXAMPLE = "  per_example: {path: eval/per_example.csv, key: id, score: %s%s}\n"


def _examples(scores: dict[str, list[float]]) -> str:
    names = list(scores)
    n = len(scores[names[0]])
    rows = [",".join(["id", *names])]
    rows += [",".join([f"ex{i:05d}", *(repr(scores[c][i]) for c in names)]) for i in range(n)]
    return "\n".join(rows) + "\n"


def _one_run_sides(repo: Path, base_scores: dict[str, list[float]], head_scores: dict[str, list[float]]) -> None:
    acc_b = sum(base_scores["score"]) / len(base_scores["score"])
    acc_h = sum(head_scores["score"]) / len(head_scores["score"])
    base = commit(
        repo,
        {
            "params.yaml": "seed: 0\n",
            "metrics.json": metrics_json(acc=acc_b),
            "eval/per_example.csv": _examples(base_scores),
        },
        "baseline",
    )
    run_mlci(repo, "capture")
    run_mlci(repo, "promote", base)
    commit(repo, {"metrics.json": metrics_json(acc=acc_h), "eval/per_example.csv": _examples(head_scores)}, "candidate")
    run_mlci(repo, "capture")


def test_paired_bootstrap_over_examples_with_a_known_difference(repo: Path) -> None:
    _config(repo, "    acc: {direction: max, max_drop: 0.03, confidence: 0.95}", PER_EXAMPLE % ("score", ""))
    rng = random.Random(7)
    n = 2000
    base = [round(rng.uniform(0.5, 1.0), 6) for _ in range(n)]
    head = [round(b - 0.02 + rng.gauss(0, 0.05), 6) for b in base]  # a known drop of 0.02, per-example noise
    _one_run_sides(repo, {"score": base}, {"score": head})
    code, doc = _gate(repo)
    test = doc["rules"][0]["test"]
    diffs = [b - h for b, h in zip(base, head)]
    assert (test["test"], test["n_base"], test["n_head"]) == ("paired-bootstrap", n, n)
    assert test["regression"] == pytest.approx(math.fsum(diffs) / n, abs=1e-12)
    # scipy's percentile bootstrap of the mean, two-sided 90%: its upper end is the one-sided 95% bound
    ref = sps.bootstrap(
        (np.array(diffs),), np.mean, confidence_level=0.90, method="percentile", n_resamples=20000, random_state=1
    )
    se = float(np.std(diffs, ddof=1)) / math.sqrt(n)
    assert test["upper"] == pytest.approx(float(ref.confidence_interval.high), abs=0.1 * se)
    assert code == 0 and test["decision"] == "pass"  # 0.02 + ~0.002 < 0.03
    assert test["mcnemar_p"] is None  # scores are not 0/1

    # the same data judged by the normal approximation, checked against scipy's normal quantile
    _config(
        repo, "    acc: {direction: max, max_drop: 0.021, confidence: 0.95}", PER_EXAMPLE % ("score", ", test: normal")
    )
    code, doc = _gate(repo)
    test = doc["rules"][0]["test"]
    upper = math.fsum(diffs) / n + sps.norm.ppf(0.95) * se
    assert test["test"] == "paired-normal" and test["upper"] == pytest.approx(upper, abs=1e-12)
    assert (code, test["decision"]) == ((0, "pass") if upper < 0.021 else (1, "fail"))


def test_mcnemar_on_0_1_outcomes(repo: Path) -> None:
    _config(repo, "    acc: {direction: max, max_drop: 0.02, confidence: 0.95}", PER_EXAMPLE % ("correct", ""))
    rng = random.Random(11)
    n = 1500
    base = [1.0 if rng.random() < 0.85 else 0.0 for _ in range(n)]
    head = [b if rng.random() < 0.9 else 1.0 - b for b in base]  # 10% of outcomes flipped
    _one_run_sides(repo, {"score": base, "correct": base}, {"score": head, "correct": head})
    code, doc = _gate(repo)
    test = doc["rules"][0]["test"]
    base_only = sum(1 for b, h in zip(base, head) if b == 1 and h == 0)
    head_only = sum(1 for b, h in zip(base, head) if b == 0 and h == 1)
    expected = sps.binomtest(min(base_only, head_only), base_only + head_only, 0.5).pvalue
    assert test["mcnemar_p"] == pytest.approx(expected, rel=1e-9)
    assert test["test"] == "paired-bootstrap"
    assert test["regression"] == pytest.approx((base_only - head_only) / n, abs=1e-12)
    assert "McNemar p" in run_mlci(repo, "gate").stdout


def test_label_prediction_pair_and_a_key_mismatch(repo: Path) -> None:
    spec = "  per_example: {path: eval/per_example.csv, key: id, label: y, prediction: yhat}\n"
    _config(repo, "    acc: {direction: max, max_drop: 0.05, confidence: 0.95}", spec)
    ys = [i % 3 for i in range(300)]
    base = {"y": ys, "yhat": [y if i % 10 else (y + 1) % 3 for i, y in enumerate(ys)]}
    head = {"y": ys, "yhat": [y if i % 9 else (y + 1) % 3 for i, y in enumerate(ys)]}
    _one_run_sides(repo, base | {"score": [0.0] * 300}, head | {"score": [0.0] * 300})
    code, doc = _gate(repo)
    test = doc["rules"][0]["test"]
    right_b = [1.0 if a == b else 0.0 for a, b in zip(base["y"], base["yhat"])]
    right_h = [1.0 if a == b else 0.0 for a, b in zip(head["y"], head["yhat"])]
    assert test["regression"] == pytest.approx((sum(right_b) - sum(right_h)) / 300, abs=1e-12)
    assert test["mcnemar_p"] is not None
    # the candidate lost two examples and gained one: an error naming them, exit 2, no traceback
    text = (repo / "eval/per_example.csv").read_text().splitlines()
    text = [*text[:5], *text[7:], "ex99999,0,0,0"]
    commit(repo, {"eval/per_example.csv": "\n".join(text) + "\n"}, "drop rows")
    run_mlci(repo, "capture")
    bad = run_mlci(repo, "gate")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "id missing from the candidate: ex00004, ex00005" in bad.stderr
    assert "id missing from the baseline: ex99999" in bad.stderr


def test_a_side_without_the_file_falls_back_with_the_reason(repo: Path) -> None:
    _config(repo, "    acc: {direction: max, max_drop: 0.01, confidence: 0.95}", PER_EXAMPLE % ("score", ""))
    base = commit(repo, {"params.yaml": "seed: 0\n", "metrics.json": metrics_json(acc=0.9)}, "no file")
    run_mlci(repo, "capture")
    run_mlci(repo, "promote", base)
    commit(repo, {"metrics.json": metrics_json(acc=0.9), "eval/per_example.csv": "id,score\na,1\n"}, "file")
    run_mlci(repo, "capture")
    code, doc = _gate(repo)
    rule = doc["rules"][0]
    assert code == 0 and rule["test"] is None
    assert "per-example results not paired: baseline" in rule["notice"]


def test_numpy_missing_names_the_extra(repo: Path, tmp_path: Path) -> None:
    _config(repo, "    acc: {direction: max, max_drop: 0.01, confidence: 0.95, test: bootstrap}")
    base = _repeats(repo, "baseline", BASE[:2])
    run_mlci(repo, "promote", base)
    _repeats(repo, "candidate", SAME[:2])
    blocker = tmp_path / "blocker" / "numpy"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('numpy is not installed here')\n")
    proc = run_mlci(repo, "gate", env={"PYTHONPATH": str(blocker.parent)})
    assert proc.returncode == 2 and "pip install 'mlci-tui[stats]'" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- groups shown


def test_runs_groups_and_diff_show_mean_sd_n(repo: Path) -> None:
    _config(repo, "    acc: {direction: max, max_drop: 0.01}")
    base = _repeats(repo, "baseline", BASE)
    _repeats(repo, "candidate", SAME)
    listing = run_mlci(repo, "runs", "--groups")
    assert listing.returncode == 0, listing.stderr
    assert "0.9 ± 0.0077 (6)" in listing.stdout and "0.89983 ± 0.0088 (6)" in listing.stdout
    groups = json.loads(run_mlci(repo, "runs", "--groups", "--json").stdout)
    assert sorted(g["runs"] for g in groups) == [6, 6]
    assert {round(g["acc"]["mean"], 6) for g in groups} == {0.9, round(sum(SAME) / 6, 6)}
    diff = run_mlci(repo, "diff", base, "HEAD")
    assert diff.returncode == 0, diff.stderr
    assert "0.9 ± 0.0077 (6)" in diff.stdout and "0.89983 ± 0.0088 (6)" in diff.stdout
    doc = json.loads(run_mlci(repo, "diff", base, "HEAD", "--json").stdout)
    acc = doc["metrics"][0]
    assert acc["base_group"]["n"] == 6 and acc["base"] == pytest.approx(0.9)


def test_repeat_ids_are_derived_and_an_explicit_repeat_is_not_recorded_twice(repo: Path) -> None:
    from mlci_tui.capture.build import repeat_id
    from mlci_tui.ledger import records

    _config(repo, "    acc: {max_drop: 0.01}")
    sha = commit(repo, {"params.yaml": "seed: 0\n", "metrics.json": metrics_json(acc=0.9)}, "c")
    write(repo, {"params.yaml": "seed: 7\n"})
    first = run_mlci(repo, "record", "--repeat", "7")
    assert first.returncode == 0, first.stderr
    assert repeat_id("workspace", sha, 7) in first.stdout
    assert repeat_id("workspace", sha, 7) not in (
        records.derived_id("commit", sha),
        records.derived_id("workspace", sha),
    )
    again = run_mlci(repo, "record", "--repeat", "7")
    assert again.returncode == 2 and "recorded already" in again.stderr


# ---------------------------------------------------------------- the statistics themselves


def test_t_distribution_and_mcnemar_match_scipy() -> None:
    for df in (1.0, 2.5, 7.3, 30.0, 400.0):
        for t in (-6.0, -1.2, 0.0, 0.7, 3.0):
            assert stats.t_cdf(t, df) == pytest.approx(sps.t.cdf(t, df), abs=1e-12)
        for q in (0.9, 0.95, 0.99, 0.999):
            assert stats.t_ppf(q, df) == pytest.approx(sps.t.ppf(q, df), rel=1e-9)
    for b, c in ((0, 0), (5, 12), (0, 3), (100, 130), (40_000, 40_500)):
        expected = 1.0 if b + c == 0 else sps.binomtest(min(b, c), b + c, 0.5).pvalue
        assert stats.mcnemar(b, c) == pytest.approx(expected, rel=1e-8)


def test_bootstrap_of_few_distinct_values_matches_index_resampling() -> None:
    """The multinomial shortcut for 0/1 scores draws from the same distribution as resampling indices."""
    rng = np.random.default_rng(3)
    d = rng.choice([-1.0, 0.0, 1.0], size=5000, p=[0.05, 0.9, 0.05])
    fast = stats.resampled_means(d, 4000)
    slow = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(4000)])
    assert fast.std() == pytest.approx(slow.std(), rel=0.06)
    assert fast.mean() == pytest.approx(d.mean(), abs=3 * d.std() / math.sqrt(len(d)) / math.sqrt(4000) * 10)


@pytest.mark.parametrize("seed", ["seed_env: SEED", "seed_param: seed"])
def test_ci_train_step_trains_each_repeat_and_records_a_group(repo: Path, seed: str) -> None:
    """train.repeats in CI: the command runs `count` times with its seed, each recorded as a repeat
    of HEAD (one group: mean ± sd (n) in `runs --groups`, what the noise-aware gate reads)."""
    train = (
        "import json, os, yaml\n"
        "p = yaml.safe_load(open('params.yaml'))\n"
        "s = int(os.environ.get('SEED', p.get('seed', 0)))\n"
        "json.dump({'acc': 0.8 + s / 100}, open('metrics.json', 'w'))\n"
    )
    commit(
        repo,
        {
            "mlci.yaml": f"train:\n  command: python train.py\n  repeats: {{count: 3, {seed}}}\n",
            "train.py": train,
            "params.yaml": "lr: 0.1\nseed: 0\n",
            ".gitignore": "metrics.json\n",
        },
        "project",
        no_verify=True,
    )
    proc = run_mlci(repo, "ci", "run", "train", "--event", "push")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("$ mlci record --commit HEAD --repeat") == 3
    rows = json.loads(run_mlci(repo, "runs", "--groups", "--json").stdout)
    (group,) = [r for r in rows if r.get("runs") == 3]
    values = json.loads(
        run_mlci(repo, "sql", "SELECT value FROM metrics WHERE name = 'acc' ORDER BY value", "--json").stdout
    )
    assert [round(v["value"], 9) for v in values] == [0.8, 0.81, 0.82]
    assert group["kind"] == "ci"
