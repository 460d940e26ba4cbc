"""A ledger merge never silently replaces a record: a forged body under the deployed run's id
(ground so its blob id is the smaller) stays a conflict until resolved; two clones capturing
one commit converge without one; compaction keeps the conflict; misnamed files never win."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import commit, git, metrics_json, run_mlci
from ledger_helpers import assert_clean_exit, make_run, mlci_json, pull, push, query

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.conflicts import blob_id, open_conflicts
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore

Clone = Callable[..., Path]
GATE_CONFIG = "gate:\n  rules:\n    acc: {direction: max}\n"


def _mlci_ok(root: Path, *args: str) -> Any:
    proc = run_mlci(root, *args)
    assert_clean_exit(proc)
    return proc


def _ledger_file(root: Path, path: str) -> bytes:
    return git(root, "cat-file", "blob", f"{LEDGER_REF}:{path}").encode()


def _forge(genuine: bytes, **metrics: float) -> bytes:
    """The genuine body with other metrics, a nonce ground until its blob id sorts first."""
    record = records.loads(genuine)
    record["metrics"] = {"metrics.json": metrics}
    target = blob_id(genuine)
    for nonce in range(100_000):
        record["nonce"] = nonce
        body = records.dumps(record)
        if blob_id(body) < target:
            return body
    raise AssertionError("no nonce gave a smaller blob id")


def _deployed_project(clone_of: Clone) -> tuple[Path, str]:
    """Clone `a` with a captured, promoted, pushed run of acc 0.5; returns (clone, run id)."""
    a = clone_of("a")
    sha = commit(
        a, {"mlci.yaml": GATE_CONFIG, "params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "train"
    )
    git(a, "push", "-q", "origin", "main")
    _mlci_ok(a, "capture")
    run_id = records.derived_id("commit", sha)
    _mlci_ok(a, "promote", run_id, "--stage", "deployed")
    push(a)
    return a, run_id


def _push_forgery(clone_of: Clone, run_id: str) -> tuple[bytes, bytes]:
    """An attacker with push access replaces the run's body on the remote ledger."""
    evil = clone_of("evil")
    pull(evil)
    path = records.record_path(run_id)
    genuine = _ledger_file(evil, path)
    forged = _forge(genuine, acc=0.99)
    LedgerStore(Repo.find(evil)).update(lambda _tip: {path: forged}, "mlci: 1 records")
    git(evil, "push", "-q", "origin", f"+{LEDGER_REF}:{LEDGER_REF}")  # a compaction is a new root: forced
    return genuine, forged


def test_a_forged_replacement_is_kept_aside_as_a_conflict_until_resolved(clone_of: Clone) -> None:
    a, run_id = _deployed_project(clone_of)
    path = records.record_path(run_id)
    genuine, forged = _push_forgery(clone_of, run_id)
    assert blob_id(forged) < blob_id(genuine)

    pulled = _mlci_ok(a, "ledger", "pull")
    assert "1 open ledger conflict(s)" in pulled.stderr
    assert _ledger_file(a, path) == genuine  # the clone's own body stays in place
    conflict = f"conflicts/{run_id}/{blob_id(forged)}.json"
    assert _ledger_file(a, conflict) == forged  # the incoming one is kept, in the merge commit
    assert open_conflicts(LedgerStore(Repo.find(a)))[0].path == conflict

    fsck = run_mlci(a, "ledger", "fsck")
    assert_clean_exit(fsck, 1)
    assert conflict in fsck.stdout and "open conflict" in fsck.stderr
    assert conflict in _mlci_ok(a, "ledger", "status").stdout
    listed = _mlci_ok(a, "ledger", "resolve", "--list").stdout
    assert f"{run_id} {blob_id(forged)}" in listed
    # queries read events/ and segments/ only: the genuine metrics, once
    assert query(a, "SELECT metrics['acc'] FROM runs WHERE run_id = ?", [run_id]) == [(0.5,)]
    assert [r["metrics"]["acc"] for r in mlci_json(a, "runs")] == [0.5]
    gate = json.loads(run_mlci(a, "gate", "--base", "deployed", "--head", run_id, "--format", "json").stdout)
    assert gate["rules"][0]["baseline"] == 0.5

    assert_clean_exit(run_mlci(a, "ledger", "resolve", "z" * 26, "--keep", "theirs"), 2)
    assert_clean_exit(run_mlci(a, "ledger", "resolve", run_id, "--keep", "nonsense"), 2)
    _mlci_ok(a, "ledger", "resolve", run_id, "--keep", "theirs")
    assert _ledger_file(a, path) == forged
    assert open_conflicts(LedgerStore(Repo.find(a))) == []
    assert [r["metrics"]["acc"] for r in mlci_json(a, "runs")] == [0.99]
    assert "ledger ok" in _mlci_ok(a, "ledger", "fsck").stdout
    # the decision sticks: pulling the remote (which still holds the genuine body's history) reopens nothing
    _mlci_ok(a, "ledger", "pull")
    assert open_conflicts(LedgerStore(Repo.find(a))) == []


