"""Cluster managers by import path: `cluster: {manager: distributed.LocalCluster, kwargs: ...}` is
imported, created for the sweep, scaled to -j and closed at the end and on Ctrl-C (the worker
processes it started are checked in the process table); a manager whose package is missing is
one line naming the mlci-tui extra that installs it."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest
from conftest import run_mlci
from sweep_helpers import ok, processes_with_env, start_background, status_json, sweep_id_of, sweep_repo, wait_for

pytest.importorskip("distributed")

KWARGS = "{n_workers: 0, threads_per_worker: 1, processes: true, dashboard_address: null, silence_logs: 40}"


def _sweep(name: str, lrs: str, sleep: float) -> str:
    return (
        f"  {name}:\n    params:\n      lr: [{lrs}]\n      sleep: [{sleep}]\n    metric: acc\n    executor: dask\n"
        f"    cluster:\n      manager: distributed.LocalCluster\n      kwargs: {KWARGS}\n"
    )


def _workers(marker: str, coordinator: int) -> list[int]:
    """The cluster's processes: everything that inherited the test's marker but the coordinator."""
    return [pid for pid in processes_with_env("MLCI_CLUSTER_TEST", marker) if pid != coordinator]


def test_a_manager_by_import_path_is_created_scaled_and_closed(repo: Path) -> None:
    sweep_repo(repo, _sweep("lc", "0.1, 0.2, 0.3, 0.4", 1) + _sweep("lc-long", "0.1", 60))
    ok(run_mlci(repo, "sweep", "create", "lc"))
    marker = uuid.uuid4().hex
    coordinator = start_background(repo, "lc", "-j", "2", env={"MLCI_CLUSTER_TEST": marker})
    out, err = coordinator.communicate(timeout=300)
    assert coordinator.returncode == 0, err
    assert "cluster: created LocalCluster" in err and "scaling to 2 worker(s)" in err, err
    assert "2 trial(s) at a time" in err and "closed" in err and "Traceback" not in err
    rows = status_json(repo, "lc")
    assert [r["state"] for r in rows] == ["done"] * 4
    done = json.loads(
        ok(
            run_mlci(repo, "sql", "SELECT body->>'worker' AS w FROM events WHERE body->>'state' = 'done'", "--json")
        ).stdout
    )
    assert len({r["w"] for r in done}) == 2  # scaled to -j: two worker processes shared the four trials
    assert _workers(marker, coordinator.pid) == []  # closed: no worker process left

    # Ctrl-C while a trial runs: requeued, and the cluster closed all the same
    ok(run_mlci(repo, "sweep", "create", "lc-long"))
    sid = sweep_id_of(repo, "lc-long")
    coordinator = start_background(repo, "lc-long", "-j", "1", env={"MLCI_CLUSTER_TEST": marker})
    wait_for(lambda: processes_with_env("MLCI_SWEEP_ID", sid), timeout=120, what="the trial running")
    assert _workers(marker, coordinator.pid)
    coordinator.send_signal(signal.SIGINT)
    _out, err = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 130, err
    assert "closed" in err and "Traceback" not in err
    (row,) = status_json(repo, "lc-long")
    assert (row["state"], row["reason"]) == ("queued", "interrupted (Ctrl-C)")
    deadline = time.monotonic() + 30
    while _workers(marker, coordinator.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _workers(marker, coordinator.pid) == []


def test_a_missing_manager_package_names_the_extra(repo: Path) -> None:
    managers = {
        "ec2": ("dask_cloudprovider.aws.EC2Cluster", "cloud-aws"),
        "gcp": ("dask_cloudprovider.gcp.GCPCluster", "cloud-gcp"),
        "k8s": ("dask_kubernetes.operator.KubeCluster", "kubernetes"),
        "coiled": ("coiled.Cluster", "coiled"),
    }
    sweep_repo(
        repo,
        "".join(
            f"  {name}:\n    params:\n      lr: [0.1]\n    executor: dask\n"
            f"    cluster:\n      manager: {manager}\n      kwargs: {{n_workers: 2}}\n"
            for name, (manager, _extra) in managers.items()
        )
        + "  badargs:\n    params:\n      lr: [0.1]\n    executor: dask\n"
        "    cluster:\n      manager: distributed.NoSuchCluster\n"
        "  secret:\n    params:\n      lr: [0.1]\n    executor: dask\n"
        "    cluster:\n      manager: coiled.Cluster\n      kwargs: {n_workers: 2, token: 'abcdefghij0123456789abcdefghij'}\n",
    )
    for name, (manager, extra) in managers.items():
        try:
            __import__(manager.split(".")[0])
        except ImportError:
            pass
        else:
            continue  # installed here: not a missing package
        ok(run_mlci(repo, "sweep", "create", name))
        proc = run_mlci(repo, "sweep", "start", name)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert f"cluster.manager {manager}" in line and f"pip install 'mlci-tui[{extra}]'" in line, line
        assert [r["state"] for r in status_json(repo, name)] == ["queued"]  # nothing was started
    ok(run_mlci(repo, "sweep", "create", "badargs"))
    proc = run_mlci(repo, "sweep", "start", "badargs")
    assert proc.returncode == 2 and "distributed has no cluster manager 'NoSuchCluster'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    # credentials come from the environment only: refused before anything reaches the ledger
    proc = run_mlci(repo, "sweep", "create", "secret")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sweeps.secret: cluster.kwargs.token: looks like a credential" in proc.stderr, proc.stderr
    assert "abcdefghij" not in proc.stderr
