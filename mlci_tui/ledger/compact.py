"""Compaction: loose event files into deterministic Parquet segments, redacted records dropped.

Records go to fixed buckets by the first character of their id (32 buckets), and a bucket's
segment is named by the hash of its ids and bodies (`segments/<c>-<hash>.parquet`, with its
`.ids`): two clones that compact the same records write the same segment, so their trees
agree and a union of them adds nothing. Only the buckets that hold loose records (or more
than one segment, or a segment of an older mlci) are rewritten; the others are kept as they
are. A new tombstone rewrites every bucket, since what refers to the record can be anywhere.

A run's body is stored as its residual, less what its typed columns give back exactly
(`segment_read`: the one place that rebuilds a body, byte for byte), and a segment's name
hashes the bodies themselves, not what it stores.

Readers de-duplicate by id, so a later union with a clone's uncompacted tree is harmless, and
such a union drops a loose record a segment holds with the same bytes (store.union_merge).
Tombstones are kept, so a union never resurrects a redacted record. Compaction drops neither
side of a conflict: `conflicts/` is carried over (so is `published/`, the publish manifest,
whose entries readers trust only where the tree still holds that segment), and where the tree holds two bodies of one
id that differ in meaning, the event file's goes into the segment and the other into
`conflicts/`. The commit is a compare-and-swap like every write, so a concurrent writer or a
kill -9 loses nothing: the old tree stays until the new one is complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mlci_tui.errors import MlciError, first_line
from mlci_tui.gitio import Repo, TreeEntry
from mlci_tui.ledger import records
from mlci_tui.ledger.conflicts import CONFLICTS_DIR, blob_id, conflict_path, meaning, resolved_path
from mlci_tui.ledger.segment_read import (
    LAYOUT_KEY,
    RESIDUAL,
    is_residual_layout,
    read_bodies,
    redaction_targets,
    residual,
    restored,
)
from mlci_tui.ledger.store import (
    EVENTS_DIR,
    MAX_ATTEMPTS,
    PUBLISHED_DIR,
    SEGMENTS_DIR,
    LedgerConflict,
    LedgerStore,
    event_name,
    refuse_by_name,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

BUCKETS = records.B32_ALPHABET  # a record's bucket: the first character of its id
# Loose event files past which compaction runs by itself (the post-commit hook starts it in
# the background; `mlci ledger push` runs it before pushing). Below it, reading the loose files
# costs the cache build less than rewriting segments costs compaction.
AUTO_THRESHOLD = int(os.environ.get("MLCI_COMPACT_THRESHOLD", "2000"))
NAMED = re.compile(r"segments/([a-z2-7])-([a-z2-7]{26})\.parquet")  # a segment named by `segment_name`


@dataclass
class _Bucket:
    """What one bucket's new segment is made of: rows by id (first wins) and conflict files."""

    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (type, body with its newline)
    meanings: dict[str, bytes] = field(default_factory=dict)  # id -> meaning, once a second body comes
    targets: dict[str, str] = field(default_factory=dict)  # id -> target, for records that refer to one


def loose_count(repo: Repo, tip: str) -> int:
    """How many event files the tree at `tip` holds outside segments (one `git ls-tree`)."""
    proc = repo.run("ls-tree", "-r", "--name-only", "-z", tip, "--", EVENTS_DIR, check=False)
    return proc.stdout.count(b"\0") if proc.returncode == 0 else 0


def compact(store: LedgerStore, *, min_loose: int = 0, trailer: Callable[[str], str] | None = None) -> int:
    """Compact the ledger; returns how many records its segments hold afterwards (0: nothing to
    do, or fewer than `min_loose` loose event files). `trailer`: what signs the commit
    (`signed_compaction.trailer`), or None.

    Memory stays bounded at a million records: the tree is listed as git writes it (loose files
    kept as two flat lists), their bodies streamed to one file per bucket on disk, each segment
    read from disk, and each bucket's new segment written to a file and into git (`write_blobs`)
    before the next bucket is read: no body, and no segment's bytes, outlive their bucket."""
    for _attempt in range(MAX_ATTEMPTS):
        tip = store.tip()
        if tip is None:
            return 0
        oids, names, others = _read_tree(store.repo, tip)
        loose = len(oids)
        if min_loose and loose < min_loose:
            return 0
        with tempfile.TemporaryDirectory(prefix="mlci-compact-") as scratch:
            staged, redacted = _stage_loose(store.repo, oids, names, Path(scratch))
            del oids, names  # the listing of a million files: not needed past staging
            files, keep, total = _plan(store.repo, others, staged, redacted, Path(scratch), sha256=len(tip) == 64)
        if not files and not loose and len(keep) == len(others):
            return total  # every bucket is one segment already: nothing to write
        if store.replace_tree(files, f"mlci: compact {total} records", tip, keep=keep, trailer=trailer) is not None:
            return total
        time.sleep(0.01)
    raise LedgerConflict("compaction kept losing to concurrent writers; try again")


