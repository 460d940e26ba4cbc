"""Compaction at scale (issue 19): deterministic segments per id bucket, incremental rewrites,
a merge that drops loose copies a segment holds, automatic compaction, and the cache build
streaming event files in pack order."""

from __future__ import annotations

import os
import subprocess
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


def _blob(root: Path, oid: str) -> bytes:
    return subprocess.run(["git", "cat-file", "blob", oid], cwd=root, capture_output=True, check=True).stdout


def _views(root: Path) -> dict[str, list[str]]:
    """Every view of the cache, rebuilt from scratch, as sorted text rows (NaN as text)."""
    import duckdb

    from mlci_tui.ledger.cache import LedgerCache

    (root / ".git" / "mlci" / "cache.duckdb").unlink(missing_ok=True)
    out = {}
    with LedgerCache(Repo.find(root)).connect() as con:
        assert isinstance(con, duckdb.DuckDBPyConnection)
        for view in ("runs", "params", "metrics", "steps", "tags", "notes", "promotions", "events", "mlflow_tags"):
            out[view] = sorted(repr(row) for row in con.execute(f"SELECT * FROM {view}").fetchall())
        out["names"] = sorted(repr(row) for row in con.execute("SELECT * FROM names").fetchall())
    return out


def _varied_ledger(root: Path) -> list[str]:
    """Runs with what the typed columns must carry: names in two files, NaN and infinities, text,
    booleans, lists, steps, an MLflow import's tags; a tag, a note, a promotion, a redaction."""
    store = LedgerStore(Repo.find(root))
    runs = []
    for k in range(24):
        run = make_run(
            name=f"r{k}",
            time=f"2025-01-0{1 + k % 9}T10:00:00.{k:06d}Z",
            params={"lr": 0.1 * k, "opt": "adam", "flag": True, "none": None, "list": [1, 2], "nan": float("nan")},
            metrics={"acc": k / 24, "loss": float("inf") if k == 3 else 1 - k / 24},
            steps=[["log.csv", "loss", s, 0.5 * s] for s in range(k % 3)],
        )
        if k % 5 == 0:  # `acc` and `lr` in two files: file:name keys
            run["params"]["other.yaml"] = {"lr": 1, "only": "x"}
            run["metrics"]["eval.json"] = {"acc": 0.5}
        if k % 7 == 0:
            run.update(source="import:mlflow", params={"MLmodel": {"lr": "1e-05", "bs": "32"}})
            run["import"] = {"tags": {"mlflow.user": "me", "team": "vision"}}
        runs.append(run)
    store.append(runs)
    ids = [r["id"] for r in runs]
    store.append(
        [
            records.envelope("tag", {"target": ids[1], "name": "best", "remove": False}),
            records.envelope("note", {"target": ids[2], "text": "hi"}),
            records.envelope(
                "promote", {"target": ids[3], "stage": "prod", "model": None, "model_hash": None, "by": "x"}
            ),
            records.envelope("redact", {"target": ids[4], "reason": None}),
            records.envelope("note", {"target": ids[4], "text": "gone with its run"}),
        ]
    )
    return ids


def test_segments_carry_typed_columns_and_the_cache_reads_the_same_from_them(repo: Path) -> None:
    """A cold rebuild copies a segment's typed columns instead of parsing its bodies: every view
    is the same as from the event files."""
    import io

    import pyarrow.parquet as pq

    from mlci_tui.ledger.cache import TYPED_NAMES

    _varied_ledger(repo)
    loose = _views(repo)
    assert compact(LedgerStore(Repo.find(repo))) == 27  # the redacted run and its note dropped
    assert event_files(repo) == []
    for path, oid in _segments(repo).items():
        if path.endswith(".parquet"):
            data = _blob(repo, oid)
            assert pq.read_schema(io.BytesIO(data)).names == TYPED_NAMES
    compacted = _views(repo)
    assert compacted == loose
    assert any("other.yaml:lr" in row for row in compacted["runs"]) and compacted["mlflow_tags"]


