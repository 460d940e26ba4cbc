"""A spot interruption: the trial writes a checkpoint and hangs; the whole machine's processes
(the coordinator, its pool worker, the trial's supervisor and command) are SIGKILLed at once, so
nothing is uploaded at the attempt's end. The checkpoint was uploaded while the trial ran; the
retry in ANOTHER clone restores it through the data remote and resumes from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import run_mlci
from sweep_helpers import ok, processes_with_env, shared_project, status_json, sweep_id_of, wait_for

SPOT = (
    "import json, os, pathlib, time, yaml\n"
    "p = yaml.safe_load(open('params.yaml'))\n"
    "ckpt = pathlib.Path(os.environ['MLCI_CHECKPOINT_DIR']) / 'state' / 'epoch.txt'\n"
    "if not ckpt.exists():\n"
    "    ckpt.parent.mkdir(parents=True, exist_ok=True)\n"
    "    ckpt.write_text('7')\n"
    "    time.sleep(3600)  # the VM vanishes here\n"
    "json.dump({'acc': p['lr'] + int(ckpt.read_text()) / 100}, open('metrics.json', 'w'))\n"
)
SWEEP = """\
  spot:
    method: grid
    metric: acc
    push: false
    checkpoint_interval: 1
    params:
      lr: [0.5]
"""


def _vanish_after_upload(leader: subprocess.Popen[Any], latest: Path, sweep_id: str) -> list[int]:
    """Once the running trial's checkpoint is on the remote, the machine vanishes: `leader`'s process
    group and the trial's processes are SIGKILLed at once, nothing gets to clean up. The trial's pids."""
    try:
        wait_for(latest.exists, timeout=120, what="the running trial's checkpoint on the data remote")
    finally:
        trial_procs = processes_with_env("MLCI_SWEEP_ID", sweep_id)
        os.killpg(leader.pid, signal.SIGKILL)
        for pid in trial_procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        leader.communicate()
    return trial_procs


def test_a_killed_worker_s_checkpoint_is_resumed_in_another_clone(
    tmp_path: Path, upstream: Path, clone_of: Callable[..., Path]
) -> None:
    store = tmp_path / "store"
    a = shared_project(clone_of("a"), store, SWEEP, SPOT)
    ok(run_mlci(a, "sweep", "create", "spot"))
    ok(run_mlci(a, "ledger", "push"))
    sid = sweep_id_of(a, "spot")
    (trial,) = status_json(a, "spot")

    coordinator = subprocess.Popen(
        [sys.executable, "-m", "mlci_tui", "sweep", "start", "spot"],
        cwd=a,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    latest = store / "mlci-checkpoints" / f"{trial['trial_id']}.json"
    assert _vanish_after_upload(coordinator, latest, sid), "the trial was running when the machine went"
    assert json.loads(latest.read_text())["nfiles"] == 1
    ended = ok(run_mlci(a, "sql", "SELECT count(*) AS n FROM events WHERE body->>'state' = 'failed'", "--json"))
    assert json.loads(ended.stdout) == [{"n": 0}]  # no attempt end was recorded: the upload came while it ran

    b = clone_of("b")
    ok(run_mlci(b, "ledger", "pull"))
    ok(run_mlci(b, "sweep", "start", "spot"))
    (row,) = status_json(b, "spot")
    assert row["state"] == "done"
    assert abs(row["acc"] - 0.57) < 1e-9  # lr 0.5 + epoch 7 read from the checkpoint clone a uploaded

    # the machine comes back: its coordinator finds the trial lost and the ledger says what it resumes from
    ok(run_mlci(a, "sweep", "start", "spot"))
    sql = "SELECT body FROM events WHERE type = 'trial' AND body->>'state' = 'requeued'"
    (requeued,) = [json.loads(r["body"]) for r in json.loads(ok(run_mlci(a, "sql", sql, "--json")).stdout)]
    assert (
        requeued["reason"].startswith("lost:")
        and requeued["checkpoint"]["hash"] == (json.loads(latest.read_text())["hash"])
    )


TASK = (
    "import json, sys\n"
    "from mlci_tui.sweep.dask_task import run_trial_task\n"
    "print(json.dumps(run_trial_task(json.loads(sys.argv[1]), json.loads(sys.argv[2]))))\n"
)


def test_a_killed_dask_task_on_a_cloned_worker_resumes_on_another_worker(
    tmp_path: Path, upstream: Path, clone_of: Callable[..., Path]
) -> None:
    """The task a Dask worker runs, on workers that cannot see the project (each clones it from
    the remote and has no checkout, so the data remote comes from the base commit's config):
    the first worker's process tree is SIGKILLed mid-trial; the second resumes from the upload."""
    from mlci_tui.gitio import Repo
    from mlci_tui.sweep.queue import QueueState
    from mlci_tui.sweep.runner import TrialJob

    store = tmp_path / "store"
    dev = shared_project(clone_of("dev"), store, SWEEP, SPOT)
    ok(run_mlci(dev, "sweep", "create", "spot"))
    sweep = QueueState(Repo.find(dev)).find("spot")
    job = TrialJob.of(sweep, sweep.ordered()[0])
    args = [json.dumps(job.to_json()), json.dumps({"repo": str(tmp_path / "not-here"), "remote_url": str(upstream)})]

    def worker(name: str) -> subprocess.Popen[str]:
        env = {**os.environ, "MLCI_DASK_WORKDIR": str(tmp_path / name)}
        return subprocess.Popen(
            [sys.executable, "-c", TASK, *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    first = worker("worker-1")
    latest = store / "mlci-checkpoints" / f"{job.trial_id}.json"
    assert _vanish_after_upload(first, latest, job.sweep_id)

    second = worker("worker-2")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["state"] == "done", result
    run, _done = result["records"]
    assert abs(run["metrics"]["metrics.json"]["acc"] - 0.57) < 1e-9  # epoch 7 from the first worker's upload