def _read_tree(repo: Repo, tip: str) -> tuple[list[str], list[str | None], list[TreeEntry]]:
    """The tree at `tip`, streamed: the loose event files' blob ids and the record ids their paths
    name (`store.event_name`), and every other file as an entry."""
    oids: list[str] = []
    names: list[str | None] = []
    others: list[TreeEntry] = []
    for entry in repo.iter_tree(tip):
        if entry.path.startswith(EVENTS_DIR) and entry.path.endswith(".json"):
            oids.append(entry.oid)
            names.append(event_name(entry.path))
        else:
            others.append(entry)
    return oids, names, others


@dataclass(frozen=True)
class _Segment:
    """A segment of the tree, its bytes on disk, and what its footer says."""

    path: Path
    rows: int | None  # None: not a segment this can read (fsck names it; it stays as it is)
    typed: bool  # of the current layout (or not readable at all): not rewritten for its layout


def _plan(
    repo: Repo,
    entries: list[TreeEntry],
    staged: dict[str, Path],
    redacted: set[str],
    scratch: Path,
    *,
    sha256: bool,
) -> tuple[list[tuple[str, bytes | str]], list[TreeEntry], int]:
    """The new files (segments as blob ids already written, conflict files as bytes), the entries
    kept as they are, and how many records the segments hold (no new files and every entry kept:
    every bucket is compacted already). `entries` are the tree's files but the loose event files,
    whose bodies `staged` holds, one file of lines per bucket."""
    segments = [e for e in entries if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".parquet")]
    id_lists = {e.path: e for e in entries if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".ids")}
    by_bucket: dict[str, list[TreeEntry]] = {}
    mixed: list[TreeEntry] = []  # segments not named by the bucket rule (an older mlci's): rewritten
    for seg in segments:
        m = NAMED.fullmatch(seg.path)
        (by_bucket.setdefault(m.group(1), []) if m else mixed).append(seg)
    held = _stage_segments(repo, segments, scratch)
    kept_conflicts = [e for e in entries if e.path.startswith(CONFLICTS_DIR)]
    keep: list[TreeEntry] = [e for e in entries if e.path.startswith(PUBLISHED_DIR)]  # readers check it per segment
    names = {e.path for e in kept_conflicts}
    written: list[tuple[str, Path]] = []
    total = 0
    dirty = set(staged) | {b for b, segs in by_bucket.items() if len(segs) > 1 or not all(held[s].typed for s in segs)}
    if redacted or mixed:
        dirty = set(BUCKETS)  # a new tombstone: what refers to its record may be in any bucket
    for found in held.values():
        if found.rows is not None:
            redacted.update(redaction_targets(found.path))
    conflicts: dict[str, bytes] = {}
    refused: list[TreeEntry] = []
    con = typed_connection() if dirty else None
    for bucket in sorted(dirty):  # one bucket in memory at a time
        rows = _Bucket()
        if bucket in staged:  # event files first: theirs is the body a reader sees
            with open(staged[bucket], "rb") as lines:
                for line in lines:
                    _add(rows, conflicts, line, sha256)
        for seg in [*mixed, *by_bucket.get(bucket, [])]:
            if held[seg].rows is None:
                continue  # unreadable: `ledger fsck` names it; it stays in the tree below
            rids, _types, bodies = read_bodies(held[seg].path)
            if None in bodies and seg in by_bucket.get(bucket, []):
                refused.append(seg)  # a row its columns do not rebuild: fsck names it; kept as it is
                continue
            for rid, body in zip(rids, bodies):
                if isinstance(rid, str) and rid[:1] == bucket and isinstance(body, str):
                    _add(rows, conflicts, _line(body), sha256)
            del rids, bodies
        kept = [(rid, rtype, body) for rid, (rtype, body) in sorted(rows.rows.items()) if _kept(rows, rid, redacted)]
        del rows
        if kept and con is not None:
            written += _segment_files(bucket, kept, con, scratch)
            total += len(kept)
    if con is not None:
        con.close()
    files: list[tuple[str, bytes | str]] = list(
        zip([p for p, _f in written], repo.write_blobs([f for _p, f in written]))
    )
    # a redacted record's conflicting bodies go with it
    keep += [e for e in kept_conflicts if e.path.split("/")[1] not in redacted]
    files += [
        (path, body)
        for path, body in conflicts.items()
        if path.split("/")[1] not in redacted and path not in names and not _resolved(path, names)
    ]
    for bucket, segs in by_bucket.items():
        if bucket not in dirty:
            keep += segs
            total += sum(held[s].rows or 0 for s in segs)
    keep += [s for s in segments if held[s].rows is None] + refused  # kept as they are: fsck names them
    keep += [id_lists[p] for s in keep if s.path.endswith(".parquet") for p in [_ids_of(s.path)] if p in id_lists]
    return files, list(dict.fromkeys(keep)), total


