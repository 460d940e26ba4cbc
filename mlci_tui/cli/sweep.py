"""`mlci sweep ...`: hyperparameter sweeps queued in the ledger; the work is in sweep/operations.py.

`work` is a typed command function: its handler only reads the arguments, and the CI
sweep-trial step (ci/steps.py) calls it directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlci_tui import output
from mlci_tui.cli.console import notice, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options, command_group
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    from mlci_tui.sweep import queue
    from mlci_tui.sweep.events import Sweep

BAR_EVERY = 0.25  # seconds between two updates of a sweep's progress bar


def _progress(text: str) -> None:
    """What a running sweep or trial says as it goes: stderr, unprefixed, at once."""
    print(display(text), file=sys.stderr, flush=True)


def create(args: argparse.Namespace) -> int:
    """queue the trials of sweeps.NAME (mlci.yaml, or --file) against HEAD

    Example: mlci sweep create lr-search
    """
    from mlci_tui.sweep.operations import create_sweep

    sweep, count = create_sweep(Repo.find(), args.name, file=args.file, workspace=args.workspace)
    spec = sweep.spec
    say(
        f"sweep {display(sweep.name)} ({sweep.sweep_id[:8]}): {count} trial(s) queued, method {spec['method']}"
        f"{'' if spec['method'] == 'grid' else f', seed {sweep.seed}'}, base {sweep.base[:10]}"
        f"{' (workspace snapshot)' if sweep.base_kind == 'workspace' else ''}"
    )
    say(f"run them with: mlci sweep start {display(sweep.name)}")
    return 0


def start(args: argparse.Namespace) -> int:
    """run the queued trials of a sweep until none is left

    Example: mlci sweep start lr-search -j 4    |    mlci sweep start lr-search --executor dask --scheduler tcp://h:8786
    """
    from mlci_tui.sweep import operations, queue

    repo = Repo.find()
    state = queue.QueueState(repo)
    sweep = state.find(args.name)
    executor = operations.executor_of(sweep, args.executor)
    jobs = operations.jobs_of(sweep, args.jobs, executor, args.scheduler)
    if executor == "ci":
        from mlci_tui.ci.dispatch import dispatch_sweep

        return dispatch_sweep(repo.root, sweep.name, jobs=args.jobs)
    began = time.monotonic()
    with _bar(state, sweep.sweep_id) as lines:
        final = operations.run_sweep(
            repo, state, sweep, executor=executor, jobs=jobs, scheduler=args.scheduler, progress=lines
        )
    return _summary(final, time.monotonic() - began)


@contextmanager
def _bar(state: queue.QueueState, sweep_id: str) -> Iterator[Callable[[str], None]]:
    """On a terminal, a bar under the sweep's lines: trials finished of all, and how many are done,
    failed and running, read from the queue state the coordinator keeps current. Yields where the
    lines go (above the bar; on a pipe, plain lines on stderr and no bar)."""
    from mlci_tui import progress

    sweep = state.sweeps[sweep_id]
    bar = progress.state_bar(f"sweep {display(sweep.name)}", len(sweep.trials))
    if bar is None:
        yield _progress
        return
    stop = threading.Event()

    def show() -> None:
        counts = state.sweeps[sweep_id].counts()
        ended = sum(counts[s] for s in ("done", "failed", "cancelled", "pruned"))
        detail = f"{counts['done']} done, {counts['failed']} failed, {counts['running']} running"
        bar.set(ended, sum(counts.values()), detail)

    def follow() -> None:
        while not stop.wait(BAR_EVERY):
            show()

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    try:
        yield lambda text: bar.print(display(text))
    finally:
        stop.set()
        watcher.join()
        show()
        bar.close()


def _summary(sweep: Sweep, seconds: float) -> int:
    from mlci_tui.sweep.operations import params_text

    counts = sweep.counts()
    line = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    say(f"sweep {display(sweep.name)}: {line} in {seconds:.1f} s")
    best = sweep.best()
    metric = sweep.spec.get("metric")
    if best is not None and metric:
        say(
            f"best: {display(sweep.name)}-{best.number} {display(metric)}={output.cell_text(best.value)} "
            f"{display(params_text(best.params))} (run {best.run_id[:8] if best.run_id else '-'})"
        )
    return 1 if counts.get("failed") else 0


def status(args: argparse.Namespace) -> int:
    """sweeps and their progress, or the trials of one sweep

    Example: mlci sweep status lr-search
    """
    from mlci_tui.sweep import operations, queue

    state = queue.QueueState(Repo.find())
    if not args.name:
        rows = operations.sweep_rows(state.sweeps)
        if args.format == "table":
            cols = ["name", "method", "progress", "queued", "running", "failed", "pruned", "metric", "best", "created"]
            if not any(row.get("pruned") for row in rows):  # no pruner anywhere: the list fits 80 columns
                cols.remove("pruned")
            if not rows:
                say("no sweeps yet: define one under sweeps: in mlci.yaml and run `mlci sweep create NAME`")
                return 0
            from datetime import datetime

            for row in rows:  # a time prints in a table as every table prints one (output.cell_text)
                row["created"] = datetime.fromisoformat(str(row["created"]).replace("Z", "+00:00"))
        else:
            cols = list(rows[0]) if rows else ["name"]
        output.write(rows, cols, args.format, sys.stdout)
        return 0
    sweep = state.find(args.name)
    waiting = operations.stalled(state.repo, sweep)
    rows = operations.trial_rows(sweep, waiting)
    metric = sweep.spec.get("metric") or "value"
    cols = ["trial", "state", "attempts", "retries", *sweep.spec["params"], metric]
    if args.format != "table":
        cols += ["trial_id", "run_id", "exit_code", "reason"]
    else:
        cols.append("reason")
    if args.format == "table":
        counts = sweep.counts()
        say(
            f"sweep {display(sweep.name)} ({sweep.sweep_id[:8]}) base {sweep.base[:10]}: "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        )
        if waiting.get(""):
            say(f"dispatch stopped: {display(waiting[''])}")
        stuck = [r for r in rows if r["state"] == "running" and r["trial_id"] in waiting]
        for row in stuck:
            say(f"stalled: {display(row['trial'])} {display(waiting[row['trial_id']])}")
    output.write(rows, cols, args.format, sys.stdout)
    return 0


def best(args: argparse.Namespace) -> int:
    """the best trial of a sweep by its metric

    Example: mlci sweep best lr-search
    """
    from mlci_tui.sweep import operations, queue

    row = operations.best_row(queue.QueueState(Repo.find()).find(args.name))
    if args.format == "table":
        for key, value in row.items():
            say(f"{display(key)}: {display(output.cell_text(value))}")
        return 0
    output.write([row], list(row), args.format, sys.stdout)
    return 0


def logs(args: argparse.Namespace) -> int:
    """the log of a trial (its full log where it ran, else the stderr tail in the ledger)

    Example: mlci sweep logs lr-search-3 -f
    """
    from mlci_tui.sweep import operations, queue

    repo = Repo.find()
    state = queue.QueueState(repo)
    sweep, trial = queue.find_trial(state.sweeps, args.trial)
    path = operations.local_log(repo, trial)
    if path is None:
        notice(
            f"the full log of {sweep.name}-{trial.number} is on the machine that ran it "
            f"({trial.worker or 'not started'}); last stderr recorded in the ledger:"
        )
        say(trial.stderr_tail or "")
        return 0
    for text in operations.log_chunks(repo, state, sweep, trial, path, follow=args.follow):
        sys.stdout.write(display(text, multiline=True))
        sys.stdout.flush()
    return 0


def cancel(args: argparse.Namespace) -> int:
    """cancel the queued trials of a sweep and stop its running ones (local and Dask)

    Example: mlci sweep cancel lr-search
    """
    from mlci_tui.sweep.operations import cancel_sweep

    sweep, count = cancel_sweep(Repo.find(), args.name)
    running = sweep.counts()["running"]
    say(
        f"sweep {display(sweep.name)}: {count} queued trial(s) cancelled"
        + (f"; {running} running trial(s) told to stop" if running else "")
    )
    return 0


def retry(args: argparse.Namespace) -> int:
    """queue the failed and cancelled trials of a sweep again

    Example: mlci sweep retry lr-search
    """
    from mlci_tui.sweep.operations import retry_sweep

    sweep, count = retry_sweep(Repo.find(), args.name, running=args.running)
    say(f"sweep {display(sweep.name)}: {count} trial(s) queued again; run `mlci sweep start {display(sweep.name)}`")
    return 0


def collect(args: argparse.Namespace) -> int:
    """fold the trial jobs' results (refs/mlci/incoming/) into the ledger; tpe: queue the next wave

    Example: mlci sweep collect lr-search
    """
    return collect_sweep(Repo.find(), args.name, remote=args.remote, wave=args.wave)[0]


def collect_sweep(repo: Repo, name: str, *, remote: str | None = None, wave: int | None = None) -> tuple[int, int]:
    """`mlci sweep collect NAME`: (exit code, trials queued for the next wave); the CI sweep-collect step calls it."""
    from mlci_tui import config as config_mod
    from mlci_tui.sweep.operations import collect_sweep as collect_op

    remote = remote or config_mod.load(repo.root).remote
    got = collect_op(repo, name, remote=remote, wave=wave)
    for line in got.refused:
        notice(f"refused: {line}")
    counts = got.sweep.counts()
    say(
        f"sweep {display(got.sweep.name)}: {got.merged} trial result(s) collected; "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + (f"; next wave: {got.queued} trial(s) queued" if got.queued else "")
    )
    return (1 if got.refused else 0), got.queued


def matrix(args: argparse.Namespace) -> int:
    """print the queued trials as a CI matrix (JSON: {include: [{trial, name}]})

    Example: mlci sweep matrix lr-search
    """
    from mlci_tui.sweep.operations import queued_matrix

    include = queued_matrix(Repo.find(), args.name, limit=args.limit)
    print(json.dumps({"include": include}, ensure_ascii=True, separators=(",", ":")))
    return 0


def work_handler(args: argparse.Namespace) -> int:
    """run one trial here (a CI job) and push its result to the ledger remote

    Example: mlci sweep work --trial 3kq2v5xw
    """
    return work(Repo.find(), args.trial, remote=args.remote, push=not args.no_push)


def work(repo: Repo, trial: str, *, remote: str | None = None, push: bool = True) -> int:
    """`mlci sweep work --trial TRIAL`: run one trial here and, with `push`, share its result through
    `remote` (None: ledger.remote); 1 when the trial ran and did not finish done."""
    from mlci_tui import config as config_mod
    from mlci_tui.sweep.operations import work_trial

    remote = remote or config_mod.load(repo.root).remote
    result = work_trial(repo, trial, remote=remote if push else None, progress=_progress)
    if result.ran:
        return 0 if result.state == "done" else 1
    if result.state == "done":
        say(f"trial {display(result.label)} is already done (run {result.trial.run_id}); nothing to do")
    else:
        say(f"trial {display(result.label)} was cancelled; nothing to do")
    return 0


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    group = command_group(
        sub, "sweep", "hyperparameter sweeps: queue trials in the ledger, run them here, on Dask or CI"
    )

    p = add_command(group, "create", create)
    p.add_argument("name", help="the sweep's name (a key under sweeps: in mlci.yaml)")
    p.add_argument("--file", help="read the sweep from this YAML file instead of mlci.yaml")
    p.add_argument(
        "--workspace", action="store_true", help="run against the working tree (stored as a snapshot commit)"
    )

    p = add_command(group, "start", start)
    p.add_argument("name", help="sweep name or id prefix")
    p.add_argument("--executor", choices=("local", "dask", "ci"), help="default: the sweep's executor (local)")
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        help="trials at a time (default: the Dask cluster's workers with --scheduler, else the sweep's parallel)",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler (default: a LocalCluster started here)")

    p = add_command(group, "status", status)
    p.add_argument("name", nargs="?", help="sweep name or id prefix (default: list every sweep)")
    add_format_options(p)

    p = add_command(group, "logs", logs)
    p.add_argument("trial", help="trial id prefix, or SWEEP-NUMBER")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing while the trial runs")

    p = add_command(group, "cancel", cancel)
    p.add_argument("name", help="sweep name or id prefix")

    p = add_command(group, "retry", retry)
    p.add_argument("name", help="sweep name or id prefix")
    p.add_argument(
        "--running", action="store_true", help="also trials recorded running with no local worker (lost CI jobs)"
    )

    p = add_command(group, "best", best)
    p.add_argument("name", help="sweep name or id prefix")
    add_format_options(p)

    p = add_command(group, "collect", collect)
    p.add_argument("name", help="sweep name or id prefix")
    p.add_argument("-r", "--remote", help="ledger remote (default ledger.remote)")
    p.add_argument("--wave", type=int, help="tpe: trials in the next wave (default the sweep's parallel)")

    p = add_command(group, "matrix", matrix)
    p.add_argument("name", help="sweep name or id prefix")
    p.add_argument("--limit", type=int, default=256, help="at most N trials (default 256, GitHub's matrix limit)")

    p = add_command(group, "work", work_handler)
    p.add_argument("--trial", required=True, help="trial id (or prefix, or SWEEP-NUMBER)")
    p.add_argument("-r", "--remote", help="ledger remote to pull from and push to (default ledger.remote)")
    p.add_argument("--no-push", action="store_true", help="record in the local ledger only")
