"""What tuners expect, on the local executor: GPUs packed one trial each (a fake nvidia-smi), a median
pruner that stops a lagging trial from its dvclive steps, budgets that stop dispatch, and a trial
resumed from its checkpoint after its worker was killed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import run_mlci
from sweep_helpers import leases, ok, start_background, status_json, sweep_repo, wait_for

GPU_TRAIN = """\
import json, os, time, yaml
p = yaml.safe_load(open('params.yaml'))
began = time.time()
time.sleep(0.5)
with open(os.environ['GPU_LOG'], 'a') as log:
    log.write(f"{os.environ['CUDA_VISIBLE_DEVICES']} {began} {time.time()}\\n")
json.dump({'acc': p['lr']}, open('metrics.json', 'w'))
"""


def _fake_nvidia_smi(tmp_path: Path, gpus: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + "".join(f"echo {i}\n" for i in range(gpus)))
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GPU_LOG": str(tmp_path / "gpu.log")}


def test_trials_are_packed_one_per_gpu(repo: Path, tmp_path: Path) -> None:
    sweep_repo(
        repo,
        "  g:\n    params:\n      lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]\n    metric: acc\n    resources: {gpus: 1}\n",
        command="python gpu_train.py",
        extra={"gpu_train.py": GPU_TRAIN},
    )
    ok(run_mlci(repo, "sweep", "create", "g"))
    env = _fake_nvidia_smi(tmp_path, 2)
    proc = ok(run_mlci(repo, "sweep", "start", "g", "-j", "4", env=env))
    assert "gpus: 2 found (0, 1), 1 per trial" in proc.stderr
    assert [r["state"] for r in status_json(repo, "g")] == ["done"] * 6
    spans = [line.split() for line in (tmp_path / "gpu.log").read_text().splitlines()]
    assert len(spans) == 6 and {s[0] for s in spans} == {"0", "1"}
    for gpu in ("0", "1"):  # never two trials on one GPU at once
        mine = sorted((float(a), float(b)) for g, a, b in spans if g == gpu)
        assert all(end <= start for (_s, end), (start, _e) in zip(mine, mine[1:])), mine

    # a machine without GPUs refuses the sweep: one line, exit 2
    ok(run_mlci(repo, "sweep", "create", "g2", "--file", str(_one_sweep(tmp_path))))
    refused = run_mlci(repo, "sweep", "start", "g2", env={"PATH": "/usr/bin:/bin"})
    assert refused.returncode == 2 and "resources.gpus is 1 per trial, but nvidia-smi lists no GPU" in refused.stderr


def _one_sweep(tmp_path: Path) -> Path:
    path = tmp_path / "g2.yaml"
    path.write_text("params:\n  lr: [0.1]\nresources: {gpus: 1}\n")
    return path


STEPPED = """\
import json, os, time, yaml
p = yaml.safe_load(open('params.yaml'))
os.makedirs('dvclive/plots/metrics', exist_ok=True)
with open('dvclive/plots/metrics/acc.tsv', 'w') as out:
    out.write('step\\tacc\\n')
    for step in range(8):
        out.write(f"{step}\\t{p['lr'] * (step + 1)}\\n")
        out.flush()
        time.sleep(0.4)
