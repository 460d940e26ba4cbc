"""Compaction: the whole ledger into one Parquet segment, redacted records dropped.

Readers de-duplicate by id, so a later union with a clone's uncompacted tree is harmless;
tombstones are kept, so such a union never resurrects a redacted record. Compaction drops
neither side of a conflict: `conflicts/` is carried over as it is, and where the tree holds
two bodies of one id that differ in meaning (a union of trees older mlci versions merged),
the one an event file holds goes into the segment and the other into `conflicts/`.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlci_tui.gitio import TreeEntry
from mlci_tui.ledger import records
from mlci_tui.ledger.conflicts import CONFLICTS_DIR, blob_id, conflict_path, meaning, resolved_path
from mlci_tui.ledger.store import MAX_ATTEMPTS, LedgerConflict, LedgerStore


def compact(store: LedgerStore) -> int:
    for _attempt in range(MAX_ATTEMPTS):
        tip = store.tip()
        if tip is None:
            return 0
        entries = store.entries(tip)
        kept = [e for e in entries if e.path.startswith(CONFLICTS_DIR)]
        recs, second = _one_per_id(store, entries, kept, sha256=len(tip) == 64)
        redacted = {r.get("target") for r in recs if r.get("type") == "redact"}
        # a redacted record's conflicting bodies go with it
        kept = [e for e in kept if e.path.split("/")[1] not in redacted]
        second = [(path, body) for path, body in second if path.split("/")[1] not in redacted]
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
        files = [(f"segments/{seg}.parquet", buf.getvalue()), (f"segments/{seg}.ids", ids), *second]
        if store.replace_tree(files, f"mlci: compact {len(keep)} records", tip, keep=kept) is not None:
            return len(keep)
        time.sleep(0.01)
    raise LedgerConflict("compaction kept losing to concurrent writers; try again")


def _one_per_id(
    store: LedgerStore, entries: list[TreeEntry], kept: list[TreeEntry], *, sha256: bool
) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]]]:
    """The record of each id (an event file's before a segment's copy), and as conflict files
    every other body of an id that means something else, unless already kept or decided."""
    names = {e.path for e in kept}
    first: dict[str, tuple[dict[str, Any], bytes]] = {}
    second: dict[str, bytes] = {}
    for record, body in store.versions(entries):
        rid = record["id"]
        if rid not in first:
            first[rid] = (record, meaning(record))
            continue
        if meaning(record) == first[rid][1]:
            continue
        blob = blob_id(body, sha256=sha256)
        if conflict_path(rid, blob) not in names and resolved_path(rid, blob) not in names:
            second[conflict_path(rid, blob)] = body
    return [record for record, _meaning in first.values()], list(second.items())
