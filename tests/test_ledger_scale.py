"""Compaction at scale (issue 19): deterministic segments per id bucket, incremental rewrites,
a merge that drops loose copies a segment holds, automatic compaction, and the cache build
streaming event files in pack order."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import git, run_mlci
from ledger_helpers import append_runs, event_files, make_run, mlci_json, pull, push

from mlci_tui import gitio
from mlci_tui.gitio import Repo, TreeEntry
from mlci_tui.ledger import records
from mlci_tui.ledger.compact import compact
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore, refuse_misnamed


def _segments(root: Path) -> dict[str, str]:
    """segment path -> blob id, in the ledger's tree."""
    out = {}
    for line in git(root, "ls-tree", "-r", LEDGER_REF, "segments/").splitlines():
        meta, path = line.split("\t")
        out[path] = meta.split()[2]
    return out


def test_two_clones_compacting_the_same_records_write_the_same_segments(clone_of: Callable[[str], Path]) -> None:
    a, b = clone_of("a"), clone_of("b")
    append_runs(a, 40, batch=40)
    push(a)
    pull(b)
    assert compact(LedgerStore(Repo.find(a))) == compact(LedgerStore(Repo.find(b))) == 40
    assert _segments(a) == _segments(b)  # same names, same bytes
    assert git(a, "rev-parse", f"{LEDGER_REF}^{{tree}}") == git(b, "rev-parse", f"{LEDGER_REF}^{{tree}}")
    buckets = [p.split("/")[1][0] for p in _segments(a) if p.endswith(".parquet")]
    assert len(buckets) == len(set(buckets)) > 1  # one segment per id bucket


def test_compaction_rewrites_only_the_buckets_with_loose_records(repo: Path) -> None:
    store = LedgerStore(Repo.find(repo))
    append_runs(repo, 60, batch=60)
    assert compact(store) == 60
    before = _segments(repo)
    new = make_run(name="late")
    store.append([new])
    assert compact(store) == 61
    after = _segments(repo)
    changed = {p.split("/")[1][0] for p in set(after.items()) ^ set(before.items()) for p in [p[0]]}
    assert changed == {new["id"][0]}
    assert event_files(repo) == []
    assert len(mlci_json(repo, "runs")) == 61
    assert compact(store) == 61 and _segments(repo) == after  # nothing loose: nothing written


def test_a_pull_of_a_compacted_ledger_drops_the_loose_copies_it_holds(clone_of: Callable[[str], Path]) -> None:
    a, b = clone_of("a"), clone_of("b")
    append_runs(a, 12, batch=12)
    push(a)
    pull(b)
    mine = append_runs(b, 1, prefix="b")  # b's own record: a merge, not a fast-forward
    assert run_mlci(a, "ledger", "compact").returncode == 0
    push(a)
    pull(b)
    assert event_files(b) == mine  # only what no segment holds
    assert len(mlci_json(b, "runs")) == 13


def test_ledger_compact_auto_waits_for_the_threshold_and_push_compacts(clone_of: Callable[[str], Path]) -> None:
    a = clone_of("a")
    append_runs(a, 5, batch=5)
    env = {**os.environ, "MLCI_COMPACT_THRESHOLD": "6"}
    proc = run_mlci(a, "ledger", "compact", "--auto", env=env)
    assert proc.returncode == 0 and proc.stdout == ""
    assert len(event_files(a)) == 5 and not _segments(a)
    append_runs(a, 1, prefix="x")
    assert run_mlci(a, "ledger", "push", env=env).returncode == 0
    assert event_files(a) == [] and _segments(a)
    assert git(a, "ls-remote", "origin", LEDGER_REF).split()[0] == git(a, "rev-parse", LEDGER_REF).strip()
    assert len(mlci_json(a, "runs")) == 6


def test_the_cache_build_streams_event_files_in_pack_order(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past PACK_ORDER_MIN objects the read follows the pack; a misnamed file is still named."""
    monkeypatch.setattr(gitio, "PACK_ORDER_MIN", 1)
    ids = append_runs(repo, 30, batch=30)
    git(repo, "gc", "-q")
    store = LedgerStore(Repo.find(repo))
    events = [e for e in store.entries() if e.path.startswith("events/")]
    order = store.repo.pack_order([e.oid for e in events])
    assert sorted(order) == list(range(len(events)))
    target = repo / "lines.ndjson"
    assert store.repo.cat_blobs_to_lines([e.oid for e in events], target, refuse=refuse_misnamed(events)) == []
    assert sorted(target.read_bytes().splitlines(keepends=True)) == sorted(
        store.repo.cat_blobs([e.oid for e in events]).values()
    )
    # the third file's bytes filed under another record's name: refused wherever the pack puts them
    other = next(i for i in ids if not events[2].path.endswith(f"/{i}.json"))
    misnamed = [*events[:2], TreeEntry("100644", "blob", events[2].oid, records.record_path(other)), *events[3:]]
    assert store.repo.cat_blobs_to_lines([e.oid for e in misnamed], target, refuse=refuse_misnamed(misnamed)) == [2]
    assert len(target.read_bytes().splitlines()) == 29
