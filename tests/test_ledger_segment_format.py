"""The residual segment layout (issue 19, a compacted ledger under 300 bytes per run): a run's
body is stored less what its typed columns give back, and read back byte for byte through
`segment_read`; a segment whose columns or residuals say something else than its bodies, or
whose name is not the hash of them, is refused by fsck and by a pull."""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import git, run_mlci
from ledger_helpers import make_run, query
from test_ledger_verify import _push_planted, pair  # noqa: F401 - the fixture

from mlci_tui.errors import CheckFailed
from mlci_tui.gitio import Repo
from mlci_tui.ledger import events, records, sync
from mlci_tui.ledger.compact import compact, typed_connection, typed_table
from mlci_tui.ledger.segment_read import LAYOUT_KEY, RESIDUAL, segment_bodies, table_bodies
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep.events import sweep_event, trial_event, trial_id

HEX = "0123456789abcdef" * 2 + "01234567"
VIEWS = (
    "SELECT run_id, name, commit, started, params, metrics FROM runs ORDER BY run_id",
    "SELECT * FROM params ORDER BY run_id, file, name",
    "SELECT * FROM metrics ORDER BY run_id, file, name",
    "SELECT * FROM steps ORDER BY run_id, file, name, step",
    "SELECT id, type, v, time, target, body FROM events ORDER BY id",
)