def _stage_segments(repo: Repo, segments: list[TreeEntry], scratch: Path) -> dict[TreeEntry, _Segment]:
    """Each segment's bytes streamed to a file of its own (one in memory at a time), with its footer read."""
    held: dict[TreeEntry, _Segment] = {}
    for n, data in repo.stream_blobs([s.oid for s in segments]):
        path = scratch / f"held-{n}.parquet"
        path.write_bytes(data or b"")
        held[segments[n]] = _Segment(path, *_footer(path))
    return held


def _ids_of(path: str) -> str:
    return path.removesuffix(".parquet") + ".ids"


def _footer(path: Path) -> tuple[int | None, bool]:
    """A segment's row count from its footer (None when it is not a segment this can read), and
    whether it is of the current layout: the typed columns and residual bodies (an older layout
    is rewritten; a segment that cannot be read at all is kept as it is, so it counts as current)."""
    import pyarrow.parquet as pq

    from mlci_tui.ledger.cache import TYPED_NAMES

    try:
        footer = pq.ParquetFile(path)
        rows, schema = footer.metadata.num_rows, footer.schema_arrow
    except Exception:  # noqa: BLE001 - an unreadable segment stays as it is; fsck names it
        return None, True
    names = schema.names
    return (rows if {"id", "type", "body"} <= set(names) else None), names == TYPED_NAMES and is_residual_layout(schema)


def _add(bucket: _Bucket, conflicts: dict[str, bytes], body: bytes, sha256: bool) -> None:
    """One body (a canonical line) into its bucket: the first seen of an id is kept; a later one
    that means something else becomes a conflict file (compaction drops neither side)."""
    try:
        record = records.loads(body)
    except ValueError:
        return  # unreadable: `ledger fsck` names it
    rid, text = str(record.get("id")), body.decode("utf-8", "surrogateescape")  # with its newline, as a file
    held = bucket.rows.get(rid)
    if held is None:
        bucket.rows[rid] = (str(record.get("type")), text)
        if record.get("type") not in ("run", "redact"):
            bucket.targets[rid] = str(record.get("target"))
        return
    if held[1] == text:
        return
    ours = bucket.meanings.get(rid) or meaning(records.loads(held[1]))
    bucket.meanings[rid] = ours
    if ours != meaning(record):
        conflicts[conflict_path(rid, blob_id(body, sha256=sha256))] = body


def _stage_loose(
    repo: Repo, oids: list[str], names: list[str | None], scratch: Path
) -> tuple[dict[str, Path], set[str]]:
    """The loose event files, streamed in pack order into one file of lines per bucket (memory
    stays flat at a million records), and the targets of the tombstones among them. A file that
    is not one record named by its id is left out, as the cache build leaves it out."""
    refuse = refuse_by_name(names)
    staged: dict[str, Path] = {}
    handles: dict[str, BinaryIO] = {}
    redacted: set[str] = set()
    order = repo.pack_order(oids)
    try:
        for n, body in repo.stream_blobs([oids[k] for k in order]):
            k = order[n]
            line = None if body is None else body if body.endswith(b"\n") else body + b"\n"
            if line is None or refuse(k, line):
                continue
            bucket = str(names[k])[0]  # the file's name is its id (refused otherwise)
            if bucket not in handles:
                staged[bucket] = scratch / f"{bucket}.ndjson"
                handles[bucket] = open(staged[bucket], "wb")  # noqa: SIM115 - closed below
            handles[bucket].write(line)
            target = records.redaction_target(line) if b'"redact"' in line else None
            if target:
                redacted.add(target)
    finally:
        for handle in handles.values():
            handle.close()
    return staged, redacted


