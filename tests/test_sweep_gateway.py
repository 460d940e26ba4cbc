"""Clusters mlci asks for: a sweep with `cluster: {manager: dask_gateway.Gateway}` creates its cluster
on a real dask-gateway-server (local backend, on loopback), scales it to -j, and shuts it down at the
end and on Ctrl-C. Other managers by import path: tests/test_sweep_clusters.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, run_mlci
from sweep_helpers import (
    ok,
    processes_with_env,
    start_background,
    status_json,
    sweep_id_of,
    sweep_repo,
    wait_for,
)

pytest.importorskip("distributed")
dask_gateway = pytest.importorskip("dask_gateway")
pytest.importorskip("dask_gateway_server")
DASK_CLI = Path(sys.executable).with_name("dask")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    """A dask-gateway-server on loopback whose clusters are local processes; yields its address."""
    if not DASK_CLI.exists():
        pytest.skip(f"no `dask` command beside {sys.executable}")
    api, proxy = free_port(), free_port()
    config = tmp_path / "gateway_config.py"
    config.write_text(
        f'c.DaskGateway.address = "127.0.0.1:{api}"\n'
        f'c.Proxy.address = "127.0.0.1:{proxy}"\n'
        'c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"\n'
        'c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"\n'
        "c.ClusterConfig.worker_threads = 1\n"
        f'c.ClusterConfig.scheduler_cmd = ["{DASK_CLI}", "scheduler"]\n'
        f'c.ClusterConfig.worker_cmd = ["{DASK_CLI}", "worker"]\n'
    )
    address = f"http://127.0.0.1:{proxy}"
    with open(tmp_path / "gateway.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "-f", str(config)], cwd=tmp_path, stdout=log, stderr=log
        )
        try:
            wait_for(lambda: _clusters(address) is not None, timeout=60, what="the gateway to answer")
            yield address
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _clusters(address: str) -> list[Any] | None:
    try:
        gw = dask_gateway.Gateway(address, auth="basic")
    except Exception:
        return None
    try:
        return list(gw.list_clusters())
    except Exception:
        return None
    finally:
        gw.close()
        gw.__dict__.pop("_loop_runner", None)  # else its __del__ closes it again on a stopped loop


def _sweep(name: str, address: str, sleep: float, trials: str) -> str:
    return (
        f"  {name}:\n    params:\n      lr: [{trials}]\n      sleep: [{sleep}]\n    metric: acc\n    executor: dask\n"
        f"    cluster:\n      manager: dask_gateway.Gateway\n      kwargs: {{address: '{address}', auth: basic}}\n"
    )


def test_a_sweep_creates_scales_and_closes_its_gateway_cluster(repo: Path, gateway: str) -> None:
    sweep_repo(repo, _sweep("gw", gateway, 0, "0.1, 0.2, 0.3") + _sweep("gw-long", gateway, 60, "0.1"))
    ok(run_mlci(repo, "sweep", "create", "gw"))
    proc = ok(run_mlci(repo, "sweep", "start", "gw", "-j", "2", timeout=300))
    assert "dask gateway: created cluster" in proc.stderr and "scaling to 2 worker(s)" in proc.stderr
    assert "dask: gateway cluster" in proc.stderr and "2 trial(s) at a time" in proc.stderr
    assert "shut down" in proc.stderr
    rows = status_json(repo, "gw")
    assert [r["state"] for r in rows] == ["done"] * 3 and sorted(r["acc"] for r in rows) == [0.21, 0.41, 0.61]
    assert wait_for(lambda: _clusters(gateway) == [], timeout=30, what="no cluster left") is not None

    # Ctrl-C mid-trial: the trial is requeued, its command stopped, the cluster shut down
    ok(run_mlci(repo, "sweep", "create", "gw-long"))
    sid = sweep_id_of(repo, "gw-long")
    coordinator = start_background(repo, "gw-long", "-j", "1")

    def running() -> bool:
        for marker in (repo / ".git" / "mlci" / "queue" / sid).glob("*.dask"):
            try:
                return bool(json.loads(marker.read_text()).get("child_pid"))
            except ValueError:
                return False
        return False

    wait_for(running, timeout=180, what="the trial running on the gateway cluster")
    assert len(_clusters(gateway) or []) == 1
    coordinator.send_signal(signal.SIGINT)
    _out, err = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 130, err
    assert "shut down" in err and "Traceback" not in err
    (row,) = status_json(repo, "gw-long")
    assert (row["state"], row["reason"]) == ("queued", "interrupted (Ctrl-C)")
    deadline = time.monotonic() + 30
    while processes_with_env("MLCI_SWEEP_ID", sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with_env("MLCI_SWEEP_ID", sid) == []
    assert wait_for(lambda: _clusters(gateway) == [], timeout=30, what="no cluster left") is not None
