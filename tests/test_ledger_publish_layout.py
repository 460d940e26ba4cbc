"""A published segment of the previous typed layout (no `param_file`/`metric_file`, issue 19) is
read by `mlci ledger query` as the local cache reads it: every run's value rows from its lists."""

from __future__ import annotations

import io
from pathlib import Path

from ledger_helpers import make_run

from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore

PER_VALUE = (
    "SELECT run_id, file, name, value, num FROM params ORDER BY ALL",
    "SELECT run_id, file, name, value FROM metrics ORDER BY ALL",
    "SELECT run_id, params, metrics FROM runs ORDER BY run_id",
)


def _previous_layout(store: LedgerStore) -> None:
    """Every segment of the tree rewritten with the columns a typed segment had before
    `param_file`/`metric_file`, as an older mlci compacted it."""
    import pyarrow.parquet as pq

    from mlci_tui.ledger.cache import SEGMENT_STORED_TYPED, TYPED_NAMES_BEFORE_FILES
    from mlci_tui.ledger.compact import typed_connection, typed_table
    from mlci_tui.ledger.segment_read import segment_bodies

    tip = store.tip()
    assert tip is not None
    entries = store.entries(tip)
    older = {}
    con = typed_connection()
    for entry in entries:
        if entry.path.endswith(".parquet"):
            data = store.repo.cat_blobs([entry.oid])[entry.oid]
            bodies = [b.decode() for b in segment_bodies([data], None).values()]
            buf = io.BytesIO()  # full bodies and both lists, as that layout stored them
            pq.write_table(typed_table(con, bodies, SEGMENT_STORED_TYPED).select(TYPED_NAMES_BEFORE_FILES), buf)
            older[entry.path] = buf.getvalue()
    con.close()
    assert older
    keep = [e for e in entries if e.path not in older]
    assert store.replace_tree(list(older.items()), "an older mlci's segments", tip, keep=keep)


def test_a_published_segment_of_the_previous_layout_reads_as_the_cache_does(repo: Path, tmp_path: Path) -> None:
    import fsspec

    from mlci_tui.ledger.cache import LedgerCache
    from mlci_tui.ledger.compact import compact
    from mlci_tui.ledger.publish import publish
    from mlci_tui.ledger.remote_read import open_published

    store = LedgerStore(Repo.find(repo))
    store.append([make_run(params={"lr": i / 10, "opt": "adam"}, metrics={"acc": i / 100}) for i in range(30)])
    expected = []
    with LedgerCache(Repo.find(repo)).connect() as con:
        expected = [con.execute(sql).fetchall() for sql in PER_VALUE]
    assert compact(store) == 30
    _previous_layout(store)
    fs, base = fsspec.filesystem("file"), str(tmp_path / "store")
    publish(store, fs, base)
    with open_published(store, fs, base) as (con, read):
        assert read.remote_segments > 0 and read.local_segments == 0
        assert [con.execute(sql).fetchall() for sql in PER_VALUE] == expected
        assert con.execute("SELECT count(DISTINCT run_id) FROM param_rows").fetchall() == [(30,)]
    with LedgerCache(Repo.find(repo)).connect() as con:
        assert [con.execute(sql).fetchall() for sql in PER_VALUE] == expected
