"""The Dask executor: trials submitted to a Dask distributed cluster as subprocess tasks.

The cluster comes from `clusters.py`: `--scheduler tcp://host:8786` (an existing cluster),
`cluster:` in the sweep (a Dask Gateway cluster created for the run), else a LocalCluster
(one single-threaded worker process per job) started for this run. The coordinator here
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
from mlci_tui.gitio import Repo
from mlci_tui.sweep import events, policy, queue, share
from mlci_tui.sweep.clusters import open_cluster
from mlci_tui.sweep.dask_task import marker_path, run_trial_task
from mlci_tui.sweep.events import Sweep
from mlci_tui.sweep.local import POLL, Coordinator
from mlci_tui.sweep.runner import Outcome, append_outcome, remove_worktree

STOP_WAIT = 10.0  # seconds Ctrl-C waits for running tasks to stop their commands


def _source(repo: Repo) -> dict[str, Any]:
    remote = config_mod.load(repo.root).remote
    proc = repo.run("remote", "get-url", remote, check=False)
    url = proc.stdout.decode().strip() if proc.returncode == 0 else None
    return {"repo": str(repo.root), "remote_url": url}


def _resources(spec: dict[str, Any]) -> dict[str, float] | None:
    """`resources:` as Dask worker resources: GPU (count) and MEMORY (bytes); workers declare them
    (`dask worker --resources "GPU=1,MEMORY=16e9"`), and a trial waits for a worker that has them."""
    wanted = spec.get("resources") or {}
    out: dict[str, float] = {}
    if wanted.get("gpus"):
        out["GPU"] = float(wanted["gpus"])
    if wanted.get("memory"):
        from dask.utils import parse_bytes

        out["MEMORY"] = float(parse_bytes(str(wanted["memory"]).replace(" ", "")))
    return out or None


def stop_event_name(sweep_id: str) -> str:
    """The Dask Event a coordinator sets to stop its sweep's running tasks (cancel, Ctrl-C)."""
    return f"mlci-stop-{sweep_id}"


def run(
    repo: Repo,
    sweep_ref: str,
    jobs: int | None,
    scheduler: str | None,
    say: Callable[[str], None],
    state: queue.QueueState | None = None,
) -> Sweep:
    """Run the sweep's queued trials on a Dask cluster; `jobs` None: as many as the cluster has workers.

    A cancel (`mlci sweep cancel`, the flag file) or Ctrl-C sets a Dask Event that running
    tasks poll: each stops its command's process group. Ctrl-C then requeues them; the
    cluster mlci created is closed on every exit path.
    """
    from distributed import Event, KilledWorker

    coord = Coordinator(repo, sweep_ref, jobs or 1, say, state)
    flag = queue.queue_dir(repo, coord.sweep_id) / "cancel"
    flag.unlink(missing_ok=True)
    spec = coord.sweep.spec
    wanted = jobs or int(spec.get("parallel") or 1)
    cluster = open_cluster(scheduler or spec.get("scheduler"), spec.get("cluster"), wanted, say)
    futures: dict[str, tuple[Any, Path, int]] = {}
    try:
        coord.jobs = jobs or (cluster.workers() if scheduler or spec.get("scheduler") else wanted) or 1
        say(f"dask: {cluster.label}, {coord.jobs} trial(s) at a time")
        coord.recover()
        sharing = share.Sharing.of(repo, coord.sweep, say)
        source = _source(repo)
        stop = Event(stop_event_name(coord.sweep_id), client=cluster.client)
        stop.clear()
        resources = _resources(spec)
        while True:
            if flag.exists() and futures and not stop.is_set():
                stop.set()
                say("cancel: telling the running trials to stop")
            for tid, (future, lease, attempt) in list(futures.items()):
                queue.heartbeat(lease)
                if future.status == "pending":
                    continue
                del futures[tid]
                _finish(repo, coord, tid, future, lease, attempt, KilledWorker)
            coord.housekeeping(set(futures))
            room = coord.jobs - len(futures)
            if room > 0 and not flag.exists():
                for job, lease in coord.claim(room, "dask"):
                    future = cluster.client.submit(
                        run_trial_task,
                        job.to_json(),
                        source,
                        pure=False,
                        key=f"mlci-trial-{job.trial_id}-{job.attempt}",
                        resources=resources,
                    )
                    futures[job.trial_id] = (future, lease, job.attempt)
                    say(f"trial {job.sweep_name}-{job.number} submitted (attempt {job.attempt})")
            sharing.maybe_push()
            if coord.finished(set(futures)):
                break
            time.sleep(POLL)
        sharing.push(final=True)
    except KeyboardInterrupt:
        _interrupted(repo, coord, cluster, futures)
        raise
    finally:
        for future, lease, _attempt in futures.values():
            future.cancel()
            queue.release(lease)
        cluster.close()
    coord.state.refresh()
    return coord.sweep


def _interrupted(repo: Repo, coord: Coordinator, cluster: Any, futures: dict[str, tuple[Any, Path, int]]) -> None:
    """Ctrl-C: stop the running tasks' commands (the Event), wait briefly, requeue what did not finish."""
    from distributed import Event, wait

    try:
        Event(stop_event_name(coord.sweep_id), client=cluster.client).set()
        wait([f for f, _l, _a in futures.values()], timeout=STOP_WAIT)
    except Exception:  # the cluster may be going away too; the requeue below still happens
        pass
    for tid, (future, lease, attempt) in list(futures.items()):
        if future.status == "finished":
            result = future.result()
            if result["state"] == "done":
                append_outcome(repo, Outcome(result["state"], result["records"], result["message"]))
                del futures[tid]
                queue.release(lease)
                continue
        remove_worktree(repo, repo.state_dir / "worktrees" / f"{tid}-{attempt}")
    coord.interrupt(list(futures))


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
            lost = f"dask worker lost ({type(exc).__name__})"
            recs = policy.after_loss(coord.sweep, trial, lost, policy.lost_checkpoint(repo, trial))
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
