"""`mlci bisect METRIC`: where a metric changed along history; the work is in bisect/."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from mlci_tui import output
from mlci_tui.cli.console import notice, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    from mlci_tui.bisect.changes import Found
    from mlci_tui.bisect.session import Options, Outcome, Probe, Train
    from mlci_tui.sweep.events import Sweep
    from mlci_tui.sweep.queue import QueueState

CI_POLL = 30.0  # seconds between two pulls of the ledger while CI trains a probe


def _progress(text: str) -> None:
    print(display(text), file=sys.stderr, flush=True)


def bisect(args: argparse.Namespace) -> int:
    """find the commit that moved METRIC: change points from the ledger, or train what the search needs

    Example: mlci bisect acc    |    mlci bisect acc --bad-if "acc < 0.9"    |    mlci bisect acc --good v1.2 --bad HEAD
    """
    repo = Repo.find()
    if args.resume:
        from mlci_tui.bisect.session import load_options

        return _train_search(repo, load_options(repo), args.format, args.jobs)
    if not args.metric:
        raise InputError("name the metric to bisect (mlci bisect METRIC), or --resume")
    if args.range and (args.good or args.bad):
        raise InputError("--range and --good/--bad both name the range: give one of them")
    if args.good or args.bad or args.bad_if:
        return _train_search(repo, _options(repo, args, args.good, args.bad), args.format, args.jobs)
    found = _ledger_changes(repo, args)
    if not args.train:
        return 0
    worse = [row for row in found.rows if row["regression"] is not False]
    if not worse:
        say("nothing to narrow: no change point for the worse")
        return 0
    top = worse[0]
    if not top["untested"]:
        return 0
    say(
        f"training the {top['untested']} untested commit(s) between {top['before'][:10]} and {top['after'][:10]} as needed"
    )
    return _train_search(repo, _options(repo, args, top["before"], top["after"]), args.format, args.jobs)


def _direction(repo: Repo, args: argparse.Namespace) -> str | None:
    from mlci_tui import config as config_mod

    if args.direction:
        return str(args.direction)
    cfg = config_mod.load(repo.root)
    rule = cfg.section("gate")["rules"].get(args.metric) or {}
    return rule.get("direction") or cfg.direction(args.metric)


def _options(repo: Repo, args: argparse.Namespace, good: str | None, bad: str | None) -> Options:
    from mlci_tui import config as config_mod
    from mlci_tui.bisect.session import Options

    cfg = config_mod.load(repo.root)
    count, seed_param, seed_env = cfg.repeat_settings()
    repeats = args.repeats or count
    if repeats < 1:
        raise InputError(f"--repeats {repeats}: train each probe once or more")
    if repeats > 1 and not (seed_param or seed_env):
        notice("--repeats without train.repeats.seed_param or seed_env: repeats differ only by MLCI_TRIAL_NUMBER")
    return Options(
        metric=args.metric,
        rev=args.rev,
        range=args.range,
        good=good,
        bad=bad,
        bad_if=args.bad_if,
        repeats=repeats,
        seed_param=seed_param,
        seed_env=seed_env,
        executor=args.executor,
        scheduler=args.scheduler,
        confidence=_confidence(cfg, args),
    )


def _confidence(cfg: Any, args: argparse.Namespace) -> float:
    """--confidence, else the metric's gate rule's `confidence`, else 0.95."""
    from mlci_tui.bisect.verdict import DEFAULT_CONFIDENCE

    if args.confidence is not None:
        if not 0 < args.confidence < 1:
            raise InputError(f"--confidence {args.confidence}: a level between 0 and 1, e.g. 0.95")
        return float(args.confidence)
    rule = cfg.section("gate")["rules"].get(args.metric) or {}
    return float(rule.get("confidence") or DEFAULT_CONFIDENCE)


# ------------------------------------------------------------------ from the ledger
LEDGER_COLUMNS = ["rank", "before", "after", "before_value", "after_value", "step", "step_pct", "confidence"]


def _ledger_changes(repo: Repo, args: argparse.Namespace) -> Found:
    from mlci_tui.bisect.changes import find_changes

    found = find_changes(
        repo,
        args.metric,
        rev=args.rev,
        range_=args.range,
        direction=_direction(repo, args),
        min_confidence=args.min_confidence,
    )
    columns = [*LEDGER_COLUMNS, "regression", "untested", "params", "datasets", "files"]
    if args.format == "json":
        output.write(found.rows, columns, "json", sys.stdout)
        return found
    if args.format in ("table", "md"):
        say(
            f"{display(args.metric)}: {found.with_values} of {found.commits} commit(s) have a value; "
            f"{len(found.rows)} change point(s)"
        )
    rows = [_flat(row) for row in found.rows]
    if rows:
        output.write(rows, [*LEDGER_COLUMNS, "regression", "untested", "changed"], args.format, sys.stdout)
    return found


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    changed = []
    if row["params"]:
        changed.append("params " + ", ".join(row["params"]))
    if row["datasets"]:
        changed.append("data " + ", ".join(row["datasets"]))
    if row["files"]:
        changed.append(row["files"][-1])
    regression = row["regression"]
    return {
        **row,
        "before": row["before"][:10],
        "after": row["after"][:10],
        "regression": "" if regression is None else ("yes" if regression else "no"),
        "changed": "; ".join(changed),
    }


# ------------------------------------------------------------------ training
def _train_search(repo: Repo, options: Options, fmt: str, jobs: int | None) -> int:
    from mlci_tui.bisect.session import Bisect

    began = time.monotonic()
    outcome = Bisect(repo, options, _executor(repo, options, jobs), _progress).run()
    _print_outcome(repo, outcome, fmt, time.monotonic() - began)
    return 0


def _executor(repo: Repo, options: Options, jobs: int | None) -> Train:
    from mlci_tui.sweep import operations

    if options.executor == "ci":
        return lambda state, sweep: _ci_train(repo, state, sweep)

    def train(state: QueueState, sweep: Sweep) -> None:
        operations.run_sweep(
            repo,
            state,
            sweep,
            executor=options.executor,
            jobs=jobs or options.repeats,
            scheduler=options.scheduler,
            progress=_progress,
        )

    return train


def _ci_train(repo: Repo, state: QueueState, sweep: Sweep) -> None:
    """Dispatch the probe's sweep to CI (the generated sweep workflow) and pull the ledger until it is trained."""
    from mlci_tui import config as config_mod
    from mlci_tui.ci.dispatch import dispatch
    from mlci_tui.ledger import sync

    remote = config_mod.load(repo.root).remote
    _progress(dispatch(repo.root, sweep.name))
    while True:
        state.refresh()
        if not any(t.state in ("queued", "running") for t in state.sweeps[sweep.sweep_id].trials.values()):
            return
        time.sleep(CI_POLL)
        sync.pull(repo, remote)


