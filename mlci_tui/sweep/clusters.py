"""Where a Dask sweep runs: the cluster providers behind `mlci sweep start --executor dask`.

A provider opens a `Cluster` (a Dask client, how many workers it has, and how to close
it) and the executor closes it on every exit path (done, error, Ctrl-C):

- `--scheduler ADDRESS`: an existing cluster, left running; `-j` defaults to its workers.
- `cluster: {manager: dask_gateway.Gateway, kwargs: {...}, options: {...}}`: a cluster created
  for the sweep through a Dask Gateway (`Gateway(**kwargs).new_cluster(**options)`), scaled
  to `-j` workers and shut down at the end.
- `cluster: {manager: <import path>, kwargs: {...}, adapt: {...}}`: any Dask cluster manager
  class (dask_cloudprovider's EC2Cluster/GCPCluster/AzureVMCluster, dask_kubernetes'
  KubeCluster, coiled.Cluster, distributed.LocalCluster), created as `Manager(**kwargs)`,
  scaled to `-j` (`.scale(n)`, or `.adapt(**adapt)` when configured) and closed at the end.
- neither: a LocalCluster started here, one single-threaded worker process per job.

Credentials come from the environment only (the managers' own settings, cloud SDK
credentials, DASK_GATEWAY__*). A manager whose package is missing is one line naming the
extra to install (EXTRAS). Dask is imported only inside these functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlci_tui.errors import InputError, MlciError

GATEWAY = ("dask_gateway.Gateway", "dask_gateway")
EXTRAS = {  # module prefix -> the mlci-tui extra that installs it (pyproject.toml)
    "dask_cloudprovider.aws": "cloud-aws",
    "dask_cloudprovider.gcp": "cloud-gcp",
    "dask_cloudprovider.azure": "cloud-azure",
    "dask_cloudprovider": "cloud-aws",
    "dask_kubernetes": "kubernetes",
    "coiled": "coiled",
    "dask_gateway": "gateway",
    "distributed": "dask",
    "dask": "dask",
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
            return gateway(cluster.get("kwargs") or {}, cluster.get("options") or {}, jobs, say, cluster.get("adapt"))
        return managed(manager, cluster.get("kwargs") or {}, cluster.get("adapt"), jobs, say)
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


def gateway(
    kwargs: dict[str, Any],
    options: dict[str, Any],
    jobs: int,
    say: Callable[[str], None],
    adapt: dict[str, Any] | None = None,
) -> Cluster:
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
    bounds = {"minimum": 0, "maximum": jobs, **adapt} if adapt is not None else None
    scaling = f"adaptive {bounds['minimum']}..{bounds['maximum']}" if bounds else f"scaling to {jobs}"
    say(f"dask gateway: created cluster {created.name}, {scaling} worker(s)")

    def close() -> None:
        try:
            client.close()
        finally:
            _shut(created, gw)
            say(f"dask gateway: cluster {created.name} shut down")

    try:
        if bounds is not None:
            created.adapt(**bounds)
        else:
            created.scale(jobs)
        client = created.get_client(set_as_default=False)
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except BaseException:
        _shut(created, gw)
        raise
    return Cluster(client, f"gateway cluster {created.name}", close)


def extra_for(module: str) -> str | None:
    """The mlci-tui extra that installs `module` (the longest known prefix), or None."""
    for prefix in sorted(EXTRAS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return EXTRAS[prefix]
    return None


def import_manager(path: str) -> Any:
    """The class named by `cluster.manager` ("package.module.Class"); a missing package is one line
    naming the extra that installs it."""
    module, _, name = path.rpartition(".")
    if not module or not name:
        raise InputError(f"cluster.manager {path!r}: give the import path of a Dask cluster manager (module.Class)")
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        extra = extra_for(module)
        hint = f"pip install 'mlci-tui[{extra}]'" if extra else f"install the package that provides {module}"
        raise MlciError(f"cluster.manager {path}: {module} is not installed ({exc.name or module}): {hint}") from None
    manager = getattr(found, name, None)
    if not callable(manager):
        raise InputError(f"cluster.manager {path}: {module} has no cluster manager {name!r}")
    return manager


def managed(
    path: str, kwargs: dict[str, Any], adapt: dict[str, Any] | None, jobs: int, say: Callable[[str], None]
) -> Cluster:
    """A cluster created for this sweep by the manager class at `path`, scaled to `jobs` workers
    (or adaptive between `adapt`'s bounds), closed by `close` (also when scaling fails or Ctrl-C
    comes while it waits for its first worker)."""
    import dask

    distributed = _dask()
    manager = import_manager(path)
    # a lost worker's task is not retried silently by a scheduler started here: the loss is in the ledger
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.worker.daemon": False}):
        try:
            created = manager(**kwargs)
        except TypeError as exc:
            raise InputError(f"cluster.kwargs for {path}: {exc}") from None
        except Exception as exc:  # cloud SDKs raise auth, quota and API errors of many types
            raise MlciError(f"cluster.manager {path} could not create a cluster: {type(exc).__name__}: {exc}") from None
    label = f"{path.rpartition('.')[2]} {getattr(created, 'name', '') or ''}".strip()
    client: Any = None

    def close() -> None:
        try:
            if client is not None:
                client.close()
        finally:
            created.close()
            say(f"cluster: {label} closed")

    try:
        if adapt is not None:
            bounds = {"minimum": 0, "maximum": jobs, **adapt}
            created.adapt(**bounds)
            say(f"cluster: created {label}, adaptive {bounds['minimum']}..{bounds['maximum']} worker(s)")
        else:
            created.scale(jobs)
            say(f"cluster: created {label}, scaling to {jobs} worker(s)")
        client = distributed.Client(created)
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except BaseException:
        close()
        raise
    return Cluster(client, f"cluster {label}", close)


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
