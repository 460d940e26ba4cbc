"""The queue's fold (sweep/events.py, what workers and `mlci sweep` act on) and the `trials` view
(what `mlci sql` and exports read) are two readings of one rule: a test holds them together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import commit, run_mlci

from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep import events
from mlci_tui.sweep.queue import load_events


def _at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


def _trial(sweep_id: str, number: int, steps: list[tuple[int, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    tid = events.trial_id(sweep_id, number)
    out = []
    for second, state, fields in steps:
        ev = events.trial_event(sweep_id, tid, state, **fields)
        ev["time"] = _at(second)
        out.append(ev)
    return out


def test_the_fold_and_the_trials_view_agree_on_every_trial(repo: Path) -> None:
    commit(repo, {"README.md": "x\n"}, "init")
    sweep = events.sweep_event("s", {"method": "grid", "metric": "acc"}, base="HEAD", base_kind="commit", seed=1)
    sweep["time"] = _at(0)
    sid = sweep["id"]
    recs = [sweep]
    # done after a failure and an automatic requeue; then a late duplicate start (done is final)
    recs += _trial(
        sid,
        0,
        [
            (1, "queued", {"number": 0, "params": {"lr": 0.1}}),
            (2, "started", {"worker": "w1"}),
            (3, "failed", {"exit_code": 1, "stderr_tail": "boom"}),
            (3, "requeued", {"reason": "retry 1 of 2"}),
            (4, "started", {"worker": "w2"}),
            (5, "done", {"run_id": "r" * 26, "value": 0.5}),
            (6, "started", {"worker": "w3"}),
        ],
    )
    # failed for good
    recs += _trial(
        sid,
        1,
        [(1, "queued", {"number": 1, "params": {"lr": 0.2}}), (2, "started", {}), (3, "failed", {"exit_code": 2})],
    )
    # failed, retried by hand, running again: no end time
    recs += _trial(
        sid,
        2,
        [
            (1, "queued", {"number": 2, "params": {"lr": 0.3}}),
            (2, "started", {"worker": "w1"}),
            (3, "failed", {"exit_code": 3}),
            (4, "requeued", {"manual": True}),
            (5, "started", {"worker": "w4"}),
        ],
    )
    # cancelled before it ever started
    recs += _trial(sid, 3, [(1, "queued", {"number": 3, "params": {"lr": 0.4}}), (2, "cancelled", {})])
    LedgerStore(Repo.find(repo)).append(recs)

    _tip, evs = load_events(Repo.find(repo))
    folded = {t.trial_id: t for t in events.fold(evs)[sid].trials.values()}
    proc = run_mlci(repo, "sql", "SELECT * FROM trials ORDER BY number", "--json")
    assert proc.returncode == 0, proc.stderr
    viewed = {row["trial_id"]: row for row in json.loads(proc.stdout)}
    assert set(viewed) == set(folded) and len(folded) == 4

    def stamp(text: str | None) -> str | None:
        return None if text is None else text.replace("T", " ").rstrip("Z")[:19]

    for tid, trial in folded.items():
        row = viewed[tid]
        python = (
            trial.number,
            trial.state,
            trial.attempts,
            trial.requeues,
            trial.params,
            trial.run_id,
            trial.value,
            trial.exit_code,
            trial.worker,
            stamp(trial.started),
            stamp(trial.ended),
        )
        sql = (
            row["number"],
            row["state"],
            row["attempts"],
            row["retries"],
            json.loads(row["params"]) if isinstance(row["params"], str) else row["params"],
            row["run_id"],
            row["value"],
            row["exit_code"],
            row["worker"],
            stamp(row["started"]),
            stamp(row["ended"]),
        )
        assert python == sql, (trial.number, python, sql)
