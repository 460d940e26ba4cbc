"""`mlci bisect`: change points from the ledger, and the training search over gaps (real git
repositories, real trainings through the sweep machinery, real processes)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import commit, git, run_mlci
from sweep_helpers import ok, wait_for

CONFIG = (
    f"train:\n  command: {json.dumps(sys.executable + ' train.py')}\n"
    "metrics:\n  fields:\n    acc:\n      direction: max\n"
)

# reads the commit's quality, optionally sleeps, fails where a `flaky` file exists; every
# training appends `N-start` to COUNT_FILE as it starts and its commit number N as it ends
TRAIN = """\
import json, os, sys, time
n = open('n.txt').read().strip()
with open(os.environ['COUNT_FILE'], 'a') as out:
    out.write(n + '-start\\n')
time.sleep(float(os.environ.get('TRAIN_SLEEP', '0')))
with open(os.environ['COUNT_FILE'], 'a') as out:
    out.write(n + ('-failed' if os.path.exists('flaky') else '') + '\\n')
if os.path.exists('flaky'):
    sys.exit(3)
seed = int(os.environ.get('SEED', '0'))
json.dump({'acc': float(open('quality.txt').read()) + seed / 1000}, open('metrics.json', 'w'))
"""


def ledger_history(root: Path, values: list[float], *, params_at: int | None = None) -> list[str]:
    """One commit per value, each with its metrics.json; all captured into the ledger."""
    git(root, "init", "-q", "-b", "main")
    shas = []
    for n, value in enumerate(values):
        files = {"metrics.json": json.dumps({"acc": value}), "n.txt": f"{n}\n"}
        if n == 0:
            files["mlci.yaml"] = CONFIG
        if n == 0 or n == params_at:
            files["params.yaml"] = f"lr: {0.2 if n == params_at else 0.1}\n"
        shas.append(commit(root, files, f"commit {n}", no_verify=True))
    ok(run_mlci(root, "capture", *shas))
    return shas


def noisy(n: int, seed: int, steps: dict[int, float] | None = None, base: float = 0.9) -> list[float]:
    rng = random.Random(seed)
    level, out = base, []
    for i in range(n):
        level += (steps or {}).get(i, 0.0)
        out.append(round(level + rng.gauss(0, 0.003), 6))
    return out


def bisect_json(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(run_mlci(root, "bisect", *args, "--json", env=env, timeout=300)).stdout)


# ------------------------------------------------------------------ from the ledger
def test_a_step_amid_noise_is_found_at_its_commit_with_what_changed(repo: Path) -> None:
    shas = ledger_history(repo, noisy(40, 1, {25: -0.04}), params_at=25)
    rows = bisect_json(repo, "acc")
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["before"], row["after"]) == (shas[24], shas[25])
    assert row["regression"] is True and row["step"] < -0.03 and row["confidence"] > 0.99
    assert row["untested"] == 0
    assert row["params"] == {"lr": ["0.1", "0.2"]}
    assert any("params.yaml" in line for line in row["files"])
    table = ok(run_mlci(repo, "bisect", "acc")).stdout
    assert shas[25][:10] in table and "params lr" in table and "1 change point" in table


def test_two_steps_are_both_found_the_larger_first(repo: Path) -> None:
    shas = ledger_history(repo, noisy(60, 2, {15: 0.02, 40: -0.05}))
    rows = bisect_json(repo, "acc")
    assert [r["after"] for r in rows] == [shas[40], shas[15]]
    assert [r["regression"] for r in rows] == [True, False]
    assert rows[0]["rank"] == 1 and rows[1]["rank"] == 2


def test_pure_noise_reports_no_change_point(repo: Path) -> None:
    ledger_history(repo, noisy(50, 3))
    assert bisect_json(repo, "acc") == []
    assert "0 change point(s)" in ok(run_mlci(repo, "bisect", "acc")).stdout


def test_a_range_limits_the_search(repo: Path) -> None:
    shas = ledger_history(repo, noisy(40, 4, {10: -0.05, 30: -0.05}))
    rows = bisect_json(repo, "acc", "--range", f"{shas[20]}..{shas[39]}")
    assert [r["after"] for r in rows] == [shas[30]]


# ------------------------------------------------------------------ training the gaps
def gap_history(root: Path, *, culprit: int = 41, flaky: int | None = 31, n: int = 64) -> list[str]:
    """`n` commits; quality drops at `culprit`; `flaky` fails to train; runs only at the two ends."""
    git(root, "init", "-q", "-b", "main")
    shas = []
    for i in range(n):
        files: dict[str, str] = {"n.txt": f"{i}\n", "quality.txt": "0.8\n" if i >= culprit else "0.95\n"}
        if i == 0:
            files.update({"mlci.yaml": CONFIG, "train.py": TRAIN, "metrics.json": '{"acc": 0.95}'})
        if i == n - 1:
            files["metrics.json"] = '{"acc": 0.8}'
        if flaky is not None and i == flaky:
            files["flaky"] = "x\n"
        shas.append(commit(root, files, f"commit {i}", no_verify=True))
        if flaky is not None and i == flaky:
            git(root, "rm", "-q", "flaky")
    ok(run_mlci(root, "capture", shas[0], shas[-1]))
    return shas


def lines(count_file: Path) -> list[str]:
    return count_file.read_text().split() if count_file.exists() else []


def trainings(count_file: Path) -> list[str]:
    """The trainings that ran to their end, by commit number."""
    return [line for line in lines(count_file) if not line.endswith("-start")]


def test_gaps_are_trained_only_where_the_search_needs_them(repo: Path, tmp_path: Path) -> None:
    shas = gap_history(repo)
    count = tmp_path / "count.txt"
    env = {"COUNT_FILE": str(count)}
    result = bisect_json(repo, "acc", "--bad-if", "acc < 0.9", env=env)
    assert result["culprit"] == shas[41]
    assert result["good"] == shas[40]
    assert result["skipped"] == [shas[31]]
    done = trainings(count)
    assert len(done) <= 7 and len(done) == result["trainings"], done
    assert "31-failed" in done and len(set(done)) == len(done)
    # the trainings are ordinary runs of kind bisect, one per commit, with derived ids
    proc = ok(
        run_mlci(repo, "sql", "SELECT commit, kind, metrics['acc'] AS acc FROM runs WHERE kind = 'bisect'", "--json")
    )
    runs = json.loads(proc.stdout)
    assert len(runs) == len(done) - 1 and {r["commit"] for r in runs} <= set(shas)
    # a second bisect reuses them: no training at all
    again = bisect_json(repo, "acc", "--bad-if", "acc < 0.9", env=env)
    assert again["culprit"] == shas[41] and again["trainings"] == 0
    assert len(trainings(count)) == len(done)
    # the table names the culprit and the skipped commit
    text = ok(run_mlci(repo, "bisect", "acc", "--bad-if", "acc < 0.9", env=env)).stdout
    assert f"first bad commit: {shas[41]}" in text and shas[31][:10] in text


def test_trainings_are_not_more_than_git_bisect_first_parent(repo: Path, tmp_path: Path) -> None:
    shas = gap_history(repo, culprit=23, flaky=None)
    count = tmp_path / "count.txt"
    result = bisect_json(repo, "acc", "--good", shas[0], "--bad", shas[-1], env={"COUNT_FILE": str(count)})
    assert result["culprit"] == shas[23]
    # git bisect run on the same range, with a script that trains in the working tree
    script = tmp_path / "judge.sh"
    git_count = tmp_path / "git-count.txt"
    script.write_text(
        f"#!/bin/sh\nCOUNT_FILE={git_count} {sys.executable} train.py || exit 125\n"
        f"{sys.executable} -c \"import json,sys; sys.exit(json.load(open('metrics.json'))['acc'] < 0.9)\"\n"
    )
    script.chmod(0o755)
    git(repo, "bisect", "start", "--first-parent", shas[-1], shas[0])
    out = git(repo, "bisect", "run", str(script))
    git(repo, "bisect", "reset")
    assert f"{shas[23]} is the first bad commit" in out
    assert result["trainings"] <= len(trainings(git_count)), (result["trainings"], trainings(git_count))


def test_resume_after_sigkill_trains_nothing_twice_and_finds_the_same_commit(repo: Path, tmp_path: Path) -> None:
    shas = gap_history(repo, culprit=41, flaky=None)
    count = tmp_path / "count.txt"
    env = dict(os.environ, COUNT_FILE=str(count), TRAIN_SLEEP="0.6")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlci_tui", "bisect", "acc", "--good", shas[0], "--bad", shas[-1]],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # two trainings recorded and the third one running (it sleeps): kill everything then
        wait_for(lambda: sum(x.endswith("-start") for x in lines(count)) >= 3, timeout=120, what="a third training")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the bisect, its pool worker and the training
        proc.wait()
    before = lines(count)
    assert len(trainings(count)) == 2 and before[-1].endswith("-start"), before  # killed mid-training
    state = json.loads((repo / ".git" / "mlci" / "bisect" / "state.json").read_text())
    assert state["result"] is None
    result = bisect_json(repo, "--resume", env={"COUNT_FILE": str(count)})
    assert result["culprit"] == shas[41]
    done = trainings(count)
    assert len(set(done)) == len(done), done  # no commit trained twice to the end
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    gap_history(fresh, culprit=41, flaky=None)
    fresh_count = tmp_path / "fresh-count.txt"
    clean = bisect_json(fresh, "acc", "--good", "HEAD~63", "--bad", "HEAD", env={"COUNT_FILE": str(fresh_count)})
    assert sorted(trainings(fresh_count)) == sorted(done)  # the same probes as a bisect never interrupted
    assert clean["culprit"] == git(fresh, "rev-parse", "HEAD~22").strip()


def test_bad_input_is_one_line_and_exit_2(repo: Path) -> None:
    ledger_history(repo, noisy(5, 5))
    for args, text in (
        (("acc", "--bad-if", "loss < 1"), "not the bisected metric"),
        (("acc", "--bad-if", "acc about 1"), "expected METRIC"),
        (("--resume",), "no bisect to resume"),
        (("acc", "--good", "nope"), "--good nope: not a commit"),
        (("acc", "--bad-if", "acc < 0.9", "--confidence", "1.5"), "--confidence 1.5: a level between 0 and 1"),
        ((), "name the metric"),
    ):
        proc = run_mlci(repo, "bisect", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_repeats_train_each_probe_k_times_with_the_seed_in_the_environment(repo: Path, tmp_path: Path) -> None:
    from mlci_tui.capture.build import repeat_id

    shas = gap_history(repo, culprit=5, flaky=None, n=8)
    commit(repo, {"mlci.yaml": CONFIG.replace("train:\n", "train:\n  repeats: {count: 2, seed_env: SEED}\n")}, "seeds")
    count = tmp_path / "count.txt"
    result = bisect_json(repo, "acc", "--good", shas[0], "--bad", shas[-1], env={"COUNT_FILE": str(count)})
    assert result["culprit"] == shas[5]
    probed = [p["commit"] for p in result["probes"]]
    for probe in result["probes"]:  # two repeats, SEED 0 and 1
        assert probe["trained"] == 2 and max(probe["values"]) - min(probe["values"]) == pytest.approx(0.001), probe
    assert len(trainings(count)) == 2 * len(probed) == result["trainings"]
    rows = json.loads(
        ok(run_mlci(repo, "sql", "SELECT run_id, commit FROM runs WHERE kind = 'bisect'", "--json")).stdout
    )
    assert {r["run_id"] for r in rows} == {repeat_id("bisect", c, i) for c in probed for i in (0, 1)}


# ------------------------------------------------------------------ verdicts on repeats
# the seed's noise: repeat i of commit n adds NOISE[(i + n) % 5] (mean -0.0012, sd ~0.005)
NOISY_TRAIN = """\
import json, os
NOISE = [-0.006, 0.004, -0.005, 0.003, -0.002]
n = int(open('n.txt').read())
seed = int(os.environ.get('SEED', '0'))
with open(os.environ['COUNT_FILE'], 'a') as out:
    out.write(f'{n}\\n')