def _resolved(path: str, names: set[str]) -> bool:
    _dir, rid, name = path.split("/")
    return resolved_path(rid, name.removesuffix(".json")) in names


def _line(body: str) -> bytes:
    return (body if body.endswith("\n") else body + "\n").encode()


def _kept(bucket: _Bucket, rid: str, redacted: set[str]) -> bool:
    """Drop the redacted records and what refers to them (tags, notes); keep the tombstones."""
    return rid not in redacted and bucket.targets.get(rid) not in redacted


def segment_name(bucket: str, rows: Sequence[tuple[str, str, str]]) -> str:
    """`segments/<bucket>-<hash>`: the hash of the ids and bodies, so equal contents, equal name."""
    digest = hashlib.blake2b(digest_size=16)
    for rid, _rtype, body in rows:
        digest.update(rid.encode() + b"\0" + body.encode())
    return f"{SEGMENTS_DIR}{bucket}-{records.content_id(digest.digest())}"


def _segment_files(
    bucket: str, rows: list[tuple[str, str, str]], con: duckdb.DuckDBPyConnection, scratch: Path
) -> list[tuple[str, Path]]:
    """A bucket's `.parquet` (id, type, body: canonical JSON, a run's as its residual
    (`segment_read.residual`), then the typed columns a cold rebuild copies; sorted by id, zstd)
    and `.ids`, written to files in `scratch`. The name hashes the bodies themselves."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [rid for rid, _rtype, _body in rows]
    table = typed_table(con, [body for _rid, _rtype, body in rows])
    if table.column("id").to_pylist() != ids:
        raise MlciError(f"compaction: bucket {bucket}: a record's JSON gives no typed row")  # a bug: nothing written
    stored = [residual(body, given) for (_rid, _rtype, body), given in zip(rows, restored(table))]
    table = table.set_column(table.column_names.index("body"), "body", pa.array(stored, pa.string()))
    table = table.replace_schema_metadata({LAYOUT_KEY: RESIDUAL})
    name = segment_name(bucket, rows)
    segment, id_list = scratch / f"new-{bucket}.parquet", scratch / f"new-{bucket}.ids"
    plain = [name for name in table.column_names if name not in UNIQUE_COLUMNS]
    pq.write_table(
        table,
        segment,
        compression="zstd",
        compression_level=SEGMENT_ZSTD_LEVEL,
        use_dictionary=plain,
        row_group_size=SEGMENT_ROW_GROUP,
    )
    id_list.write_bytes(("\n".join(ids) + "\n").encode())
    return [(f"{name}.parquet", segment), (f"{name}.ids", id_list)]


def typed_connection(threads: int = 2) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for deriving typed segment columns (bounded like a cache build)."""
    import duckdb

    from mlci_tui.ledger.cache import BUILD_MEMORY

    con = duckdb.connect()
    con.execute(f"SET threads TO {int(threads)}")
    con.execute(f"SET memory_limit = '{BUILD_MEMORY}'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET produce_arrow_string_view = false")  # plain strings: the id, type and body columns
    return con


def typed_table(con: duckdb.DuckDBPyConnection, bodies: list[str], stored: Mapping[str, str] | None = None) -> pa.Table:
    """The segment's table of these canonical bodies, sorted by id: id, type, body and the typed
    columns (`cache.TYPED_COLUMNS`, derived by the cache's own SQL: one rule for both), less
    what repeats another column (`stored`: cache.SEGMENT_STORED, the current layout's)."""
    import pyarrow as pa

    with _derived(con, pa.array(bodies, pa.string()), stored) as rows:
        return con.sql(f"{rows} ORDER BY id").to_arrow_table()


@contextmanager
def _derived(con: duckdb.DuckDBPyConnection, bodies: pa.Array, stored: Mapping[str, str] | None) -> Iterator[str]:
    """A SELECT of `typed_table`'s columns (unsorted) on `con`, while in the block."""
    import pyarrow as pa

    from mlci_tui.ledger.cache import SEGMENT_STORED, derive_typed, segment_columns

    con.register("segment_bodies", pa.table({"body": bodies}))
    try:
        derive_typed(con, "SELECT body FROM segment_bodies", "segment_rows", run_bodies=True)
        yield f"SELECT {segment_columns(SEGMENT_STORED if stored is None else stored)} FROM segment_rows"
    finally:
        con.unregister("segment_bodies")