def test_keep_ours_closes_the_conflict_and_a_later_pull_does_not_reopen_it(clone_of: Clone) -> None:
    a, run_id = _deployed_project(clone_of)
    genuine, forged = _push_forgery(clone_of, run_id)
    pull(a)
    _mlci_ok(a, "ledger", "resolve", run_id, "--keep", "ours")
    assert open_conflicts(LedgerStore(Repo.find(a))) == []
    assert _ledger_file(a, records.record_path(run_id)) == genuine
    # the remote still holds the forged body: the same difference is already decided
    LedgerStore(Repo.find(a)).append([make_run(name="later", metrics={"acc": 0.2})])
    pull(a)
    assert open_conflicts(LedgerStore(Repo.find(a))) == []
    assert "ledger ok" in _mlci_ok(a, "ledger", "fsck").stdout
    assert_clean_exit(run_mlci(a, "ledger", "resolve", run_id, "--keep", "ours"), 2)  # nothing open


def test_compaction_keeps_the_conflict_and_the_genuine_record(clone_of: Clone) -> None:
    a, run_id = _deployed_project(clone_of)
    genuine, forged = _push_forgery(clone_of, run_id)
    pull(a)
    _mlci_ok(a, "ledger", "compact")
    paths = git(a, "ls-tree", "-r", "--name-only", LEDGER_REF).split()
    assert not [p for p in paths if p.startswith("events/")]
    assert f"conflicts/{run_id}/{blob_id(forged)}.json" in paths
    assert [r["metrics"]["acc"] for r in mlci_json(a, "runs")] == [0.5]
    # the remote's uncompacted forged file comes back on the next pull: still not in place
    pull(a)
    assert not [p for p in git(a, "ls-tree", "-r", "--name-only", LEDGER_REF).split() if p.startswith("events/")]
    assert [r["metrics"]["acc"] for r in mlci_json(a, "runs")] == [0.5]
    assert len(open_conflicts(LedgerStore(Repo.find(a)))) == 1


@pytest.mark.parametrize("twin", [False, True])
def test_a_remote_segment_with_a_forged_copy_comes_in_as_records_and_a_conflict(clone_of: Clone, twin: bool) -> None:
    """`twin`: the forged record's segment also holds a record both clones have byte for byte
    (the same id bucket); it stays as it is (this merge raised a KeyError when the bucket was shared)."""
    a, run_id = _deployed_project(clone_of)
    if twin:
        LedgerStore(Repo.find(a)).append([make_run(event_id=run_id[0] + records.new_id()[1:], name="twin")])
        push(a)
    evil = clone_of("evil")
    pull(evil)
    store = LedgerStore(Repo.find(evil))
    path = records.record_path(run_id)
    forged = _forge(_ledger_file(evil, path), acc=0.99)
    extra = make_run(name="theirs", metrics={"acc": 0.1})
    store.update(lambda _tip: {path: forged}, "forge")
    store.append([extra])
    from mlci_tui.ledger.compact import compact

    compact(store)
    git(evil, "push", "-q", "origin", f"+{LEDGER_REF}:{LEDGER_REF}")  # a compaction is a new root: forced
    LedgerStore(Repo.find(a)).append([make_run(name="ours", metrics={"acc": 0.3})])  # a merge, not a fast-forward
    pull(a)
    paths = git(a, "ls-tree", "-r", "--name-only", LEDGER_REF).split()
    # the segment holding the forged copy was not taken whole (a segment per id bucket: compact.py)
    assert not [p for p in paths if p.startswith(f"segments/{run_id[0]}-")]
    assert LedgerStore(Repo.find(a)).has_ids([extra["id"]]) == {extra["id"]}
    assert len(open_conflicts(LedgerStore(Repo.find(a)))) == 1
    accs = {r["name"] or "deployed": r["metrics"].get("acc") for r in mlci_json(a, "runs")}
    assert accs == {"deployed": 0.5, "theirs": 0.1, "ours": 0.3} | ({"twin": None} if twin else {})


def test_two_clones_capturing_one_commit_do_not_conflict(clone_of: Clone) -> None:
    a = clone_of("a")
    sha = commit(a, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "train")
    git(a, "push", "-q", "origin", "main")
    b = clone_of("b")
    git(b, "checkout", "-q", "-b", "elsewhere")  # another branch; another capture time
    _mlci_ok(a, "capture")
    _mlci_ok(b, "capture")
    path = records.record_path(records.derived_id("commit", sha))
    assert _ledger_file(a, path) != _ledger_file(b, path)
    push(a)
    _mlci_ok(b, "ledger", "push")
    pull(a)
    push(a)
    pull(b)
    for c in (a, b):
        assert "no open conflicts" in _mlci_ok(c, "ledger", "resolve", "--list").stdout
        assert "ledger ok" in _mlci_ok(c, "ledger", "fsck").stdout
        assert "conflict" not in _mlci_ok(c, "ledger", "status").stdout
    assert _ledger_file(a, path) == _ledger_file(b, path)  # one body, the same in both


def test_a_body_filed_under_another_records_name_never_wins(repo: Path) -> None:
    store = LedgerStore(Repo.find(repo))
    genuine = make_run(name="genuine", metrics={"acc": 0.5}, time="2025-01-02T00:00:00.000000Z")
    store.append([genuine])
    # the forger's copy: the same id inside, an earlier time, filed under a name of its own
    forged = dict(genuine, metrics={"metrics.json": {"acc": 0.99}}, time="2020-01-01T00:00:00.000000Z")
    store.update(lambda _tip: {records.record_path(records.new_id()): records.dumps(forged)}, "forge")
    assert query(repo, "SELECT metrics['acc'] FROM runs") == [(0.5,)]
    assert [r["metrics"] for r in store.read_records()] == [genuine["metrics"]]