def _odd_records() -> tuple[list[dict[str, Any]], list[str]]:
    """Records whose values a typed column may not hold exactly, and the ids of the invalid ones
    (fsck refuses them loose or compacted; compaction keeps their bytes all the same)."""
    t = "2024-01-05T12:21:20.000000Z"
    plain = make_run(name="plain", params={"lr": 0.1, "opt": "sgd"}, metrics={"acc": 0.5}, time=t, commit=HEX)
    plain.update(tree=HEX[::-1], patch_id=HEX, branch="main", author="bench <b@x>", message="try lr")
    mixed = make_run(
        name="résumé ✓ Zoë",
        time="2024-01-05T12:21:20Z",  # no fraction: the column writes one, so the body keeps it
        params={"depth": 3, "big": 2**63, "tiny": 1e-300, "neg": -0.0, "flag": True, "none": None},
        metrics={"int": 1, "sum": 0.1 + 0.2, "tiny": 1e-300, "huge": 1e16, "nan": math.nan, "inf": -math.inf},
        steps=[
            ["m.tsv", "loss", 0, 1.5],
            ["m.tsv", "loss", 1, None],
            ["m.tsv", "loss", 2, 3],
            ["m.tsv", "acc", 3, math.nan],
        ],
        commit=HEX,  # no patch_id, tree or author: absent keys stay absent
    )
    nested = make_run(name="nested", params={"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "lr": "0.5", "n": "12"})
    two_files = make_run(name="two files", metrics={"acc": 0.25}, time="2024-02-01T00:00:00.123456Z")
    two_files["params"] = {"params.yaml": {"lr": 0.3}, "other.yaml": {"lr": 0.4, "seed": 1}}
    two_files["metrics"]["eval.json"] = {"acc": 0.75}
    floats = make_run(
        name="floats", metrics={f"m{i}": v for i, v in enumerate([5e-324, 1.7976931348623157e308, 1 / 3])}
    )
    stringy = make_run(name="a string metric", metrics={"acc": 0.5})
    stringy["metrics"]["metrics.json"]["grade"] = "high"
    other = make_run(name="its run_id is not its id", metrics={"acc": 0.1})
    other["run_id"] = records.new_id()
    redacted = make_run(name="redacted", metrics={"acc": 0.9})
    sweep = sweep_event("s", {"method": "grid", "metric": "acc"}, base=HEX, base_kind="commit", seed=1)
    tid = trial_id(sweep["id"], 0)
    notes = [
        events.tag(plain["id"], "best"),
        events.note(mixed["id"], "ünïcode note"),
        events.promote(plain["id"], "prod"),
        events.tag(redacted["id"], "gone"),
        events.redact(redacted["id"], "wrong data"),
        sweep,
        trial_event(sweep["id"], tid, "queued", number=0, params={"lr": 0.1}),
        trial_event(sweep["id"], tid, "done", run_id=plain["id"], value=0.5),
    ]
    runs = [plain, mixed, nested, two_files, floats, stringy, other, redacted]
    runs += [make_run(name=f"bulk {i}", params={"i": i}, metrics={"acc": i / 7}, time=t, commit=HEX) for i in range(20)]
    return runs + notes, [stringy["id"], other["id"]]


def _event_bodies(store: LedgerStore) -> dict[str, bytes]:
    tip = store.tip()
    assert tip is not None
    files = [e for e in store.entries(tip) if e.path.startswith("events/")]
    blobs = store.repo.cat_blobs([e.oid for e in files])
    return {e.path.rsplit("/", 1)[-1].removesuffix(".json"): blobs[e.oid] for e in files}


def _segments(store: LedgerStore) -> dict[str, bytes]:
    tip = store.tip()
    assert tip is not None
    found = [e for e in store.entries(tip) if e.path.endswith(".parquet")]
    blobs = store.repo.cat_blobs([e.oid for e in found])
    return {e.path: blobs[e.oid] for e in found}


def _views(root: Path) -> list[list[str]]:
    return [[repr(row) for row in query(root, sql)] for sql in VIEWS]  # repr: NaN equals NaN


def _compacted(repo: Path) -> tuple[LedgerStore, dict[str, bytes], list[str]]:
    """The odd records appended and compacted; what their event files held (the redacted record
    and its tag dropped, as compaction drops them); the ids fsck refuses."""
    store = LedgerStore(Repo.find(repo))
    recs, invalid = _odd_records()
    store.append(recs)
    expected = _event_bodies(store)
    redacted = next(r["target"] for r in recs if r["type"] == "redact")
    expected = {
        k: v
        for k, v in expected.items()
        if k != redacted and (records.loads(v).get("target") != redacted or records.loads(v)["type"] == "redact")
    }
    assert compact(store) == len(expected)
    return store, expected, invalid


def test_residual_bodies_give_back_every_body_byte_for_byte(repo: Path) -> None:
    store, expected, invalid = _compacted(repo)
    segments = _segments(store)
    assert segment_bodies(segments.values(), None) == expected
    stored: dict[str, str] = {}
    lists: dict[str, tuple[Any, ...]] = {}
    for data in segments.values():
        table = pq.read_table(io.BytesIO(data))
        assert table.schema.metadata[LAYOUT_KEY] == RESIDUAL
        stored.update(zip(table.column("id").to_pylist(), table.column("body").to_pylist()))
        rows = zip(*(table.column(c).to_pylist() for c in ("id", "params", "metrics", "param_map", "metric_map")))
        lists.update((row[0], row[1:]) for row in rows)
    by_name = {records.loads(body).get("name"): rid for rid, body in expected.items()}
    # a run of one params (metrics) file: its map holds the values, its list is not stored
    assert lists[by_name["plain"]][:2] == (None, None) and None not in lists[by_name["plain"]][2:]
    assert None not in lists[by_name["two files"]]  # two files: the lists hold the per-file rows
    assert stored[by_name["plain"]] == "{}"  # every key given back by a column
    assert stored[by_name["bulk 3"]] == "{}"
    residual = json.loads(stored[by_name["résumé ✓ Zoë"]])  # what no column holds exactly stays
    assert set(residual) == {"metrics", "params", "time", "started", "ended", "steps"}
    assert set(json.loads(stored[by_name["two files"]])) == {"commit", "metrics", "params"}  # null, two files
    for rid, body in expected.items():
        if records.loads(body)["type"] != "run":
            assert stored[rid] == body.decode()  # the cache reads these bodies: kept whole
    proc = run_mlci(repo, "ledger", "fsck")
    assert proc.returncode == 1 and _invalid_rows(proc.stdout) == len(invalid), proc.stdout
    assert all(rid in proc.stdout for rid in invalid), proc.stdout


def _invalid_rows(fsck: str) -> int:
    """How many rows fsck names as invalid records, over every segment."""
    return sum(int(n) for n in re.findall(r"(\d+) invalid record", fsck))


def test_a_cold_rebuild_of_residual_segments_answers_as_the_event_files(repo: Path) -> None:
    store = LedgerStore(Repo.find(repo))
    recs, _invalid = _odd_records()
    store.append(recs)
    loose = _views(repo)
    assert compact(store)
    compacted = _views(repo)
    assert compacted == loose


def test_re_compaction_of_residual_segments_with_new_loose_files(repo: Path) -> None:
    store, expected, _invalid = _compacted(repo)
    first = set(_segments(store))
    late = [make_run(name=f"late {i}", params={"i": i}, metrics={"acc": i / 3, "n": i}) for i in range(12)]
    late.append(events.note(late[0]["id"], "later"))
    store.append(late)
    expected.update({r["id"]: records.dumps(r) for r in late})
    loose = _views(repo)
    assert compact(store) == len(expected)
    segments = _segments(store)
    assert segment_bodies(segments.values(), None) == expected
    assert set(segments) != first and len({p.split("/")[1][0] for p in segments}) == len(segments)  # one per bucket
    assert _views(repo) == loose
    assert compact(store) == len(expected) and set(_segments(store)) == set(segments)  # nothing to do


def test_two_clones_compacting_the_same_records_write_the_same_segments(tmp_path: Path) -> None:
    recs, _invalid = _odd_records()
    trees = []
    for name in ("one", "two"):
        root = tmp_path / name
        git(tmp_path, "init", "-q", str(root))
        store = LedgerStore(Repo.find(root))
        store.append(list(reversed(recs)) if name == "two" else recs)
        assert compact(store)
        trees.append(git(root, "ls-tree", "-r", "refs/mlci/ledger", "--", "segments/"))
    assert trees[0] == trees[1] and ".parquet" in trees[0]


def _forged(data: bytes, column: str, change: Callable[[list[Any], Any], list[Any]]) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    index = table.column_names.index(column)
    values = change(table.column(column).to_pylist(), table)
    table = table.set_column(index, column, pa.array(values, table.schema.field(column).type))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _first_residual(bodies: list[Any]) -> int:
    return next(n for n, b in enumerate(bodies) if b is not None and not b.endswith("\n"))


def _metric_changed(values: list[Any], _table: Any) -> list[Any]:
    n = next(n for n, v in enumerate(values) if v)
    values[n] = [(k, v + 1.0) for k, v in values[n]]
    return values


def _residual_extended(bodies: list[Any], _table: Any) -> list[Any]:
    n = _first_residual(bodies)
    bodies[n] = '{"aaa":1,' + bodies[n][1:] if bodies[n] != "{}" else '{"aaa":1}'
    return bodies


def _residual_naming_a_column(bodies: list[Any], _table: Any) -> list[Any]:
    n = _first_residual(bodies)
    record = json.loads(bodies[n])
    record["type"] = "run"  # what the type column gives back: compaction never stores it
    bodies[n] = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return bodies


def _residual_not_canonical(bodies: list[Any], _table: Any) -> list[Any]:
    n = _first_residual(bodies)
    bodies[n] = bodies[n].replace("{", "{ ", 1)
    return bodies


def _stored_whole(bodies: list[Any], table: Any) -> list[Any]:
    n = _first_residual(bodies)
    bodies[n] = table_bodies(table)[n]  # the body itself, which its residual gives back
    return bodies


def _tag_unterminated(bodies: list[Any], table: Any) -> list[Any]:
    n = table.column("type").to_pylist().index("tag")
    bodies[n] = bodies[n].removesuffix("\n")  # a record that is no run is always stored whole
    return bodies


def _applies(data: bytes, column: str, change: Callable[[list[Any], Any], list[Any]]) -> bool:
    """Whether this segment holds a row the change can be made to."""
    table = pq.read_table(io.BytesIO(data))
    try:
        change(table.column(column).to_pylist(), table)
    except (StopIteration, ValueError):
        return False
    return True


TAMPERED = {
    "a metric_map value": ("metric_map", _metric_changed, "its name is not the hash of its ids and bodies"),
    "a key added to a residual": ("body", _residual_extended, "its name is not the hash of its ids and bodies"),
    "a residual naming a key its columns hold": ("body", _residual_naming_a_column, "not as compaction writes them"),
    "a residual not canonical": ("body", _residual_not_canonical, "not as compaction writes them"),
    "a run's body stored whole": ("body", _stored_whole, "not as compaction writes them"),
    "a tag's body without its newline": ("body", _tag_unterminated, "its name is not the hash"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERED))
def test_fsck_refuses_a_segment_whose_columns_or_residuals_were_changed(repo: Path, kind: str) -> None:
    store = LedgerStore(Repo.find(repo))
    runs = [make_run(name=f"r{i}", params={"lr": i / 10}, metrics={"acc": i / 7}) for i in range(40)]
    store.append([*runs, *(events.tag(r["id"], "t") for r in runs[:20])])
    assert compact(store) == 60
    assert run_mlci(repo, "ledger", "fsck").returncode == 0
    column, change, reason = TAMPERED[kind]
    path, data = next((p, d) for p, d in _segments(store).items() if _applies(d, column, change))
    tip = store.tip()
    assert tip is not None
    entries = store.entries(tip)
    forged = _forged(data, column, change)
    assert store.replace_tree([(path, forged)], "forge", tip, keep=[e for e in entries if e.path != path])
    proc = run_mlci(repo, "ledger", "fsck")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{path}: " in proc.stdout and reason in proc.stdout, proc.stdout


@pytest.mark.parametrize("kind", ["a metric_map value", "a residual naming a key its columns hold"])
def test_a_pull_refuses_a_tampered_residual_segment(
    pair: tuple[Path, Path, str],  # noqa: F811 - the fixture
    tmp_path: Path,
    kind: str,
) -> None:
    """The forged segment (and its `.ids`) is compacted in a scratch repository and planted in
    clone `a`'s ledger as a remote that wrote it would; `b`'s pull refuses it."""
    a, b, _run_id = pair
    scratch = tmp_path / "scratch"
    git(tmp_path, "init", "-q", str(scratch))
    store = LedgerStore(Repo.find(scratch))
    store.append([make_run(name=f"r{i}", metrics={"acc": i / 7}) for i in range(30)])
    assert compact(store)
    column, change, reason = TAMPERED[kind]
    path, data = next((p, d) for p, d in _segments(store).items() if pq.read_metadata(io.BytesIO(d)).num_rows > 1)
    ids = path.removesuffix(".parquet") + ".ids"
    listed = git(scratch, "cat-file", "blob", f"refs/mlci/ledger:{ids}").encode()
    _push_planted(a, {path: _forged(data, column, change), ids: listed})
    before = git(b, "rev-parse", "refs/mlci/ledger").strip()
    with pytest.raises(CheckFailed, match="refused, nothing merged") as refused:
        sync.pull(Repo.find(b), "origin", force_merge=True)
    assert path in str(refused.value) and reason in str(refused.value), str(refused.value)
    assert git(b, "rev-parse", "refs/mlci/ledger").strip() == before


def test_a_typed_segment_of_the_layout_before_residuals_is_read_checked_and_rewritten(repo: Path) -> None:
    """A typed segment with full bodies and both lists (what compaction wrote before residuals)
    is read by a cold rebuild and by a union, passes fsck, and the next compaction rewrites it."""
    from mlci_tui.ledger.cache import SEGMENT_STORED_TYPED

    store, expected, _invalid = _compacted(repo)  # its invalid records: fsck's only complaint
    good = [make_run(name=f"r{i}", params={"lr": i / 10}, metrics={"acc": i / 7}) for i in range(8)]
    store.append(good)
    loose_views = _views(repo)
    expected.update({r["id"]: records.dumps(r) for r in good})
    assert compact(store)
    tip = store.tip()
    assert tip is not None
    entries = store.entries(tip)
    older = []
    con = typed_connection()
    for path, data in _segments(store).items():
        bodies = [b.decode() for b in segment_bodies([data], None).values()]
        table = typed_table(con, bodies, SEGMENT_STORED_TYPED)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        older.append((path, buf.getvalue()))
    con.close()
    assert store.replace_tree(
        older, "an older mlci's segments", tip, keep=[e for e in entries if e.path not in dict(older)]
    )
    assert segment_bodies(_segments(store).values(), None) == expected
    assert _views(repo) == loose_views
    proc = run_mlci(repo, "ledger", "fsck")
    assert _invalid_rows(proc.stdout) == len(_invalid) and "not as compaction" not in proc.stdout, proc.stdout
    assert compact(store) == len(expected)
    for data in _segments(store).values():
        assert pq.read_schema(io.BytesIO(data)).metadata[LAYOUT_KEY] == RESIDUAL
    assert segment_bodies(_segments(store).values(), None) == expected
    assert _views(repo) == loose_views


def _stale_flipped(values: list[Any], _table: Any) -> list[Any]:
    n = next(n for n, v in enumerate(values) if v is not None)
    values[n] = not values[n]  # a column the rebuild does not read: only the typed check sees it
    return values


def test_segments_checked_by_forked_workers_say_what_the_check_in_this_process_says(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PARALLEL_SEGMENT_BYTES each segment is checked whole by a forked worker (a new
    clone's pull of a compacted ledger): the same problems and warnings, in the same order,
    and every segment checked in a worker, its typed columns on the worker's own DuckDB."""
    from mlci_tui.ledger import verify

    store, _expected, invalid = _compacted(repo)
    path, data = next(
        (p, d)
        for p, d in _segments(store).items()
        if _applies(d, "stale", _stale_flipped)
        and not set(invalid) & set(pq.read_table(io.BytesIO(d))["id"].to_pylist())
    )  # a segment of valid records: its typed columns are checked
    tip = store.tip()
    assert tip is not None
    keep = [e for e in store.entries(tip) if e.path != path]
    assert store.replace_tree([(path, _forged(data, "stale", _stale_flipped))], "forge", tip, keep=keep)
    tip = store.tip()
    assert tip is not None
    real = verify._segment_problem

    def naming_its_process(*args: Any, **kw: Any) -> str | None:
        args[2].append(f"checked in {os.getpid()}")  # the warnings
        return real(*args, **kw)

    monkeypatch.setattr(verify, "_segment_problem", naming_its_process)
    monkeypatch.setattr(verify, "PARALLEL_SEGMENT_BYTES", 10**12)
    alone = verify.check_files(store, store.entries(tip), tip)
    monkeypatch.setattr(verify, "PARALLEL_SEGMENT_BYTES", 0)
    monkeypatch.setattr(verify.os, "cpu_count", lambda: 2)
    forked = verify.check_files(store, store.entries(tip), tip)
    segments = len(_segments(store))
    assert segments >= 2
    assert [w for w in alone.warnings if "checked in" not in w] == [w for w in forked.warnings if "checked in" not in w]
    assert [w for w in alone.warnings if "checked in" in w] == [f"checked in {os.getpid()}"] * segments
    workers = {w for w in forked.warnings if "checked in" in w}
    assert (
        len([w for w in forked.warnings if "checked in" in w]) == segments
        and f"checked in {os.getpid()}" not in workers
    )
    assert forked.problems == alone.problems
    reasons = dict(alone.problems)
    assert reasons[path] == "its stale column differs from its bodies in 1 row(s)", reasons
    assert sum("invalid record(s)" in why for why in reasons.values()) >= 1
    assert sum(why.count("row ") for why in reasons.values() if "invalid record" in why) == len(invalid)
