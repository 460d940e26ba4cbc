"""`ledger pull` and `ledger push` fold the remote's incoming trial refs (issue 20).

A CI trial job whose ledger push lost the race leaves its result on a ref of its own,
`refs/mlci/incoming/<sweep>/<trial>-<attempt>`. Any clone's `ledger pull` brings it into that
clone's ledger (checked like a pull, merged once); the next `ledger push` lands it in the
remote's ledger and deletes the ref there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import git, run_mlci
from ledger_helpers import append_runs, assert_clean_exit, event_files, query

from mlci_tui.ledger.store import LEDGER_REF

Clone = Callable[..., Path]
SWEEP, TRIAL = "s" * 26, "t" * 26
REF = f"refs/mlci/incoming/{SWEEP}/{TRIAL}-1"


def _incoming(upstream: Path) -> list[str]:
    return git(upstream, "for-each-ref", "--format=%(refname)", "refs/mlci/incoming/").split()


def _job_result_only_on_its_ref(clone_of: Clone) -> tuple[Path, str]:
    """A trial job's clone: it records one run and pushes its ledger only to its incoming ref."""
    job = clone_of("job")
    assert_clean_exit(run_mlci(job, "ledger", "pull"))
    (rid,) = append_runs(job, 1, prefix="trial")
    git(job, "push", "-q", "--no-verify", "origin", f"{LEDGER_REF}:{REF}")
    return job, rid


def test_pull_folds_an_incoming_result_once_and_push_deletes_the_ref(upstream: Path, clone_of: Clone) -> None:
    dev = clone_of("dev")
    base = append_runs(dev, 2, prefix="base")
    assert_clean_exit(run_mlci(dev, "ledger", "push"))
    _job, rid = _job_result_only_on_its_ref(clone_of)
    assert _incoming(upstream) == [REF]

    other = clone_of("other")
    pulled = run_mlci(other, "ledger", "pull")
    assert_clean_exit(pulled)
    assert "folded 1 incoming trial result(s) from origin" in pulled.stdout
    assert _incoming(upstream) == [REF]  # a pull does not delete: the remote's ledger lacks it yet
    assert_clean_exit(run_mlci(other, "ledger", "pull"))  # again: nothing twice
    assert query(other, "SELECT count(*) FROM runs WHERE run_id = ?", [rid]) == [(1,)]
    assert sorted(r for (r,) in query(other, "SELECT run_id FROM runs")) == sorted([*base, rid])
    assert event_files(other).count(rid) == 1

    pushed = run_mlci(other, "ledger", "push")
    assert_clean_exit(pushed)
    assert _incoming(upstream) == []
    assert rid in event_files(upstream)
    assert not git(other, "for-each-ref", "refs/mlci-remote/origin/trials/").strip()

    third = clone_of("third")  # a clone after the push gets the result from the ledger itself, once
    assert_clean_exit(run_mlci(third, "ledger", "pull"))
    assert query(third, "SELECT count(*) FROM runs WHERE run_id = ?", [rid]) == [(1,)]


def test_push_alone_folds_and_a_bad_incoming_ref_stays(upstream: Path, clone_of: Clone) -> None:
    dev = clone_of("dev")
    append_runs(dev, 1, prefix="base")
    assert_clean_exit(run_mlci(dev, "ledger", "push"))
    _job, rid = _job_result_only_on_its_ref(clone_of)
    # a second job's ref that is no ledger commit (a blob): refused, left for a person to look at
    blob = git(dev, "hash-object", "-w", "--stdin", input="not a ledger\n").strip()
    bad = f"refs/mlci/incoming/{SWEEP}/{'u' * 26}-1"
    git(dev, "push", "-q", "--no-verify", "origin", f"{blob}:{bad}")

    pushed = run_mlci(dev, "ledger", "push")
    assert_clean_exit(pushed)
    assert "folded 1 incoming trial result(s)" in pushed.stdout
    assert f"{bad}: not a commit" in pushed.stderr
    assert _incoming(upstream) == [bad]
    assert rid in event_files(upstream)
