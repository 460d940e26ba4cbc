"""Where a Dask sweep runs: the cluster providers behind `mlci sweep start --executor dask`.

A provider opens a `Cluster` (a Dask client, how many workers it has, and how to close
it) and the executor closes it on every exit path (done, error, Ctrl-C):

- `--scheduler ADDRESS`: an existing cluster, left running; `-j` defaults to its workers.
- `cluster: {manager: dask_gateway.Gateway, kwargs: {...}, options: {...}}`: a cluster created
  for the sweep through a Dask Gateway (`Gateway(**kwargs).new_cluster(**options)`), scaled
  to `-j` workers and shut down at the end. Credentials come from the environment only
  (the gateway's own DASK_GATEWAY__* settings, Kerberos, JupyterHub tokens).
- neither: a LocalCluster started here, one single-threaded worker process per job.

The cloud managers (dask_cloudprovider's EC2Cluster, GCPCluster, AzureVMCluster,
dask_kubernetes' KubeCluster, Coiled) are named in UNFINISHED: they cannot be exercised
from here, so mlci refuses them with exit 2 instead of offering an untested path
(docs/sweeps.md#clusters). Dask is imported only inside these functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlci_tui.errors import InputError, MlciError

GATEWAY = ("dask_gateway.Gateway", "dask_gateway")
UNFINISHED = {
    "dask_cloudprovider.aws.EC2Cluster": "AWS EC2",
    "dask_cloudprovider.gcp.GCPCluster": "Google Cloud",
    "dask_cloudprovider.azure.AzureVMCluster": "Azure",
    "dask_kubernetes.operator.KubeCluster": "Kubernetes",
    "coiled.Cluster": "Coiled",
}
WORKERS_TIMEOUT = 120.0  # seconds to wait for a created cluster's first worker


@dataclass
class Cluster:
    client: Any
    label: str
    close: Callable[[], None]

    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))


def _dask() -> Any:
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise MlciError("the dask executor needs Dask: pip install 'mlci-tui[dask]'") from None


def open_cluster(
    scheduler: str | None, cluster: dict[str, Any] | None, jobs: int, say: Callable[[str], None]
) -> Cluster:
    """The cluster a sweep runs on: an address, a manager from `cluster:`, else a LocalCluster."""
    if scheduler:
        return existing(scheduler)
    if cluster:
        manager = str(cluster.get("manager") or "")
        if manager in GATEWAY:
            return gateway(cluster.get("kwargs") or {}, cluster.get("options") or {}, jobs, say)
        if manager in UNFINISHED:
            raise InputError(
                f"cluster.manager {manager}: mlci cannot create {UNFINISHED[manager]} clusters yet (untested here); "
                "start the cluster yourself and pass --scheduler ADDRESS, or use a Dask Gateway "
                "(manager: dask_gateway.Gateway); see docs/sweeps.md#clusters"
            )
        raise InputError(
            f"cluster.manager {manager!r}: not a known cluster manager (known: dask_gateway.Gateway; "
            f"not yet: {', '.join(UNFINISHED)})"
        )
    return local(jobs)


def existing(address: str) -> Cluster:
    distributed = _dask()
    try:
        client = distributed.Client(address, timeout="10s")
    except OSError as exc:
        raise MlciError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    return Cluster(client, f"scheduler {address}", client.close)


def local(jobs: int) -> Cluster:
    import dask

    distributed = _dask()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.worker.daemon": False}):
        cluster = distributed.LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        client = distributed.Client(cluster)

    def close() -> None:
        client.close()
        cluster.close()

    return Cluster(client, f"LocalCluster with {jobs} worker(s)", close)


def gateway(kwargs: dict[str, Any], options: dict[str, Any], jobs: int, say: Callable[[str], None]) -> Cluster:
    """A cluster created through a Dask Gateway for this sweep, scaled to `jobs`, shut down by `close`."""
    _dask()
    try:
        from dask_gateway import Gateway
    except ImportError:
        raise MlciError("cluster.manager dask_gateway.Gateway needs dask-gateway: pip install dask-gateway") from None
    try:
        gw = Gateway(**kwargs)
    except TypeError as exc:
        raise InputError(f"cluster.kwargs: {exc}") from None
    try:
        created = gw.new_cluster(**options)
    except Exception as exc:  # the gateway's errors are HTTP, auth and option errors of many types
        _quiet(gw)
        raise MlciError(f"the Dask Gateway could not create a cluster: {type(exc).__name__}: {exc}") from None
    say(f"dask gateway: created cluster {created.name}, scaling to {jobs} worker(s)")

    def close() -> None:
        try:
            client.close()
        finally:
            _shut(created, gw)
            say(f"dask gateway: cluster {created.name} shut down")

    try:
        created.scale(jobs)
        client = created.get_client(set_as_default=False)
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except BaseException:
        _shut(created, gw)
        raise
    return Cluster(client, f"gateway cluster {created.name}", close)


def _shut(created: Any, gw: Any) -> None:
    """Shut the gateway cluster down, then close both gateway clients (the cluster holds its own)."""
    try:
        created.shutdown()
    finally:
        _quiet(created.gateway)
        _quiet(gw)


def _quiet(gw: Any) -> None:
    """Close a dask_gateway.Gateway once: its __del__ would close it again at exit, on a stopped loop,
    and print a traceback (dask-gateway 2026.3); without its loop runner, __del__ does nothing."""
    try:
        gw.close()
    except RuntimeError:
        pass
    gw.__dict__.pop("_loop_runner", None)
