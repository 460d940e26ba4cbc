"""A compaction drops the ledger's history (its commit has no parent), and sharing keeps it dropped:
clones converge, a fresh clone fetches the segments and not every event file ever written, the
"remote only grew" check counts records instead of commits, and a push that replaces the remote's
history never replaces records nobody has merged."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import git, run_mlci
from ledger_helpers import (
    append_runs,
    assert_clean_exit,
    finish_writer,
    ledger_tip,
    ledger_tree,
    make_run,
    mlci_ok,
    pull,
    push,
    query,
    run_ids,
    start_writer,
)

from mlci_tui.gitio import Repo
from mlci_tui.ledger import events
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore

Clone = Callable[..., Path]


def _commits(root: Path, ref: str = LEDGER_REF) -> int:
    return int(git(root, "rev-list", "--count", ref).strip())


def test_a_compaction_drops_the_history_and_every_clone_keeps_it_dropped(tmp_path: Path, clone_of: Clone) -> None:
    a, b = clone_of("a"), clone_of("b")
    old = set(append_runs(a, 40, prefix="old"))  # 40 commits, 40 event files
    push(a)
    pull(b)
    mine = set(append_runs(b, 3, prefix="b"))  # b's own, not pushed yet
    assert _commits(a) == 40

    mlci_ok(a, "ledger", "compact")
    assert git(a, "rev-list", "--parents", "-n", "1", LEDGER_REF).split()[1:] == []  # no parent
    assert _commits(a) == 1 and set(run_ids(a)) == old
    assert push(a).pushed  # not a fast-forward: replaced under a lease
    assert git(a, "ls-remote", "origin", LEDGER_REF).split()[0] == ledger_tip(a)

    # b last saw the 40-commit ledger: the compacted one holds every record of it, so it merges,
    # on top of the compacted history (b's own history of the same records is not brought back)
    result = pull(b)
    assert any("compacted" in n for n in result.notices), result.notices
    assert set(run_ids(b)) == old | mine
    assert _commits(b) == 2  # the compaction and the union with b's three runs
    assert push(b).pushed  # a fast-forward of the compacted ledger
    pull(a)
    assert ledger_tip(a) == ledger_tip(b) and ledger_tree(a) == ledger_tree(b)
    assert not push(a).pushed and not push(b).pushed  # converged: nothing left to send

    # a fresh clone fetches the segments and b's three files, not the 40 old event files' history
    fresh = clone_of("fresh")
    mlci_ok(fresh, "ledger", "pull")
    assert set(run_ids(fresh)) == old | mine
    assert _commits(fresh) == 2
    listed = git(fresh, "rev-list", "--objects", LEDGER_REF).splitlines()
    paths = [line.split(" ", 1)[1] for line in listed if " " in line]
    assert not [p for p in paths if any(rid in p for rid in old)]  # no old event file anywhere in its history
    assert len([p for p in paths if p.startswith("events/") and p.endswith(".json")]) == 3


def test_an_uncompacted_clone_pushing_after_a_compaction_does_not_bring_the_history_back(clone_of: Clone) -> None:
    a, b = clone_of("a"), clone_of("b")
    append_runs(a, 30, prefix="old")
    push(a)
    pull(b)
    mlci_ok(a, "ledger", "compact")
    push(a)
    append_runs(b, 2, prefix="b")
    mlci_ok(b, "ledger", "push")  # pulls the compacted ledger first: b's 32 commits stay behind
    remote = git(b, "ls-remote", "origin", LEDGER_REF).split()[0]
    assert int(git(b, "rev-list", "--count", remote).strip()) == 2
    assert len(set(run_ids(b))) == 32


def test_compacting_a_clone_whose_remote_is_not_compacted_replaces_the_remote_history(clone_of: Clone) -> None:
    """The compacted side's history wins whichever clone compacted: here the one that pushes."""
    a, b = clone_of("a"), clone_of("b")
    append_runs(a, 20, prefix="a")
    push(a)
    pull(b)
    append_runs(a, 5, prefix="late")  # the remote moves on, uncompacted
    push(a)
    mlci_ok(b, "ledger", "compact")
    assert push(b).pushed
    remote = git(b, "ls-remote", "origin", LEDGER_REF).split()[0]
    assert int(git(b, "rev-list", "--count", remote).strip()) == 2  # b's compaction and the union with a's 5
    pull(a)
    assert len(set(run_ids(a))) == len(set(run_ids(b))) == 25
    assert ledger_tree(a) == ledger_tree(b)