json.dump({'acc': p['lr'] * 8}, open('metrics.json', 'w'))
"""


def test_a_median_pruner_stops_the_trial_whose_steps_lag(repo: Path) -> None:
    pytest.importorskip("optuna")
    sweep_repo(
        repo,
        "  p:\n    params:\n      lr: [1.0, 0.9, 0.05]\n    metric: acc\n    pruner: median\n    prune_after: 2\n",
        command="python stepped.py",
        extra={"stepped.py": STEPPED},
    )
    ok(run_mlci(repo, "sweep", "create", "p"))
    ok(run_mlci(repo, "sweep", "start", "p", "-j", "1", timeout=120))
    rows = status_json(repo, "p")
    assert [r["state"] for r in rows] == ["done", "done", "pruned"]
    reason = rows[2]["reason"]
    assert reason.startswith("pruned at step ") and "(median pruner): acc=" in reason
    assert int(reason.split()[3]) < 7  # stopped before its last step
    summary = ok(run_mlci(repo, "sweep", "status"))
    assert "pruned" in summary.stdout


def test_budgets_stop_dispatch(repo: Path) -> None:
    sweep_repo(
        repo,
        "  n:\n    params:\n      lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]\n    metric: acc\n    budget: {max_trials: 2}\n"
        "  t:\n    params:\n      lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]\n      sleep: [0.7]\n    budget: {max_time: 1}\n"
        "  c:\n    params:\n      lr: [0.1]\n    budget: {max_cost: 1}\n",
    )
    ok(run_mlci(repo, "sweep", "create", "n"))
    proc = ok(run_mlci(repo, "sweep", "start", "n"))
    assert "budget max_trials 2 reached; 4 queued trial(s) cancelled" in proc.stderr
    rows = status_json(repo, "n")
    assert [r["state"] for r in rows] == ["done"] * 2 + ["cancelled"] * 4
    assert {r["reason"] for r in rows[2:]} == {"budget max_trials 2 reached"}
    status = ok(run_mlci(repo, "sweep", "status", "n"))
    assert "dispatch stopped: budget max_trials 2 reached" in status.stdout

    ok(run_mlci(repo, "sweep", "create", "t"))
    ok(run_mlci(repo, "sweep", "start", "t"))
    states = [r["state"] for r in status_json(repo, "t")]
    assert 1 <= states.count("done") <= 3 and states.count("cancelled") == 6 - states.count("done")
    listing = ok(run_mlci(repo, "sweep", "status", env={"COLUMNS": "80"})).stdout.splitlines()
    assert "pruned" not in listing[0] and "queued" in listing[0]  # no pruner: no pruned column
    assert all(len(line) <= 80 for line in listing) and listing[2].split()[0] in ("n", "t"), listing

    refused = run_mlci(repo, "sweep", "create", "c")
    assert refused.returncode == 2 and "budget.max_cost: needs price_per_hour" in refused.stderr


RESUMING = """\
import json, os, time, yaml
state = os.path.join(os.environ['MLCI_CHECKPOINT_DIR'], 'state.json')
if os.path.exists(state):
    step = json.load(open(state))['step']
    json.dump({'acc': 1.0, 'resumed_from': step}, open('metrics.json', 'w'))
else:
    json.dump({'step': 5}, open(state, 'w'))
    time.sleep(60)
"""


def test_a_trial_resumes_from_its_checkpoint_after_its_worker_is_killed(repo: Path) -> None:
    sweep_repo(
        repo,
        "  r:\n    params:\n      lr: [0.1]\n    metric: acc\n",
        command="python resume.py",
        extra={"resume.py": RESUMING},
    )
    ok(run_mlci(repo, "sweep", "create", "r"))
    coordinator = start_background(repo, "r")
    checkpoints = repo / ".git" / "mlci" / "checkpoints"
    wait_for(lambda: list(checkpoints.glob("*/state.json")), what="the first attempt's checkpoint")
    (lease,) = wait_for(lambda: [x for x in leases(repo) if x.get("child_pid")], what="the lease")
    os.kill(int(lease["pid"]), signal.SIGKILL)
    _out, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, err
    (row,) = status_json(repo, "r")
    assert (row["state"], row["attempts"]) == ("done", 2)
    sql = f"SELECT value FROM metrics WHERE run_id = '{row['run_id']}' AND name = 'resumed_from'"
    assert json.loads(ok(run_mlci(repo, "sql", sql, "--json")).stdout) == [{"value": 5.0}]
    assert not list(checkpoints.glob("*/state.json"))  # a done trial's checkpoint is removed


def test_results_reach_the_ledger_remote_without_a_ledger_push(upstream: Path, clone_of: Any) -> None:
    dev = clone_of("dev")
    sweep_repo(dev, "  s:\n    params:\n      lr: [0.1, 0.2]\n    metric: acc\n")
    proc = ok(run_mlci(dev, "sweep", "create", "s"))
    proc = ok(run_mlci(dev, "sweep", "start", "s"))
    assert "ledger pushed to origin" in proc.stderr  # push: auto, and origin exists
    team = clone_of("team")
    ok(run_mlci(team, "ledger", "pull"))
    assert [r["state"] for r in status_json(team, "s")] == ["done", "done"]