def typed_mismatch(con: duckdb.DuckDBPyConnection, segment: pa.Table) -> str | None:
    """Which typed column of a segment says something else than its bodies (None: all agree, or
    the segment has bodies only). A reader trusts the typed columns, so `ledger fsck` and a pull
    check them against the bodies they were derived from. `segment` holds its rebuilt bodies
    (`segment_read.table_bodies`) and the schema metadata of its layout."""
    import pyarrow.compute as pc

    from mlci_tui.ledger.cache import SEGMENT_STORED_TYPED, TYPED_NAMES, TYPED_NAMES_BEFORE_FILES

    if segment.column_names == ["id", "type", "body"]:
        return None
    residual_layout = is_residual_layout(segment.schema)
    if segment.column_names not in (TYPED_NAMES, TYPED_NAMES_BEFORE_FILES) or (
        residual_layout and segment.column_names != TYPED_NAMES
    ):  # the typed layouts before the residual one: readers take them too
        return "its columns are neither id, type, body nor the typed segment's"
    bodies = pc.fill_null(segment.column("body").combine_chunks(), "")
    names = segment.column_names[1:]
    counts = ", ".join(f'count(*) FILTER (WHERE g."{n}" IS DISTINCT FROM d."{n}")' for n in names)
    con.register("segment_given", segment)
    try:  # one join for every column (a query per column cost a 10k-run pull 2.7 s of 6.2), unsorted
        with _derived(con, bodies, None if residual_layout else SEGMENT_STORED_TYPED) as derived:
            row = con.execute(f"SELECT {counts} FROM segment_given g FULL JOIN ({derived}) d USING (id)").fetchall()[0]
        for name, count in zip(names, row):  # fetched to the end: an open result would block unregister
            if count:
                return f"its {name} column differs from its bodies in {count:,} row(s)"
    except Exception as exc:  # noqa: BLE001 - columns of another type: not what its bodies give
        return f"its typed columns do not match its bodies ({first_line(exc)})"
    finally:
        con.unregister("segment_given")
    return None


SEGMENT_ROW_GROUP = 65536  # rows per Parquet row group: fixed, so equal rows give equal bytes
# The encoding (docs/benchmarks.md: segment size, measured at 100k runs): zstd level 9 and no
# dictionary for columns whose values never repeat (a dictionary of them is pure overhead):
# 535 -> 445 bytes/run, for ~0.7 s more CPU per 100k records compacted. Level 19: 464 bytes/run
# with the dictionaries, at 18x the CPU.
SEGMENT_ZSTD_LEVEL = 9
UNIQUE_COLUMNS = frozenset({"id", "body", "commit", "tree", "patch_id"})


# git's own bounds on a repack's memory (git-config: pack.*, core.*). Without them a repack of
# the 4.4 GiB of a million loose records mapped every pack whole (core.packedGitLimit is
# unlimited on 64-bit) and peaked at 5.4 GB; one thread, as compaction runs in the background.
REPACK_SETTINGS = (
    "pack.threads=1",
    "pack.windowMemory=64m",  # per thread: the delta search's window shrinks past it
    "pack.deltaCacheSize=32m",
    "core.packedGitLimit=128m",  # bytes of packs mapped at once
    "core.packedGitWindowSize=16m",
    "core.deltaBaseCacheLimit=32m",
)
REPACK_MIN_LOOSE = 256  # loose objects below which a repository of one pack is not repacked


def repack(repo: Repo) -> bool:
    """Fold the loose objects and small packs that appends and compaction left into bigger packs
    (`git repack -d --geometric=2`, within REPACK_SETTINGS): a cold cache build then reads few
    packs, and trees and records get deltas against each other. Geometric: only the packs a
    geometric progression needs rolled up are rewritten, so a compaction of 2,000 records does
    not rewrite the pack of the million before them. Skipped (False) when the repository is one
    pack and fewer than REPACK_MIN_LOOSE loose objects."""
    counts = dict(
        line.split(": ", 1) for line in repo.text("count-objects", "-v", check=False).splitlines() if ": " in line
    )
    if int(counts.get("count", 0)) < REPACK_MIN_LOOSE and int(counts.get("packs", 0)) <= 1:
        return False
    settings = [arg for setting in REPACK_SETTINGS for arg in ("-c", setting)]
    repo.run(*settings, "repack", "-d", "-q", "--geometric=2", check=False)
    return True
