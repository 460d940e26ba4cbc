"""Compaction: the whole ledger into one Parquet segment, redacted records dropped.

Readers de-duplicate by id, so a later union with a clone's uncompacted tree is harmless;
tombstones are kept, so such a union never resurrects a redacted record.
"""

from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.parquet as pq

from mlci_tui.ledger import records
from mlci_tui.ledger.store import MAX_ATTEMPTS, LedgerConflict, LedgerStore


def compact(store: LedgerStore) -> int:
    for _attempt in range(MAX_ATTEMPTS):
        tip = store.tip()
        if tip is None:
            return 0
        recs = store.read_records(tip)
        redacted = {r.get("target") for r in recs if r.get("type") == "redact"}
        # drop the redacted records and what refers to them (tags, notes); keep the tombstones
        keep = sorted(
            (
                r
                for r in recs
                if r.get("id") not in redacted and (r.get("type") == "redact" or r.get("target") not in redacted)
            ),
            key=lambda r: str(r.get("id")),
        )
        table = pa.table(
            {
                "id": pa.array([str(r["id"]) for r in keep], pa.string()),
                "type": pa.array([str(r.get("type")) for r in keep], pa.string()),
                "body": pa.array([records.dumps(r).decode() for r in keep], pa.string()),
            }
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        seg = records.new_id()
        ids = ("\n".join(str(r["id"]) for r in keep) + "\n").encode()
        files = [(f"segments/{seg}.parquet", buf.getvalue()), (f"segments/{seg}.ids", ids)]
        if store.replace_tree(files, f"mlci: compact {len(keep)} records", tip) is not None:
            return len(keep)
        time.sleep(0.01)
    raise LedgerConflict("compaction kept losing to concurrent writers; try again")
