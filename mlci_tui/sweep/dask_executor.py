"""The Dask executor: trials submitted to a Dask distributed cluster as subprocess tasks.

`--scheduler tcp://host:8786` uses an existing cluster; without it a LocalCluster (one
single-threaded worker process per job) is started for this run. The coordinator here
keeps the leases and the ledger: it records `started` when it submits, appends the
records each task returns, and turns a lost worker (`KilledWorker`) into a `requeued`
event and a new attempt. On a LocalCluster started here, Dask's own silent retry of a
lost task is turned off (`allowed-failures: 0`) so every loss shows in the ledger; on
an existing cluster, set `distributed.scheduler.allowed-failures` to 0 for the same.
Dask is imported only in this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo
from mlci_tui.sweep import events, policy, queue
from mlci_tui.sweep.dask_task import marker_path, run_trial_task
from mlci_tui.sweep.events import Sweep
from mlci_tui.sweep.local import POLL, Coordinator
from mlci_tui.sweep.runner import Outcome, append_outcome, remove_worktree


def _source(repo: Repo) -> dict[str, Any]:
    remote = config_mod.load(repo.root).remote
    proc = repo.run("remote", "get-url", remote, check=False)
    url = proc.stdout.decode().strip() if proc.returncode == 0 else None
    return {"repo": str(repo.root), "remote_url": url}


def _client(scheduler: str | None, jobs: int) -> tuple[Any, Any]:
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise MlciError("the dask executor needs Dask: pip install 'mlci-tui[dask]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except OSError as exc:
            raise MlciError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.worker.daemon": False}):
        cluster = LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        return Client(cluster), cluster


def run(
    repo: Repo,
    sweep_ref: str,
    jobs: int,
    scheduler: str | None,
    say: Callable[[str], None],
    state: queue.QueueState | None = None,
) -> Sweep:
    from distributed import KilledWorker

    coord = Coordinator(repo, sweep_ref, jobs, say, state)
    (queue.queue_dir(repo, coord.sweep_id) / "cancel").unlink(missing_ok=True)
    client, cluster = _client(scheduler, jobs)
    say(f"dask: {'scheduler ' + scheduler if scheduler else f'LocalCluster with {jobs} worker(s)'}")
    source = _source(repo)
    futures: dict[str, tuple[Any, Path, int]] = {}
    try:
        while True:
            for tid, (future, lease, attempt) in list(futures.items()):
                queue.heartbeat(lease)
                if future.status == "pending":
                    continue
                del futures[tid]
                _finish(repo, coord, tid, future, lease, attempt, KilledWorker)
            coord.housekeeping(set(futures))
            room = coord.jobs - len(futures)
            if room > 0:
                for job, lease in coord.claim(room, "dask"):
                    future = client.submit(
                        run_trial_task,
                        job.to_json(),
                        source,
                        pure=False,
                        key=f"mlci-trial-{job.trial_id}-{job.attempt}",
                    )
                    futures[job.trial_id] = (future, lease, job.attempt)
                    say(f"trial {job.sweep_name}-{job.number} submitted (attempt {job.attempt})")
            if coord.finished(set(futures)):
                break
            time.sleep(POLL)
    finally:
        for future, lease, _attempt in futures.values():
            future.cancel()
            queue.release(lease)
        client.close()
        if cluster is not None:
            cluster.close()
    coord.state.refresh()
    return coord.sweep


def _finish(repo: Repo, coord: Coordinator, tid: str, future: Any, lease: Path, attempt: int, killed: type) -> None:
    sweep = coord.sweep
    trial = sweep.trials[tid]
    name = f"{sweep.name}-{trial.number}"
    if future.status == "finished":
        result = future.result()
        append_outcome(repo, Outcome(result["state"], result["records"], result["message"]))
        coord.say(f"trial {name}: {result['message']} on {result['worker']}")
    else:
        exc = future.exception()
        marker_path(repo, sweep.sweep_id, tid).unlink(missing_ok=True)
        remove_worktree(repo, repo.state_dir / "worktrees" / f"{tid}-{attempt}")
        coord.state.refresh()
        trial = coord.sweep.trials[tid]
        if isinstance(exc, killed) or "Killed" in type(exc).__name__:
            recs = policy.after_loss(coord.sweep, trial, f"dask worker lost ({type(exc).__name__})")
        else:
            recs = [
                events.trial_event(
                    sweep.sweep_id, tid, "failed", reason=f"dask task error: {type(exc).__name__}: {exc}"[:500]
                )
            ]
        coord.store.append(recs)
        coord.say(
            f"trial {name}: {type(exc).__name__}: {recs[0].get('reason') if recs else 'lost'}; "
            f"{recs[0]['state'] if recs else 'nothing recorded'}"
        )
    queue.release(lease)
    coord.state.refresh()
