"""Checking ledger files: what `mlci ledger fsck` checks in the whole tree and `ledger pull`
in what a remote would bring, with one rule for each kind of file."""

from __future__ import annotations

import io

from mlci_tui.errors import MlciError, first_line
from mlci_tui.gitio import TreeEntry
from mlci_tui.ledger import records
from mlci_tui.ledger.store import EVENTS_DIR, SEGMENTS_DIR, LedgerStore, validate_envelope


def fsck(store: LedgerStore) -> list[str]:
    """Problems in everything the cache reads: event files that are not one canonical record
    named by its id, segments that are not readable Parquet or disagree with their `.ids`."""
    return ledger_problems(store, store.entries())


def ledger_problems(store: LedgerStore, entries: list[TreeEntry]) -> list[str]:
    """What is wrong with these ledger files (`fsck` checks all; `ledger pull` what a remote adds)."""
    events = [e for e in entries if e.path.startswith(EVENTS_DIR)]
    blobs = store.repo.cat_blobs([e.oid for e in events])
    problems = [p for p in (record_file_problem(e.path, blobs[e.oid]) for e in events) if p]
    return problems + _segment_problems(store, [e for e in entries if e.path.startswith(SEGMENTS_DIR)])


MAX_RECORD_BYTES = 64 * 1024 * 1024  # the params/metrics file limit: no record legitimately holds more


def record_file_problem(path: str, body: bytes) -> str | None:
    """Why an event file is not one record (one line of canonical JSON, named by its id), or None."""
    if len(body) > MAX_RECORD_BYTES:
        return f"{path}: {len(body):,} bytes; larger than any record"
    problem = records.line_problem(body)
    if problem:
        return f"{path}: {problem}"
    try:
        record = records.loads(body)
        validate_envelope(record)
    except (ValueError, KeyError, UnicodeDecodeError, MlciError) as exc:
        return f"{path}: unreadable record ({first_line(exc)})"
    if records.record_path(str(record.get("id"))) != path:
        return f"{path}: id {record.get('id')!r} does not match its path"
    return None


def _segment_problems(store: LedgerStore, entries: list[TreeEntry]) -> list[str]:
    """A segment must be Parquet with an `id` and a `body` column, its ids those of its `.ids` file."""
    if not entries:
        return []
    import pyarrow.parquet as pq  # lazy: only a compacted ledger has segments

    blobs = store.repo.cat_blobs([e.oid for e in entries])
    by_path = {e.path: blobs[e.oid] for e in entries}
    problems = []
    for path, data in sorted(by_path.items()):
        if not path.endswith(".parquet"):
            continue
        try:
            table = pq.read_table(io.BytesIO(data), columns=["id", "body"])
        except Exception as exc:  # pyarrow raises several types for a broken file
            problems.append(f"{path}: not a readable segment ({first_line(exc)})")
            continue
        listed = by_path.get(path.removesuffix(".parquet") + ".ids")
        ids = [str(i) for i in table.column("id").to_pylist()]
        if listed is not None and listed.decode("utf-8", "replace").split() != ids:
            problems.append(f"{path}: its ids differ from {path.removesuffix('.parquet')}.ids")
    return problems
