"""A segment's records as their canonical bodies: the one place that turns a Parquet segment's
rows back into the bytes an event file holds (a union, a rewrite check and `redact` compare them)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

from mlci_tui.ledger import records


def segment_bodies(segments: Iterable[bytes], ids: set[str] | None) -> dict[str, bytes]:
    """Record id -> canonical body (with its newline) from Parquet segments, for `ids` (None: all)."""
    found: dict[str, bytes] = {}
    for data in segments:
        if not data:
            continue
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data), columns=["id", "body"])
        except Exception:  # an unreadable segment: fsck names it; the cache skips it
            continue
        for rid, body in zip(table.column("id").to_pylist(), table.column("body").to_pylist()):
            if isinstance(rid, str) and isinstance(body, str) and (ids is None or rid in ids):
                found.setdefault(rid, body.encode() if body.endswith("\n") else (body + "\n").encode())
    return found


def segment_records(data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
    if not data:
        return
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data), columns=["body"])
    for body in table.column("body").to_pylist():
        try:
            yield records.loads(body), body.encode() if body.endswith("\n") else (body + "\n").encode()
        except ValueError:
            continue