def test_a_remote_that_dropped_records_is_refused_but_one_that_redacted_them_is_not(clone_of: Clone) -> None:
    a, b = clone_of("a"), clone_of("b")
    store = LedgerStore(Repo.find(a))
    runs = [make_run(name=f"r{i}") for i in range(4)]
    store.append(runs)
    secret = runs[1]["id"]
    store.append([events.note(secret, "the token"), events.tag(secret, "best")])
    push(a)
    pull(b)

    # a redaction and a compaction drop the record and what refers to it: not a rewrite
    mlci_ok(a, "ledger", "redact", secret)
    mlci_ok(a, "ledger", "compact")
    push(a)
    assert secret not in {r["id"] for r in store.read_records()}
    assert_clean_exit(run_mlci(b, "ledger", "pull"))
    assert secret not in set(run_ids(b))

    # a ledger that simply lost a record is refused, and nothing is merged
    c = clone_of("c")
    pull(c)
    cstore = LedgerStore(Repo.find(c))
    victim = runs[2]["id"]
    kept = [r for r in cstore.read_records() if r["id"] != victim]
    git(c, "update-ref", "-d", LEDGER_REF)  # a new history of every record but the victim
    cstore.append(kept)
    git(c, "push", "-q", "--no-verify", "--force", "origin", f"{LEDGER_REF}:{LEDGER_REF}")

    before = ledger_tip(b)
    proc = run_mlci(b, "ledger", "pull")
    assert_clean_exit(proc, 1)
    assert "rewritten" in proc.stderr and victim in proc.stderr and "--force-merge" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert ledger_tip(b) == before
    mlci_ok(b, "ledger", "pull", "--force-merge")
    assert victim in set(run_ids(b))  # a union never deletes: b keeps it


def test_a_lease_keeps_a_concurrent_push_while_a_compacted_clone_replaces_the_history(clone_of: Clone) -> None:
    """The compacted clone and a writer push at once, each many times: every run of both ends up
    in both clones and on the remote (a forced push never replaces what it has not merged)."""
    a, b = clone_of("a"), clone_of("b")
    append_runs(a, 20, prefix="base")
    push(a)
    pull(b)
    mlci_ok(a, "ledger", "compact")
    writers = [start_writer(a, 15, label="a"), start_writer(b, 15, label="b")]
    pushes = []
    for _ in range(3):
        pushes += [
            subprocess.Popen(
                [sys.executable, "-m", "mlci_tui", "ledger", "push"],
                cwd=c,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c in (a, b)
        ]
    ids = set(finish_writer(writers[0])) | set(finish_writer(writers[1]))
    for p in pushes:
        _out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    for c in (a, b, a):
        mlci_ok(c, "ledger", "push")
    everything = set(query(a, "SELECT run_id FROM runs"))
    assert len(everything) == 50 and {(i,) for i in ids} <= everything
    assert set(query(b, "SELECT run_id FROM runs")) == everything
    assert ledger_tree(a) == ledger_tree(b)


def test_a_scratch_ref_left_by_a_killed_compaction_is_removed_by_the_next(clone_of: Clone) -> None:
    """The compaction commit is written on `refs/mlci/scratch/<pid>` before the ledger ref moves
    to it; a writer killed in between leaves that ref (and the objects it holds) behind."""
    a = clone_of("a")
    append_runs(a, 3)
    tip = ledger_tip(a)
    assert tip is not None
    git(a, "update-ref", "refs/mlci/scratch/999999999", tip)  # no such process
    mlci_ok(a, "ledger", "compact")
    assert git(a, "for-each-ref", "refs/mlci/scratch/").strip() == ""
    assert _commits(a) == 1


def _loose_objects(root: Path) -> int:
    counts = dict(line.split(": ") for line in git(root, "count-objects", "-v").splitlines())
    return int(counts["count"])


def test_a_git_gc_after_a_compaction_does_not_write_the_dropped_history_out_loose(clone_of: Clone) -> None:
    """Before git 2.40, `git gc` writes every recent unreachable object out as a loose file: a
    compaction's dropped history (one object per event file and tree) would become thousands of
    files. The clone that compacted, and the clone that merged onto the compacted ledger, have
    `gc.cruftPacks` set where the user had not chosen (git's default since 2.40)."""
    a, b = clone_of("a"), clone_of("b")
    append_runs(a, 60, prefix="old")
    push(a)
    pull(b)
    git(a, "gc", "-q")
    git(b, "gc", "-q")
    mlci_ok(a, "ledger", "compact")
    push(a)
    append_runs(b, 1, prefix="b")
    pull(b)  # onto the compacted ledger: b's own 61 commits are dropped too
    for clone in (a, b):
        git(clone, "gc", "-q")
        assert _loose_objects(clone) == 0, clone.name
    git(b, "config", "gc.cruftPacks", "false")  # a user's own choice is left alone
    mlci_ok(b, "ledger", "compact")
    assert git(b, "config", "gc.cruftPacks").strip() == "false"