def _print_outcome(repo: Repo, outcome: Outcome, fmt: str, seconds: float) -> None:
    from mlci_tui.gitio import commit_info

    found = outcome.result
    body = {
        "culprit": found.culprit,
        "candidates": found.candidates,
        "good": found.good,
        "skipped": found.skipped,
        "trainings": outcome.trainings,
        "commits": len(outcome.path),
        "rule": outcome.threshold,
        "probes": [p.__dict__ for p in outcome.probes],
    }
    if fmt == "json":
        import json

        print(json.dumps(body, ensure_ascii=True, indent=1))
        return
    if found.culprit:
        info = commit_info(repo, found.culprit)
        say(f"first bad commit: {found.culprit} {display(info.message.splitlines()[0] if info.message else '')}")
    else:
        say(f"the first bad commit is one of {len(found.candidates)} (skipped commits in the way):")
        for sha in found.candidates:
            say(f"  {sha}")
    say(f"last good commit: {found.good}")
    skipped = f"; skipped (failed to train): {', '.join(s[:10] for s in found.skipped)}" if found.skipped else ""
    say(
        f"{outcome.trainings} training(s) over {len(outcome.path)} commit(s) in {seconds:.1f} s "
        f"({display(outcome.threshold)}){skipped}"
    )
    rows = [_probe_row(p) for p in outcome.probes]
    if rows:
        output.write(rows, ["commit", "verdict", "value", "test", "interval", "trained"], fmt, sys.stdout)
    for p in outcome.probes:
        if p.unused:  # why its n is below the repeats asked for
            say(f"{p.commit[:10]}: {len(p.unused)} repeat(s) gave no value: {display('; '.join(p.unused))}")


def _probe_row(p: Probe) -> dict[str, Any]:
    """A judged commit as a row: its values as `mean ± sd (n)`, the test and the one-sided interval."""
    from mlci_tui.ledger.query.groups import spread

    test = p.test or {}
    value: Any = output.Spread(*spread(p.values)) if len(p.values) > 1 else (p.values[0] if p.values else None)
    return {
        "commit": p.commit[:10],
        "verdict": p.verdict,
        "value": value,
        "test": test.get("label", ""),
        "interval": test.get("interval", ""),
        "trained": p.trained,
    }


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "bisect", bisect)
    p.add_argument("metric", nargs="?", help="the metric (plain name or file:name)")
    p.add_argument("--rev", default="HEAD", help="the history to search: first parents of REV (default HEAD)")
    p.add_argument("--range", metavar="A..B", help="only this range of first-parent history")
    p.add_argument("--good", metavar="REV", help="a commit known good (trains what the search needs)")
    p.add_argument("--bad", metavar="REV", help="a commit known bad (default: --rev)")
    p.add_argument("--bad-if", metavar="EXPR", help='the verdict as a threshold, e.g. "acc < 0.9"')
    p.add_argument(
        "--train", action="store_true", help="narrow the worst change point by training its untested commits"
    )
    p.add_argument(
        "--repeats",
        type=int,
        metavar="K",
        help="train each probed commit K times (default train.repeats.count; seeds: its seed_param or seed_env)",
    )
    p.add_argument(
        "--confidence",
        type=float,
        metavar="LEVEL",
        help="one-sided level of a verdict on repeats (default: the metric's gate rule's, else 0.95)",
    )
    p.add_argument("--direction", choices=("max", "min"), help="default: the metric's (gate rule, metrics.fields)")
    p.add_argument(
        "--min-confidence", type=float, default=0.99, help="report change points at least this sure (default 0.99)"
    )
    p.add_argument("--executor", choices=("local", "dask", "ci"), default="local", help="where probes train")
    p.add_argument("-j", "--jobs", type=int, help="trainings at a time (default: the repeats)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler (default: a LocalCluster started here)")
    p.add_argument("--resume", action="store_true", help="go on with the interrupted bisect (.git/mlci/bisect/)")
    add_format_options(p)