if os.environ.get('FAIL_SEED') == str(seed):
    raise SystemExit(3)
json.dump({'acc': float(open('quality.txt').read()) + NOISE[(seed + n) % 5]}, open('metrics.json', 'w'))
"""


def seeded_history(root: Path, qualities: list[float], repeats: int) -> list[str]:
    """One commit per quality, trained with seeds through SEED; runs captured only at the two ends."""
    git(root, "init", "-q", "-b", "main")
    config = CONFIG.replace("train:\n", f"train:\n  repeats: {{count: {repeats}, seed_env: SEED}}\n")
    shas = []
    for i, quality in enumerate(qualities):
        files = {"n.txt": f"{i}\n", "quality.txt": f"{quality}\n"}
        if i == 0:
            files.update({"mlci.yaml": config, "train.py": NOISY_TRAIN})
        if i in (0, len(qualities) - 1):
            files["metrics.json"] = json.dumps({"acc": quality})
        shas.append(commit(root, files, f"commit {i}", no_verify=True))
    ok(run_mlci(root, "capture", shas[0], shas[-1]))
    return shas


def test_repeats_below_a_threshold_by_noise_are_good_and_a_real_drop_is_bad(repo: Path, tmp_path: Path) -> None:
    # quality 0.9 up to commit 5, then 0.85: every good commit's mean of four seeds is just
    # under 0.9 by noise (the point rule called them bad), the drop is real
    shas = seeded_history(repo, [0.9] * 5 + [0.85] * 3, repeats=4)
    count = tmp_path / "count.txt"
    env = {"COUNT_FILE": str(count)}
    result = bisect_json(repo, "acc", "--good", shas[0], "--bad", shas[-1], "--bad-if", "acc < 0.9", env=env)
    assert result["culprit"] == shas[5] and result["good"] == shas[4], result
    by_commit = {p["commit"]: p for p in result["probes"]}
    assert shas[0] in by_commit and shas[-1] in by_commit  # the ends are judged on four seeds too
    noisy_good = [p for p in result["probes"] if p["verdict"] == "good" and sum(p["values"]) / 4 < 0.9]
    assert noisy_good, result["probes"]  # judged good although the mean is below 0.9
    for p in result["probes"]:
        test = p["test"]
        assert len(p["values"]) == 4 and test["n"] == 4 and test["test"] == "one-sample-t", p
        assert test["confidence"] == 0.95 and (test["lower"] > 0) == (p["verdict"] == "bad"), p
        assert "at 95%" in test["interval"]
    # the table names the test, n and the interval per probed commit
    text = ok(run_mlci(repo, "bisect", "acc", "--good", shas[0], "--bad", shas[-1], "--bad-if", "acc < 0.9", env=env))
    assert "one-sample t, n 4" in text.stdout and "move >= " in text.stdout and "± " in text.stdout
    # a stricter level from --confidence still blames the drop
    strict = bisect_json(
        repo, "acc", "--good", shas[0], "--bad", shas[-1], "--bad-if", "acc < 0.9", "--confidence", "0.99", env=env
    )
    assert strict["culprit"] == shas[5] and strict["trainings"] == 0
    assert {p["test"]["confidence"] for p in strict["probes"]} == {0.99}


def test_one_run_a_commit_is_the_point_rule_with_a_notice(repo: Path, tmp_path: Path) -> None:
    shas = seeded_history(repo, [0.9] * 5 + [0.85] * 3, repeats=1)
    env = {"COUNT_FILE": str(tmp_path / "count.txt")}
    proc = run_mlci(
        repo,
        "bisect",
        "acc",
        "--good",
        shas[0],
        "--bad",
        shas[-1],
        "--bad-if",
        "acc < 0.8999",
        "--json",
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "one run a commit, so the point rule decides" in proc.stderr
    result = json.loads(proc.stdout)
    assert result["culprit"] == shas[4]  # fooled by one seed's noise (0.898), where four seeds were not
    assert result["probes"] and all(
        p["test"]["test"] == "point" and p["test"]["lower"] is None for p in result["probes"]
    )


def test_without_a_threshold_repeats_are_judged_by_welch_against_the_good_end(repo: Path, tmp_path: Path) -> None:
    shas = seeded_history(repo, [0.9] * 6 + [0.88] * 4, repeats=3)
    count = tmp_path / "count.txt"
    result = bisect_json(repo, "acc", "--good", shas[0], "--bad", shas[-1], env={"COUNT_FILE": str(count)})
    assert result["culprit"] == shas[6], result
    assert "Welch's t at 95%" in result["rule"]
    for p in result["probes"]:
        assert p["test"]["test"] == "welch" and p["test"]["n"] == 3 and p["test"]["n_good"] == 3, p
    assert len(count.read_text().split()) == result["trainings"] == 3 * len(result["probes"])


def test_a_repeat_that_fails_is_named_beside_the_commits_short_n(repo: Path, tmp_path: Path) -> None:
    shas = seeded_history(repo, [0.9] * 6 + [0.85] * 4, repeats=3)
    env = {"COUNT_FILE": str(tmp_path / "count.txt"), "FAIL_SEED": "1"}
    result = bisect_json(repo, "acc", "--good", shas[0], "--bad", shas[-1], env=env)
    assert result["culprit"] == shas[6], result
    for p in result["probes"]:  # every trained commit: seeds 0 and 2 gave values, seed 1 failed
        assert p["test"]["n"] == 2 and len(p["unused"]) == 1 and p["unused"][0].startswith("trial 1: "), p
    text = run_mlci(repo, "bisect", "acc", "--good", shas[0], "--bad", shas[-1], env=env)
    assert "1 repeat(s) gave no value: trial 1: " in ok(text).stderr + text.stdout


def test_the_verdicts_bounds_are_scipys() -> None:
    from scipy import stats as sps

    from mlci_tui.bisect.verdict import Rule

    values = [0.894, 0.904, 0.895, 0.903]
    judged = Rule("<", 0.9, 0.95).judge(values)
    mean, se = sum(values) / 4, sps.sem(values)
    upper = mean + sps.t.ppf(0.95, 3) * se  # the mean's one-sided upper bound
    assert judged.verdict == "good" and judged.lower == pytest.approx(0.9 - upper, abs=1e-9)
    good = [0.95, 0.951, 0.949, 0.952]
    drop = [0.94, 0.943, 0.939]
    welch = Rule("<", 0.9, 0.9, tuple(good)).judge(drop)
    res = sps.ttest_ind(good, drop, equal_var=False, alternative="greater")
    low = res.confidence_interval(0.9).low
    assert welch.verdict == "bad" and welch.test == "welch" and welch.lower == pytest.approx(low, abs=1e-9)
    assert Rule("<", 0.9, 0.95).judge([0.899]).test == "point"
