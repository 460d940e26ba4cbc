"""The cache build's shape (issue 19, a cold rebuild in 3 s): a run's event row is not copied
into `event_rows` (the `events` view takes it from `run_rows`), and a fresh build reads the
`names` back from `run_rows`; both must answer as an incremental refresh does."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import run_mlci
from ledger_helpers import make_run, query

from mlci_tui.gitio import Repo
from mlci_tui.ledger import events
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.ledger.compact import compact
from mlci_tui.ledger.store import LedgerStore

EVENTS = "SELECT id, type, v, time, target, body IS NULL FROM events ORDER BY id"
NAMES = "SELECT kind, name FROM names ORDER BY kind, name"


def _first_half(store: LedgerStore) -> list[str]:
    """Runs (one with `lr` in two files: the `file:name` keys), a tag and a note."""
    runs = [
        make_run(name="a", params={"lr": 0.1, "depth": 3}, metrics={"acc": 0.5}),
        make_run(name="b", params={"lr": 0.2}, metrics={"acc": 0.6, "loss": 1.5}),
        make_run(name="c", metrics={"acc": 0.7}),
    ]
    runs[2]["params"] = {"params.yaml": {"lr": 0.3}, "other.yaml": {"lr": 0.4, "seed": 1}}
    store.append([*runs, events.tag(runs[0]["id"], "best"), events.note(runs[1]["id"], "looks fine")])
    return [r["id"] for r in runs]


def _second_half(store: LedgerStore, ids: list[str]) -> str:
    late = make_run(name="d", params={"batch": 64}, metrics={"f1": 0.9})
    store.append([late, events.redact(ids[1], "wrong data")])
    return str(late["id"])


def _fresh(root: Path) -> None:
    shutil.rmtree(Repo.find(root).state_dir / "cache.duckdb", ignore_errors=True)


def test_a_run_is_an_event_without_a_copy_in_event_rows(repo: Path) -> None:
    """Every run is one `events` row (type run, target itself, no body) from `run_rows`, in a
    fresh build and after an incremental refresh; a redacted run leaves both."""
    store = LedgerStore(Repo.find(repo))
    ids = _first_half(store)
    rows = query(repo, EVENTS)
    runs = [r for r in rows if r[1] == "run"]
    assert [r[0] for r in runs] == sorted(ids)
    assert all(r[2] == 1 and r[4] == r[0] and r[5] for r in runs)  # v 1, target itself, no body
    assert {r[1] for r in rows} == {"run", "tag", "note"}
    assert query(repo, "SELECT count(*) FROM event_rows WHERE type = 'run'") == [(0,)]
    assert query(repo, "SELECT count(*) FROM events WHERE type = 'tag' AND body IS NOT NULL") == [(1,)]

    late = _second_half(store, ids)  # the cache is refreshed from its tip: only the new records
    runs = [r[0] for r in query(repo, EVENTS) if r[1] == "run"]
    assert runs == sorted([ids[0], ids[2], late])  # the new run once, the redacted one gone
    assert query(repo, "SELECT count(*) FROM event_rows WHERE type = 'run'") == [(0,)]
    # the redacted run's note goes with it; the tombstone stays
    assert {r[1] for r in query(repo, EVENTS)} == {"run", "tag", "redact"}


def test_a_fresh_build_answers_as_an_incremental_refresh(repo: Path) -> None:
    """The same ledger built from scratch (names read back from `run_rows`) and built in two
    refreshes (names from the new records) gives the same names, events and runs; so does a
    cold rebuild from the compacted segments."""
    store = LedgerStore(Repo.find(repo))
    ids = _first_half(store)
    query(repo, "SELECT 1")
    _second_half(store, ids)
    sql = [NAMES, EVENTS, "SELECT run_id, params, metrics FROM runs ORDER BY run_id"]
    incremental = [query(repo, q) for q in sql]
    _fresh(repo)
    assert [query(repo, q) for q in sql] == incremental
    assert ("param", "other.yaml:lr") in incremental[0] and ("metric", "f1") in incremental[0]
    assert compact(store) == 5  # the redacted run and its note dropped: 3 runs, a tag, the tombstone
    _fresh(repo)
    LedgerCache(Repo.find(repo)).refresh()
    compacted = [query(repo, q) for q in sql]
    assert compacted[1:] == incremental[1:]
    # the redacted run's own key leaves `names` only once compaction drops the run
    assert compacted[0] == [n for n in incremental[0] if n != ("metric", "loss")]


def _per_value_views(root: Path) -> list[list[tuple[object, ...]]]:
    """The `params` and `metrics` views in full, NaN as its name (NaN equals nothing in Python)."""
    return [
        [tuple("NaN" if v != v else v for v in row) for row in query(root, sql)]
        for sql in (
            "SELECT run_id, file, name, value, num FROM params ORDER BY ALL",
            "SELECT run_id, file, name, value FROM metrics ORDER BY ALL",
        )
    ]


def test_a_run_of_one_file_keeps_its_values_in_its_maps_only(repo: Path) -> None:
    """`param_rows`/`metric_rows` hold only the runs whose maps cannot give their rows (values
    from several files; a param whose text reads as another number than it is, as a quoted
    "0.5"); the `params`/`metrics` views give every value, from the event files and from the
    segments alike."""
    store = LedgerStore(Repo.find(repo))
    plain = make_run(params={"lr": 0.1, "nan": float("nan"), "opt": "adam", "on": True}, metrics={"acc": 0.5})
    text = make_run(params={"lr": "0.5"}, metrics={"acc": 0.6})  # a string that reads as a number
    split = make_run(metrics={"acc": 0.7})
    split["params"] = {"params.yaml": {"lr": 0.3}, "other.yaml": {"seed": 1}}
    split["metrics"] = {"metrics.json": {"acc": 0.7}, "eval.json": {"acc": 0.8}}
    store.append([plain, text, split])
    kept = "SELECT DISTINCT run_id FROM {} ORDER BY run_id"
    expected_params = sorted([text["id"], split["id"]])
    assert [r[0] for r in query(repo, kept.format("param_rows"))] == expected_params
    assert [r[0] for r in query(repo, kept.format("metric_rows"))] == [split["id"]]
    loose = _per_value_views(repo)
    assert ("params.yaml", "lr", "0.5", None) in [r[1:] for r in loose[0] if r[0] == text["id"]]
    assert [r[1:] for r in loose[0] if r[0] == plain["id"]] == [
        ("params.yaml", "lr", "0.1", 0.1),
        ("params.yaml", "nan", "NaN", "NaN"),
        ("params.yaml", "on", "true", None),
        ("params.yaml", "opt", "adam", None),
    ]
    assert len(loose[1]) == 4
    assert compact(store) == 3
    _fresh(repo)
    assert _per_value_views(repo) == loose
    assert [r[0] for r in query(repo, kept.format("param_rows"))] == expected_params


def test_a_typed_segment_of_the_previous_layout_is_read_and_checked(repo: Path) -> None:
    """A typed segment written before `param_file`/`metric_file` (an older mlci's) is copied by a
    cold rebuild with every run's rows kept, passes `ledger fsck`, and compaction rewrites it."""
    import io

    import pyarrow.parquet as pq

    from mlci_tui.ledger.cache import SEGMENT_STORED_TYPED, TYPED_NAMES, TYPED_NAMES_BEFORE_FILES
    from mlci_tui.ledger.compact import typed_connection, typed_table
    from mlci_tui.ledger.segment_read import segment_bodies

    store = LedgerStore(Repo.find(repo))
    runs = [make_run(params={"lr": i / 10}, metrics={"acc": i / 100}) for i in range(6)]
    store.append(runs)
    expected = _per_value_views(repo)
    assert compact(store) == 6
    tip = store.tip()
    assert tip is not None
    entries = store.entries(tip)
    older = []
    con = typed_connection()
    for entry in entries:
        if entry.path.endswith(".parquet"):
            bodies = [b.decode() for b in segment_bodies(store.repo.cat_blobs([entry.oid]).values(), None).values()]
            # full bodies and both lists, as that layout stored them
            table = typed_table(con, bodies, SEGMENT_STORED_TYPED).select(TYPED_NAMES_BEFORE_FILES)
            buf = io.BytesIO()
            pq.write_table(table, buf)
            older.append((entry.path, buf.getvalue()))
    con.close()
    assert store.replace_tree(
        older, "an older mlci's segments", tip, keep=[e for e in entries if e.path not in dict(older)]
    )
    _fresh(repo)
    assert _per_value_views(repo) == expected
    assert query(repo, "SELECT count(DISTINCT run_id) FROM param_rows") == [(6,)]  # nothing said which file
    proc = run_mlci(repo, "ledger", "fsck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert compact(store) == 6  # rewritten in the current layout
    tip = store.tip()
    assert tip is not None
    for entry in store.entries(tip):
        if entry.path.endswith(".parquet"):
            assert pq.read_schema(io.BytesIO(store.repo.cat_blobs([entry.oid])[entry.oid])).names == TYPED_NAMES
    _fresh(repo)
    assert _per_value_views(repo) == expected
    assert query(repo, "SELECT count(*) FROM param_rows") == [(0,)]


def test_a_segment_whose_param_file_says_what_its_bodies_do_not_is_refused(repo: Path) -> None:
    """A reader takes a run's param values from its map where `param_file` is set: `ledger fsck`
    derives the column again from the bodies and refuses a segment that sets it where they do not."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    store = LedgerStore(Repo.find(repo))
    store.append([make_run(params={"lr": "0.5"}) for _ in range(4)])  # quoted numbers: no param_file
    assert compact(store) == 4
    assert run_mlci(repo, "ledger", "fsck").returncode == 0
    tip = store.tip()
    assert tip is not None
    entries = store.entries(tip)
    entry = next(e for e in entries if e.path.endswith(".parquet"))
    table = pq.read_table(io.BytesIO(store.repo.cat_blobs([entry.oid])[entry.oid]))
    assert table.column("param_file").null_count == table.num_rows
    forged = table.set_column(
        table.column_names.index("param_file"), "param_file", pa.array(["params.yaml"] * table.num_rows, pa.string())
    )
    buf = io.BytesIO()
    pq.write_table(forged, buf)
    keep = [e for e in entries if e.path != entry.path]
    assert store.replace_tree([(entry.path, buf.getvalue())], "forge", tip, keep=keep)
    proc = run_mlci(repo, "ledger", "fsck")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{entry.path}: its param_file column differs from its bodies" in proc.stdout
