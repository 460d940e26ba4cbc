"""Training a probed commit through the sweep machinery: one sweep per commit, one trial per repeat.

The sweep's id is derived from the commit, so every bisect that probes a commit finds the
same sweep: what it trained is reused, a repeat count raised later only adds trials, and a
run interrupted mid-way is picked up by `sweep start`'s coordinator (leases, lost workers).
Its trials run in a worktree at the commit, as any sweep trial does; `run_kind: bisect` in
the spec makes the trial's run a `bisect` run of that commit (sweep/runner.py `capture`),
with the id derived from (`bisect`, commit, repeat index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.errors import ConfigError, InputError
from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep import events, policy, queue
from mlci_tui.sweep.events import Sweep
from mlci_tui.sweep.spec import SweepSpec

PENDING, DONE, FAILED = "pending", "done", "failed"
LOST = "lost:"  # a trial's failure reason when its worker vanished: not the commit's fault


@dataclass(frozen=True)
class Training:
    """How a probe trains: the metric it reads and how many seeded repeats."""

    metric: str
    direction: str = "max"
    repeats: int = 1
    seed_param: str | None = None
    seed_env: str | None = None
    timeout: float | None = None


def probe_sweep_id(commit: str) -> str:
    return records.derived_id("bisect", "sweep", commit)


def command_for(repo: Repo, commit: str, head: config_mod.Config) -> tuple[str, str]:
    """(train command, params file) for a commit: its own mlci.yaml's when it has one, else HEAD's."""
    try:
        own = config_mod.load_from_git(repo, commit)
    except ConfigError:
        own = None
    command = (own.data["train"]["command"] if own is not None and own.source else None) or head.data["train"][
        "command"
    ]
    if not command:
        raise InputError("mlci.yaml: train.command: not set; mlci bisect trains commits with it")
    return command, (own or head).params_files[0]


def queue_probe(repo: Repo, state: queue.QueueState, commit: str, training: Training, head: config_mod.Config) -> Sweep:
    """The commit's probe sweep with `repeats` trials queued or finished (created or topped up);
    a trial whose worker was lost is queued again."""
    sid = probe_sweep_id(commit)
    sweep = state.sweeps.get(sid)
    recs: list[dict[str, Any]] = []
    if sweep is None:
        command, params_file = command_for(repo, commit, head)
        name = f"bisect-{commit[:10]}"
        spec = SweepSpec(
            name=name,
            command=command,
            params={},
            params_file=params_file,
            metric=training.metric,
            direction=training.direction,
            parallel=training.repeats,
            retries=0,  # a commit that fails to train is skipped, not retried
            timeout=training.timeout,
        ).to_json()
        spec.update(run_kind="bisect", seed_param=training.seed_param, seed_env=training.seed_env)
        recs.append(events.sweep_event(name, spec, base=commit, base_kind="commit", seed=0, event_id=sid))
        have = 0
    else:
        have = len(sweep.trials)
        for trial in sweep.ordered():
            if trial.state == "failed" and (trial.reason or "").startswith(LOST):
                recs.append(
                    events.trial_event(sid, trial.trial_id, "requeued", reason="bisect: worker lost", manual=True)
                )
    seed = training.seed_param if training.repeats > 1 else None
    new = [{seed: n} if seed else {} for n in range(have, training.repeats)]
    recs += policy.queued_events(sid, new, first=have)
    if recs:
        LedgerStore(repo).append(recs, message=f"mlci: bisect: train {commit[:10]} x{training.repeats}")
        state.refresh()
    return state.sweeps[sid]


def probe_state(sweep: Sweep | None) -> str | None:
    """pending (trials to run), done (some repeat trained), failed (none did: skip it); None: never probed."""
    if sweep is None or not sweep.trials:
        return None
    trials = sweep.trials.values()
    if any(t.state in ("queued", "running") for t in trials):
        return PENDING
    if any(t.state == "done" for t in trials):
        return DONE
    if any((t.reason or "").startswith(LOST) for t in trials):
        return PENDING
    return FAILED
