"""One repository's ledger: appends, canonical records, the cache, and run references.

Real git repositories and the real `mlci` process; records are built the way mlci builds
them (`records.envelope`) and written through `LedgerStore.append`.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import duckdb
import pytest
from conftest import commit, git, metrics_json, run_mlci
from ledger_helpers import (
    append_runs,
    assert_clean_exit,
    event_files,
    ledger_tip,
    make_run,
    mlci_json,
    query,
    run_ids,
)

from mlci_tui.errors import InputError, MlciError
from mlci_tui.gitio import Repo
from mlci_tui.ledger import events, records
from mlci_tui.ledger.cache import CACHE_NAME, LedgerCache
from mlci_tui.ledger.compact import compact
from mlci_tui.ledger.resolve import Resolved, resolve_run
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore


def _store(root: Path) -> LedgerStore:
    return LedgerStore(Repo.find(root))


# ------------------------------------------------------------------ storage


def test_append_writes_one_commit_per_call_and_never_touches_the_work_tree(repo: Path) -> None:
    head = commit(repo, {"params.yaml": "lr: 0.1\n", "notes.txt": "hi\n"}, "code")
    (repo / "notes.txt").write_text("edited, not staged\n")
    (repo / "new.txt").write_text("staged\n")
    git(repo, "add", "new.txt")
    status = git(repo, "status", "--porcelain")
    index = git(repo, "ls-files", "-s")
    store = _store(repo)
    single = make_run(name="one")
    store.append([single])
    batch = [make_run(name=f"b{i}") for i in range(25)]
    store.append(batch)
    assert git(repo, "rev-list", "--count", LEDGER_REF).strip() == "2"
    assert set(event_files(repo)) == {single["id"], *(r["id"] for r in batch)}
    # sharded: each record sits under the first two characters of its id
    for path in git(repo, "ls-tree", "-r", "--name-only", LEDGER_REF).split():
        name = path.rsplit("/", 1)[-1]
        assert path == f"events/{name[:2]}/{name}"
    assert store.has_ids([single["id"], batch[3]["id"], records.new_id()]) == {single["id"], batch[3]["id"]}
    # HEAD, the index and the work tree are as they were
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "status", "--porcelain") == status
    assert git(repo, "ls-files", "-s") == index


def test_an_invalid_record_in_a_batch_writes_nothing(repo: Path) -> None:
    store = _store(repo)
    good = make_run()
    bad = dict(make_run(), id="NOT-AN-ID")
    with pytest.raises(MlciError, match="invalid id"):
        store.append([good, bad])
    with pytest.raises(MlciError, match="lacks v or time"):
        store.append([dict(make_run(), v=None)])
    assert ledger_tip(repo) is None


def test_a_stale_ref_lock_left_by_a_killed_writer_is_cleared(repo: Path) -> None:
    store = _store(repo)
    first = append_runs(repo, 1)
    lock = Repo.find(repo).common_dir / f"{LEDGER_REF}.lock"
    lock.write_text("")  # what a writer SIGKILLed inside `git fast-import` leaves behind
    long_ago = time.time() - 60
    os.utime(lock, (long_ago, long_ago))
    second = make_run()
    store.append([second])
    assert not lock.exists()
    assert set(event_files(repo)) == {*first, second["id"]}
    # the fast-forward path of a union merge (update-ref) recovers the same way
    other = git(repo, "commit-tree", "-p", ledger_tip(repo) or "", "-m", "x", f"{LEDGER_REF}^{{tree}}").strip()
    lock.write_text("")
    os.utime(lock, (long_ago, long_ago))
    assert store.union_merge(other, "merge") == other
    assert ledger_tip(repo) == other


def _refuse(constant: str) -> float:
    raise ValueError(f"non-standard JSON constant {constant}")


def test_canonical_records_keep_nan_and_infinity(repo: Path) -> None:
    run = make_run(
        metrics={"loss": math.nan, "up": math.inf, "down": -math.inf, "acc": 0.25},
        steps=[["metrics.json", "loss", 0, 1.0], ["metrics.json", "loss", 1, math.nan]],
    )
    _store(repo).append([run])
    raw = git(repo, "cat-file", "-p", f"{LEDGER_REF}:{records.record_path(run['id'])}")
    assert '"loss":{"$float":"NaN"}' in raw
    assert '"up":{"$float":"Infinity"}' in raw and '"down":{"$float":"-Infinity"}' in raw
    assert "NaN," not in raw and raw.endswith("}\n") and raw.count("\n") == 1
    json.loads(raw, parse_constant=_refuse)  # strict JSON: no bare NaN or Infinity
    assert records.dumps(records.loads(raw)) == raw.encode()  # canonical: bytes survive a round trip

    def values() -> dict[str, float]:
        return dict(query(repo, "SELECT name, value FROM metrics WHERE run_id = ?", [run["id"]]))

    for _phase in ("events", "compacted"):
        got = values()
        assert math.isnan(got["loss"]) and got["up"] == math.inf and got["down"] == -math.inf
        assert got["acc"] == 0.25
        steps = query(repo, "SELECT step, value FROM steps WHERE run_id = ? ORDER BY step", [run["id"]])
        assert steps[0] == (0, 1.0) and math.isnan(steps[1][1])
        compact(_store(repo))
    shown = mlci_json(repo, "show", run["id"][:8])
    assert shown["metrics"] == {"acc": 0.25, "down": "-Infinity", "loss": "NaN", "up": "Infinity"}


def test_captured_non_standard_json_numbers_survive(repo: Path) -> None:
    sha = commit(
        repo,
        {"params.yaml": "lr: 0.1\n", "metrics.json": '{"loss": NaN, "best": Infinity, "worst": -Infinity}\n'},
        "diverged",
    )
    assert_clean_exit(run_mlci(repo, "capture"))
    run_id = records.derived_id("commit", sha)
    raw = git(repo, "cat-file", "-p", f"{LEDGER_REF}:{records.record_path(run_id)}")
    json.loads(raw, parse_constant=_refuse)
    got = dict(query(repo, "SELECT name, value FROM metrics WHERE run_id = ?", [run_id]))
    assert math.isnan(got["loss"]) and got["best"] == math.inf and got["worst"] == -math.inf


def test_unknown_event_types_and_fields_from_a_newer_mlci_are_skipped_with_a_notice(repo: Path) -> None:
    run = make_run(metrics={"acc": 0.9}, future_field={"nested": [1, 2]}, kind="experiment")
    future = records.envelope("sweep-v9", {"target": run["id"], "payload": {"anything": [1, {"x": None}]}})
    _store(repo).append([run, future, make_run(metrics={"acc": 0.8})])
    proc = run_mlci(repo, "runs", "--json")
    assert_clean_exit(proc)
    assert {r["run_id"] for r in json.loads(proc.stdout)} >= {run["id"]}
    assert "unknown type 'sweep-v9'" in proc.stderr
    assert "newer mlci" in proc.stderr
    assert query(repo, "SELECT metrics['acc'] FROM runs WHERE run_id = ?", [run["id"]]) == [(0.9,)]
    assert query(repo, "SELECT type FROM events WHERE id = ?", [future["id"]]) == [("sweep-v9",)]
    assert_clean_exit(run_mlci(repo, "show", run["id"]))


def test_cache_refreshes_incrementally_after_an_append(repo: Path) -> None:
    first = append_runs(repo, 3)
    out = run_mlci(repo, "sql", "select count(*) as n from runs", "--csv")
    assert_clean_exit(out)
    assert out.stdout.split() == ["n", "3"]
    # mark the cache file: an incremental refresh copies it and keeps the mark, a rebuild does not
    cache_file = Repo.find(repo).state_dir / CACHE_NAME
    con = duckdb.connect(str(cache_file))
    con.execute("CREATE TABLE test_marker AS SELECT 1 AS x")
    con.close()
    later = append_runs(repo, 2)
    assert set(run_ids(repo)) == {*first, *later}
    assert query(repo, "SELECT count(*) FROM test_marker") == [(1,)]
    # a tag (another event type) arrives the same way
    _store(repo).append([events.tag(later[0], "best")])
    assert query(repo, "SELECT run_id FROM tags WHERE name = 'best'") == [(later[0],)]
    assert query(repo, "SELECT count(*) FROM test_marker") == [(1,)]
    # compaction removes files from the tree: the cache is rebuilt, and still right
    compact(_store(repo))
    assert set(run_ids(repo)) == {*first, *later}
    with pytest.raises(duckdb.CatalogException):
        query(repo, "SELECT count(*) FROM test_marker")


# ------------------------------------------------------------------ run references


def _resolve(root: Path, ref: str) -> Resolved:
    """What `mlci show REF` resolves to, in this process."""
    repo = Repo.find(root)
    with LedgerCache(repo).connect() as con:
        return resolve_run(repo, con, ref)


def _with_prefix(prefix: str) -> str:
    return prefix + records.new_id()[len(prefix) :]


def test_run_reference_by_id_prefix_stage_and_ambiguity(repo: Path) -> None:
    twin_a, twin_b = _with_prefix("wxyza"), _with_prefix("wxyzb")
    lone = _with_prefix("qqqq")
    _store(repo).append([make_run(event_id=twin_a), make_run(event_id=twin_b), make_run(event_id=lone)])
    _store(repo).append([events.promote(twin_b, "deployed")])

    assert mlci_json(repo, "show", lone[:4])["run_id"] == lone  # 4 characters are enough
    assert _resolve(repo, lone) == Resolved(lone, "id")
    assert _resolve(repo, twin_a[:5]) == Resolved(twin_a, "id")
    assert _resolve(repo, "deployed") == Resolved(twin_b, "stage")

    proc = run_mlci(repo, "show", "wxyz")
    assert_clean_exit(proc, 2)
    assert "ambiguous" in proc.stderr
    assert twin_a[:12] in proc.stderr and twin_b[:12] in proc.stderr
    with pytest.raises(InputError, match="not a run id"):
        _resolve(repo, lone[:3])  # under 4 characters is not a prefix
    with pytest.raises(InputError, match="not a run id"):
        _resolve(repo, "no-such-thing")


def test_run_reference_by_commit_takes_the_newest_run_then_the_nearest_ancestor(repo: Path) -> None:
    first = commit(repo, {"params.yaml": "lr: 0.1\n"}, "first")
    tagged = commit(repo, {"params.yaml": "lr: 0.2\n"}, "second")
    git(repo, "tag", "v1")
    older = make_run(commit=tagged, kind="commit", time="2024-01-01T00:00:00.000000Z")
    newer = make_run(commit=tagged, kind="ci", time="2024-01-02T00:00:00.000000Z")
    other = make_run(commit=first, kind="commit", time="2024-01-03T00:00:00.000000Z")
    _store(repo).append([newer, older, other])

    proc = run_mlci(repo, "show", "v1", "--json")
    assert_clean_exit(proc)
    assert json.loads(proc.stdout)["run_id"] == newer["id"]
    assert "ancestor" not in proc.stderr
    for ref in (tagged, tagged[:9], "HEAD"):
        assert _resolve(repo, ref) == Resolved(newer["id"], "commit"), ref
    assert _resolve(repo, "HEAD~1") == Resolved(other["id"], "commit")

    # two commits later, with different trees and patches and no run: the nearest ancestor's
    commit(repo, {"README.md": "docs\n"}, "docs")
    head = commit(repo, {"README.md": "more docs\n"}, "more docs")
    proc = run_mlci(repo, "show", head, "--json")
    assert_clean_exit(proc)
    assert json.loads(proc.stdout)["run_id"] == newer["id"]
    assert "nearest ancestor" in proc.stderr and tagged[:12] in proc.stderr and "2 back" in proc.stderr

    # an unrelated history with no run anywhere is an error, not a guess
    git(repo, "checkout", "-q", "--orphan", "lonely")
    lonely = commit(repo, {"other.txt": "x\n"}, "lonely")
    with pytest.raises(InputError, match="no run recorded"):
        _resolve(repo, lonely)


def test_a_commit_stands_for_its_newest_run_with_metrics_else_its_newest_run(repo: Path) -> None:
    """docs/contracts.md: a `ci` run that recorded only params must not shadow the run with metrics."""
    sha = commit(repo, {"params.yaml": "lr: 0.1\n"}, "first")
    measured = make_run(commit=sha, kind="commit", metrics={"acc": 0.9}, time="2024-01-01T00:00:00.000000Z")
    params_only = make_run(commit=sha, kind="ci", params={"lr": 0.1}, time="2024-01-02T00:00:00.000000Z")
    _store(repo).append([measured, params_only])
    assert _resolve(repo, sha) == Resolved(measured["id"], "commit")
    proc = run_mlci(repo, "report", "--base", sha, "--format", "json")
    assert_clean_exit(proc)
    assert json.loads(proc.stdout)["base"]["run_id"] == measured["id"]
    # with no run that has metrics, the newest run it is
    other = commit(repo, {"params.yaml": "lr: 0.2\n"}, "second")
    _store(repo).append(
        [
            make_run(commit=other, kind="commit", params={"lr": 0.2}, time="2024-01-03T00:00:00.000000Z"),
            newest := make_run(commit=other, kind="ci", params={"lr": 0.2}, time="2024-01-04T00:00:00.000000Z"),
        ]
    )
    assert _resolve(repo, other) == Resolved(newest["id"], "commit")


def test_amended_commit_is_matched_to_its_run_by_tree(repo: Path) -> None:
    original = commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.8)}, "train")
    proc = run_mlci(repo, "capture")
    assert_clean_exit(proc)
    assert "captured" in proc.stdout
    run_id = records.derived_id("commit", original)
    git(repo, "commit", "-q", "--amend", "-m", "other")
    amended = git(repo, "rev-parse", "HEAD").strip()
    assert amended != original
    assert git(repo, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", f"{original}^{{tree}}")

    proc = run_mlci(repo, "show", amended, "--json")
    assert_clean_exit(proc)
    shown = json.loads(proc.stdout)
    assert shown["run_id"] == run_id and shown["commit"] == original
    assert shown["metrics"] == {"acc": 0.8}
    assert "same tree" in proc.stderr and original[:12] in proc.stderr


def test_rebased_commit_is_matched_to_its_run_by_patch_id(repo: Path) -> None:
    base = commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "base")
    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, {"params.yaml": "lr: 0.2\n", "metrics.json": metrics_json(acc=0.7)}, "better lr")
    assert_clean_exit(run_mlci(repo, "capture", base, feature))
    git(repo, "checkout", "-q", "main")
    commit(repo, {"README.md": "unrelated\n"}, "docs on main")
    git(repo, "checkout", "-q", "feature")
    git(repo, "rebase", "-q", "main")
    rebased = git(repo, "rev-parse", "HEAD").strip()
    assert rebased != feature
    assert git(repo, "rev-parse", "HEAD^{tree}") != git(repo, "rev-parse", f"{feature}^{{tree}}")

    # the patch-id match wins over the base commit's run, an ancestor with a run
    proc = run_mlci(repo, "show", rebased, "--json")
    assert_clean_exit(proc)
    shown = json.loads(proc.stdout)
    assert shown["run_id"] == records.derived_id("commit", feature)
    assert shown["metrics"] == {"acc": 0.7}
    assert "same patch-id" in proc.stderr and feature[:12] in proc.stderr
