"""Compaction with bounded memory (issue 19): segments go into git from disk one bucket at a
time, the repack is geometric and skipped when there is little to fold, and no git call passes
more paths than the argument limit allows."""

from __future__ import annotations

import errno
import random
import string
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from ledger_helpers import append_runs, event_files, make_run, mlci_json, pull, push

from mlci_tui import gitio
from mlci_tui.gitio import Repo
from mlci_tui.ledger.compact import compact, repack
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore


def _segment_bytes(root: Path) -> int:
    listing = git(root, "ls-tree", "-r", "-l", LEDGER_REF, "segments/").splitlines()
    return sum(int(line.split()[3]) for line in listing if line.endswith(".parquet"))


PEAK_PROBE = """
import json, sys, tracemalloc
import duckdb, pyarrow.compute, pyarrow.dataset, pyarrow.parquet  # loaded before tracing: not compaction's
import mlci_tui.ledger.cache
from mlci_tui.gitio import Repo
from mlci_tui.ledger.compact import compact
from mlci_tui.ledger.store import LedgerStore

store = LedgerStore(Repo.find())
tracemalloc.start()
count = compact(store)
print(json.dumps([count, tracemalloc.get_traced_memory()[1]]))
"""


def _compact_peak(store: LedgerStore) -> tuple[int, int]:
    """(records compacted, peak of Python's allocations while compacting), measured in a fresh
    interpreter: in a test worker, other tests' threads and first imports (DuckDB's Arrow scan
    loads pyarrow.dataset, ~3 MB) would count too."""
    import json
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE], cwd=store.repo.root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    count, peak = json.loads(proc.stdout)
    return int(count), int(peak)


def _append_wide(store: LedgerStore, count: int) -> None:
    """Runs with a 3 KB param of random text each: segments of several MB (beside which the
    interpreter's own allocations are small; a segment holds the text once, in the run's map)."""
    rng = random.Random(count)
    noise = "".join(rng.choice(string.ascii_letters) for _ in range(WIDE * count))
    store.append([make_run(params={"blob": noise[i * WIDE : (i + 1) * WIDE]}) for i in range(count)])


WIDE = 3072  # characters of random text per run


def test_compaction_never_holds_the_segments_bytes_in_memory(repo: Path) -> None:
    """Each bucket's segment is written to a file and into git before the next bucket is read,
    and the segments a recompaction reads are streamed one at a time: Python's peak stays well
    below the segments' total size (the code before held every old segment, every new one and
    its fast-import script at once: three times it)."""
    store = LedgerStore(Repo.find(repo))
    _append_wide(store, 2000)
    assert compact(store) == 2000
    total = _segment_bytes(repo)
    assert total > 4_000_000
    _append_wide(store, 200)  # loose records in (nearly) every bucket: each segment is read again
    count, again = _compact_peak(store)
    assert count == 2200 and event_files(repo) == []
    assert again < total / 4, (again, total)
    assert len(mlci_json(repo, "runs")) == 2200


def _packs(root: Path) -> set[str]:
    return {p.name for p in (root / ".git" / "objects" / "pack").glob("*.pack")}


def _loose_objects(root: Path) -> int:
    counts = dict(line.split(": ") for line in git(root, "count-objects", "-v").splitlines())
    return int(counts["count"])


def test_repack_folds_the_loose_objects_in_and_keeps_the_big_pack(repo: Path) -> None:
    append_runs(repo, 2000, batch=2000)
    git(repo, "repack", "-a", "-d", "-q")
    (big,) = _packs(repo)
    append_runs(repo, 150, batch=150)  # a small pack of fast-import's
    append_runs(repo, 150)  # loose objects: single appends
    assert _loose_objects(repo) >= 256 and len(_packs(repo)) == 2
    assert repack(Repo.find(repo))
    assert big in _packs(repo) and len(_packs(repo)) <= 3  # the big pack (a million records) is not rewritten
    assert _loose_objects(repo) == 0
    assert git(repo, "fsck", "--connectivity-only", "--no-dangling") == ""
    assert len(mlci_json(repo, "runs")) == 2300


def test_repack_is_skipped_when_little_is_loose(repo: Path) -> None:
    append_runs(repo, 50, batch=50)
    git(repo, "repack", "-a", "-d", "-q")
    append_runs(repo, 3)
    loose, packs = _loose_objects(repo), _packs(repo)
    assert 0 < loose < 256
    assert repack(Repo.find(repo)) is False
    assert _loose_objects(repo) == loose and _packs(repo) == packs


ARG_LIMIT = 12  # arguments per process in this test (the system's ARG_MAX, made small)


@pytest.fixture
def small_arg_max(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes with more than ARG_LIMIT arguments fail as exec does past ARG_MAX (E2BIG), and
    mlci's paths per `git ls-tree` are lowered to fit: a ledger of a few hundred records then
    stands for one of millions."""
    real = gitio._spawn  # where every git process starts

    def limited(args: Any, *rest: Any, **kwargs: Any) -> Any:
        if len(args) + 1 > ARG_LIMIT:  # argv is `git` and args
            raise OSError(errno.E2BIG, "Argument list too long")
        return real(args, *rest, **kwargs)

    monkeypatch.setattr(gitio, "_spawn", limited)
    monkeypatch.setattr(gitio, "PATHS_PER_CALL", 4, raising=False)


def test_has_ids_past_the_argument_limit(repo: Path, small_arg_max: None) -> None:
    store = LedgerStore(Repo.find(repo))
    ids = append_runs(repo, 40, batch=40)
    assert store.has_ids([*ids, "a" * 26]) == set(ids)
    compact(store)
    late = append_runs(repo, 3, batch=3)
    assert store.has_ids([*ids, *late, "a" * 26]) == {*ids, *late}


def test_a_pull_of_segments_past_the_argument_limit(clone_of: Callable[[str], Path], small_arg_max: None) -> None:
    """A union with another clone's segments checks every record of each segment against this
    tree (`_union_segment`): one path per record, past the limit with 10+ records a segment."""
    a, b = clone_of("a"), clone_of("b")
    append_runs(a, 400, batch=400)
    push(a)
    pull(b)
    mine = append_runs(b, 1, prefix="b")  # b's own record: a merge, not a fast-forward
    compact(LedgerStore(Repo.find(a)))
    push(a)
    pull(b)
    assert event_files(b) == mine
    assert len(mlci_json(b, "runs")) == 401