def test_a_segment_whose_typed_columns_disagree_with_its_bodies_is_refused(repo: Path) -> None:
    """Readers trust the typed columns, so fsck (and a pull, through the same rules) checks them."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    append_runs(repo, 6, batch=6)
    store = LedgerStore(Repo.find(repo))
    compact(store)
    assert run_mlci(repo, "ledger", "fsck").returncode == 0  # as compaction wrote them: they agree
    path, oid = next((p, o) for p, o in _segments(repo).items() if p.endswith(".parquet"))
    table = pq.read_table(io.BytesIO(_blob(repo, oid)))
    # `datasets` is no column a residual body is rebuilt from (a forged `name` changes the rebuilt
    # bodies, and so the segment's name: test_ledger_segment_format)
    forged = table.set_column(
        table.column_names.index("datasets"),
        "datasets",
        pa.array(['{"forged":1}'] * table.num_rows, table.schema.field("datasets").type),
    )
    assert pc.all(pc.equal(forged.column("body"), table.column("body"))).as_py()
    buf = io.BytesIO()
    pq.write_table(forged, buf)
    tip = store.tip()
    assert tip is not None
    keep = [e for e in store.entries(tip) if e.path != path]
    assert store.replace_tree([(path, buf.getvalue())], "forge", tip, keep=keep)
    proc = run_mlci(repo, "ledger", "fsck")
    assert proc.returncode == 1, proc.stderr
    assert f"{path}: its datasets column differs from its bodies" in proc.stdout


@pytest.mark.parametrize("fmt", ["--json", "--csv"])
def test_the_listing_memo_takes_new_runs_without_a_query(repo: Path, fmt: str) -> None:
    """Right after a capture the memoised `runs --json/--csv` gets the new runs' rows in front,
    through the one formatter, without DuckDB (the cache stays at its tip); byte for byte what
    the query prints. A run whose values the memo cannot render exactly goes to the query."""
    store = LedgerStore(Repo.find(repo))
    store.append([make_run(time=f"2025-01-01T10:00:0{k}.000001Z", params={"lr": 0.1 * k}) for k in range(3)])
    assert run_mlci(repo, "runs", "--limit", "1").returncode == 0  # the cache (no cache: the records answer)
    first = run_mlci(repo, "runs", fmt)
    assert first.returncode == 0
    hint = repo / ".git" / "mlci" / "cache.tip"
    cached_tip = hint.read_text()
    new = [
        make_run(
            time="2025-02-01T10:00:00Z",
            name="multi\nline",
            params={"lr": 0.5, "opt": "adam", "flag": True, "n": 7, "wd": 1e-05, "big": 1e20, "tiny": 2.5e-300},
            metrics={"acc": 0.9, "nan": float("nan")},
        ),
        make_run(time="2025-02-01T10:00:00Z", params={"lr": 0.25}),  # a tie: the run id decides
    ]
    new[1]["params"]["other.yaml"] = {"lr": 1}  # lr in two files: file:name keys
    store.append(new)
    spliced = run_mlci(repo, "runs", fmt)
    assert spliced.returncode == 0
    assert hint.read_text() == cached_tip  # no query ran: the cache was not refreshed
    for memo in (repo / ".git" / "mlci").glob("runs-listing.*"):
        memo.unlink()
    assert spliced.stdout == run_mlci(repo, "runs", fmt).stdout  # what the query prints
    store.append([make_run(time="2025-03-01T10:00:00Z", params={"grid": [1, 2]})])  # a list: text DuckDB spells
    cached_tip = hint.read_text()
    queried = run_mlci(repo, "runs", fmt)
    assert hint.read_text() != cached_tip and "grid" in queried.stdout
    old = make_run(time="2024-01-01T10:00:00Z")  # sorts after the memo's first row: the query places it
    store.append([old])
    assert old["id"] in run_mlci(repo, "runs", fmt).stdout
