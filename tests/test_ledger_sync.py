"""Sharing the ledger between clones through a bare upstream: union merges, shallow clones,
rewritten remotes, deterministic capture ids, compaction and redaction across a merge."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import commit, git, metrics_json, run_mlci
from ledger_helpers import (
    append_runs,
    assert_clean_exit,
    event_files,
    finish_writer,
    ledger_tip,
    ledger_tree,
    make_run,
    mlci_json,
    mlci_ok,
    pull,
    push,
    query,
    run_ids,
    start_writer,
)

from mlci_tui.capture.write import capture_revs
from mlci_tui.gitio import Repo
from mlci_tui.ledger import events, records
from mlci_tui.ledger.compact import compact
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore

Clone = Callable[..., Path]


def _assert_ledger_holds(root: Path, expected: set[str]) -> None:
    """The clone's views hold exactly `expected`, once each; so does its ledger tree."""
    rows = query(root, "SELECT count(*), count(DISTINCT run_id) FROM runs")
    assert rows == [(len(expected), len(expected))]
    assert set(run_ids(root)) == expected
    files = event_files(root)
    assert len(files) == len(set(files)) == len(expected)


@pytest.mark.parametrize(("order", "per_clone"), [("a_then_b", 200), ("b_then_a", 200), ("simultaneous", 60)])
def test_two_clones_with_200_runs_each_converge(clone_of: Clone, order: str, per_clone: int) -> None:
    a, b = clone_of("a"), clone_of("b")
    # both clones record at the same time, alternating a single append and a batch of 10
    writers = [start_writer(a, per_clone, batch=10, label="a"), start_writer(b, per_clone, batch=10, label="b")]
    ids_a, ids_b = (finish_writer(w) for w in writers)
    assert len(set(ids_a)) == len(set(ids_b)) == per_clone
    assert len(set(ids_a) | set(ids_b)) == 2 * per_clone
    if order == "simultaneous":
        # both push at once: whichever interleaving (a rejected push fetches, merges, retries)
        pushes = [
            subprocess.Popen(
                [sys.executable, "-m", "mlci_tui", "ledger", "push"],
                cwd=c,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c in (a, b)
        ]
        for p in pushes:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert "Traceback" not in err
        # whoever pushed first has not seen the other's runs yet
        for c in (a, b):
            pull(c)
    else:
        first, second = (a, b) if order == "a_then_b" else (b, a)
        mlci_ok(first, "ledger", "push")
        mlci_ok(second, "ledger", "push")
        mlci_ok(first, "ledger", "pull")

    everything = set(ids_a) | set(ids_b)
    for c in (a, b):
        _assert_ledger_holds(c, everything)
    assert run_mlci(a, "sql", "select count(*) as n from runs", "--csv").stdout.split() == ["n", str(2 * per_clone)]
    # both clones and the upstream hold the same union
    assert ledger_tree(a) == ledger_tree(b)
    git(a, "fetch", "-q", "origin", f"{LEDGER_REF}:refs/check/upstream")
    assert ledger_tree(a, "refs/check/upstream") == ledger_tree(a)
    # a second round changes nothing anywhere
    tips = (ledger_tip(a), ledger_tip(b))
    assert "up to date" in mlci_ok(b, "ledger", "push").stdout
    for c in (a, b):
        assert not push(c).pushed
        pull(c)
    assert (ledger_tip(a), ledger_tip(b)) == tips


def test_depth_1_clone_pull_sees_every_run(tmp_path: Path, upstream: Path, clone_of: Clone) -> None:
    a = clone_of("a")
    commit(a, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "first")
    commit(a, {"params.yaml": "lr: 0.2\n", "metrics.json": metrics_json(acc=0.6)}, "second")
    commit(a, {"params.yaml": "lr: 0.3\n", "metrics.json": metrics_json(acc=0.7)}, "third")
    mlci_ok(a, "capture", "--range", "HEAD~2..HEAD", "HEAD~2")
    ids = set(append_runs(a, 20, batch=5, prefix="a"))
    git(a, "push", "-q", "origin", "main")
    push(a)
    b = clone_of("b")
    ids |= set(append_runs(b, 10, prefix="b"))
    push(b)  # the upstream ledger now has a merge in its history
    ids |= set(run_ids(a)) | set(run_ids(b))
    assert len(ids) == 33

    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{upstream}", str(shallow))
    assert git(shallow, "rev-parse", "--is-shallow-repository").strip() == "true"
    assert ledger_tip(shallow) is None
    mlci_ok(shallow, "ledger", "pull")
    _assert_ledger_holds(shallow, ids)
    # the branch history is still shallow; the runs of its missing commits are all there
    assert git(shallow, "rev-list", "--count", "HEAD").strip() == "1"
    assert len(query(shallow, "SELECT run_id FROM runs WHERE kind = 'commit'")) == 3

    # more runs upstream; a second pull from the shallow clone brings them too
    pull(a)
    ids |= set(append_runs(a, 5, prefix="a2"))
    push(a)
    pull(shallow)
    _assert_ledger_holds(shallow, ids)

    # the shallow clone can record and push; the full clone sees it
    ids |= set(append_runs(shallow, 3, prefix="ci"))
    assert push(shallow).pushed
    pull(a)
    _assert_ledger_holds(a, ids)


def test_depth_1_fetch_of_the_ledger_ref_itself(tmp_path: Path, upstream: Path, clone_of: Clone) -> None:
    """What a CI job does: fetch only the ledger tip (depth 1), append, push back."""
    a = clone_of("a")
    ids = set(append_runs(a, 8))
    push(a)
    ids |= set(append_runs(a, 8, batch=4))
    push(a)
    ci = tmp_path / "ci"
    git(tmp_path, "init", "-q", str(ci))
    git(ci, "remote", "add", "origin", f"file://{upstream}")
    git(ci, "fetch", "-q", "--depth", "1", "origin", f"+{LEDGER_REF}:{LEDGER_REF}")
    assert (ci / ".git" / "shallow").exists()
    _assert_ledger_holds(ci, ids)  # the whole ledger is in the tip's tree

    ids |= set(append_runs(ci, 2, prefix="ci"))
    ids |= set(append_runs(a, 2, prefix="a-meanwhile"))
    push(a)
    proc = mlci_ok(ci, "ledger", "push")  # merges the newer remote tip without a merge base
    assert "pushed" in proc.stdout
    pull(a)
    _assert_ledger_holds(a, ids)
    _assert_ledger_holds(ci, ids)


def test_rewritten_remote_ledger_is_refused_unless_force_merge(clone_of: Clone) -> None:
    a, b = clone_of("a"), clone_of("b")
    old = set(append_runs(a, 3, prefix="old"))
    push(a)
    pull(b)
    assert set(run_ids(b)) == old

    # someone replaces the remote ledger with an unrelated history
    git(a, "update-ref", "-d", LEDGER_REF)
    new = set(append_runs(a, 2, prefix="new"))
    git(a, "push", "-q", "--no-verify", "--force", "origin", f"{LEDGER_REF}:{LEDGER_REF}")
    rewritten = git(a, "rev-parse", LEDGER_REF).strip()

    before = ledger_tip(b)
    proc = run_mlci(b, "ledger", "pull")
    assert_clean_exit(proc, 1)
    assert "rewritten" in proc.stderr and "--force-merge" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert ledger_tip(b) == before
    assert set(run_ids(b)) == old
    # push pulls first, so it refuses too, and leaves the remote alone
    assert_clean_exit(run_mlci(b, "ledger", "push"), 1)
    assert git(b, "ls-remote", "origin", LEDGER_REF).split()[0] == rewritten
    assert ledger_tip(b) == before

    mlci_ok(b, "ledger", "pull", "--force-merge")
    assert set(run_ids(b)) == old | new
    pull(b)  # the rewritten tip is now the one last seen
    assert push(b).pushed
    pull(a)
    assert set(run_ids(a)) == old | new


def test_same_commit_captured_in_two_clones_gives_one_run(clone_of: Clone) -> None:
    a = clone_of("a")
    first = commit(a, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "train")
    git(a, "push", "-q", "origin", "main")
    b = clone_of("b")
    assert "captured" in mlci_ok(a, "capture").stdout
    assert "captured" in mlci_ok(b, "capture").stdout
    assert "already in the ledger" in mlci_ok(b, "capture").stdout
    expected = records.derived_id("commit", first)
    push(a)
    mlci_ok(b, "ledger", "push")
    pull(a)
    for c in (a, b):
        assert query(c, "SELECT run_id FROM runs WHERE commit = ?", [first]) == [(expected,)]
        assert event_files(c) == [expected]
    assert ledger_tree(a) == ledger_tree(b)

    # both capture a second commit without pushing, then merge from each other directly:
    # each side makes its own merge commit and both converge on one tree
    second = commit(a, {"metrics.json": metrics_json(acc=0.6)}, "more")
    git(a, "push", "-q", "origin", "main")
    git(b, "pull", "-q", "--ff-only", "origin", "main")
    capture_revs(Repo.find(a), ["HEAD"])
    capture_revs(Repo.find(b), ["HEAD"])
    extra_a = set(append_runs(a, 2, prefix="a"))
    extra_b = set(append_runs(b, 2, prefix="b"))
    # snapshots, so that each side merges the other's pre-merge ledger
    for src, dst in ((a, "snap-a"), (b, "snap-b")):
        git(src.parent, "clone", "-q", "--mirror", str(src), dst)
    git(a, "remote", "add", "peer", str(a.parent / "snap-b"))
    git(b, "remote", "add", "peer", str(a.parent / "snap-a"))
    mlci_ok(a, "ledger", "pull", "peer")
    pull(b, "peer")
    assert ledger_tip(a) != ledger_tip(b)
    assert ledger_tree(a) == ledger_tree(b)
    everything = {expected, records.derived_id("commit", second)} | extra_a | extra_b
    for c in (a, b):
        _assert_ledger_holds(c, everything)
        assert query(c, "SELECT count(*) FROM runs WHERE commit = ?", [second]) == [(1,)]


def test_compaction_and_redaction_survive_a_union_with_an_uncompacted_clone(clone_of: Clone) -> None:
    a, b = clone_of("a"), clone_of("b")
    store = LedgerStore(Repo.find(a))
    runs = [
        make_run(
            name=f"r{i}",
            params={"lr": 0.1 * (i + 1)},
            metrics={"acc": 0.5 + i / 100},
            steps=[["metrics.json", "loss", s, 1.0 / (s + 1)] for s in range(3)],
        )
        for i in range(6)
    ]
    store.append(runs[:3])
    for r in runs[3:]:
        store.append([r])
    secret, other = runs[1]["id"], runs[4]["id"]
    store.append(
        [
            events.tag(secret, "best"),
            events.note(secret, "token was in the message"),
            events.promote(secret, "staging"),
            events.tag(runs[0]["id"], "baseline"),
        ]
    )
    push(a)
    pull(b)  # b keeps every record uncompacted
    before = mlci_json(a, "runs")
    assert len(before) == 6

    # redact: the run vanishes from every view
    assert_clean_exit(run_mlci(a, "ledger", "redact", "a" * 26), 2)  # no such record
    mlci_ok(a, "ledger", "redact", secret, "--reason", "leaked token")
    _assert_hidden(a, secret)
    show = run_mlci(a, "show", secret)
    assert_clean_exit(show, 2)

    # compaction: Parquet segments, every other run still queryable, the redacted one gone
    mlci_ok(a, "ledger", "compact")
    paths = git(a, "ls-tree", "-r", "--name-only", LEDGER_REF).split()
    assert not [p for p in paths if p.startswith("events/")]
    segments = [p for p in paths if p.endswith(".parquet")]  # one per id bucket (compact.py)
    assert segments and len(segments) == len({p.split("/")[1][0] for p in segments})
    assert secret not in {r["id"] for r in store.read_records()}
    # nor what referred to it: its note and tags are gone from the segment, the tombstone stays
    left = [r for r in store.read_records() if r.get("target") == secret]
    assert [r["type"] for r in left] == ["redact"]
    # and the cache's tables (readable with `mlci sql`) hold none of it either
    for table in ("run_rows", "param_rows", "note_rows", "tag_rows", "promotion_rows"):
        assert query(a, f"SELECT count(*) FROM {table} WHERE run_id = '{secret}'") == [(0,)], table
    assert query(a, f"SELECT count(*) FROM event_rows WHERE target = '{secret}' AND type <> 'redact'") == [(0,)]
    after = mlci_json(a, "runs")
    assert sorted(after, key=lambda r: r["run_id"]) == sorted(
        (r for r in before if r["run_id"] != secret), key=lambda r: r["run_id"]
    )
    assert query(a, "SELECT count(*) FROM steps") == [(15,)]
    assert query(a, "SELECT run_id FROM tags WHERE name = 'baseline'") == [(runs[0]["id"],)]
    _assert_hidden(a, secret)

    # a run that lives only in a segment can still be redacted
    mlci_ok(a, "ledger", "redact", other)
    _assert_hidden(a, other)
    push(a)

    # b still holds the uncompacted records; its next push unions them with the segment
    newer = set(append_runs(b, 2, prefix="b"))
    assert push(b).pushed
    pull(a)
    expected = {r["id"] for r in runs} - {secret, other} | newer
    for c in (a, b):
        assert query(c, "SELECT count(*), count(DISTINCT run_id) FROM runs") == [(len(expected), len(expected))]
        assert set(run_ids(c)) == expected
        _assert_hidden(c, secret)
        _assert_hidden(c, other)
    # compacting again drops what the union brought back
    compact(LedgerStore(Repo.find(a)))
    assert not {secret, other} & {r["id"] for r in LedgerStore(Repo.find(a)).read_records()}
    assert set(run_ids(a)) == expected
    _assert_hidden(a, secret)


def _assert_hidden(root: Path, run_id: str) -> None:
    """No view shows the run, nor anything attached to it (only the tombstone says it existed)."""
    views = {
        "runs": "run_id",
        "params": "run_id",
        "metrics": "run_id",
        "steps": "run_id",
        "tags": "run_id",
        "notes": "run_id",
        "promotions": "run_id",
        "stages": "run_id",
        "events": "id",
    }
    counts = " UNION ALL ".join(
        f"SELECT '{view}', count(*) FROM {view} WHERE {column} = $id" for view, column in views.items()
    )
    leaks = "SELECT 'events about it', count(*) FROM events WHERE type <> 'redact' AND contains(body, $id)"
    rows = query(root, f"{counts} UNION ALL {leaks}", {"id": run_id})
    assert [r for r in rows if r[1]] == []
