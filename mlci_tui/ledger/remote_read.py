"""Query the ledger from its published segments, without building the local cache.

DuckDB reads each published segment's Parquet from the data remote through fsspec (a
filesystem registered with the connection, never DuckDB's httpfs): the first time a scan opens
one, `VerifiedSegments` downloads them all concurrently (one fsspec `get`), checks each one's
SHA-256 against the manifest, keeps the checked bytes in a scratch folder for the rest of the
connection, and refuses a changed object (the query fails whole: no partial answer). What the manifest does not serve (loose
records newer than the publish, buckets compacted again since) is read from the local ledger
and unioned, so the answer is the one the local cache would give. The tables the cache fills
are views here, defined from the cache's own statements (`cache.INGEST_SQL`): one rule.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import InputError, MlciError, first_line
from mlci_tui.ledger.publish import Published, object_path, read_manifest
from mlci_tui.ledger.store import EVENTS_DIR, SEGMENTS_DIR, LedgerStore, refuse_misnamed
from mlci_tui.sql_guard import lock_down

if TYPE_CHECKING:
    import duckdb

PROTOCOL = "mlciseg"  # segment URLs the connection reads: mlciseg://<sha256>
_INSERT = re.compile(r"\s*INSERT INTO (\w+) (SELECT .*)", re.DOTALL)
_SELF_CHECK = re.compile(r"\s*WHERE k NOT IN \(SELECT name FROM names WHERE kind = '\w+'\)\s*$")
_COLUMN = re.compile(r'(?:^|,\s*)"?(\w+)"?\s+[A-Z]')


class TamperedSegment(InputError):
    """A published object whose bytes are not the ones the manifest names (exit 2)."""


@dataclass
class RemoteRead:
    """How the answer was put together: segments read from the remote, and what came from the
    local ledger (records newer than the publish, buckets compacted since)."""

    covers: str
    remote_segments: int
    local_segments: int
    local_records: int


def _verified_filesystem(fs: Any, base: str, wanted: dict[str, str], scratch: Path) -> Any:
    """An fsspec filesystem serving `mlciseg://<sha256>` from the remote, checked (see module)."""
    from fsspec.spec import AbstractFileSystem

    class VerifiedSegments(AbstractFileSystem):
        protocol = PROTOCOL
        cachable = False

        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()
            self.fetched: dict[str, Path] = {}
            self.failure: MlciError | None = None

        def _local(self, path: str) -> Path:
            sha = self._strip_protocol(path).strip("/")
            if sha not in wanted:
                raise FileNotFoundError(path)
            with self.lock:  # DuckDB opens a file from several threads, and several times per query
                if not self.fetched:
                    self._fetch_all()
                return self.fetched[sha]

        def _fetch_all(self) -> None:
            """Every published segment the read uses, downloaded at once (fsspec fetches a list
            concurrently) to the scratch folder and checked: a scan of the runs reads them all."""
            local = {sha: scratch / sha for sha in wanted}
            try:
                fs.get([object_path(base, sha) for sha in local], [str(p) for p in local.values()])
            except FileNotFoundError:
                missing = next(s for s, p in local.items() if not p.exists())
                self.failure = TamperedSegment(f"{wanted[missing]}: not on the data remote (`mlci ledger publish`)")
                raise
            except MlciError as exc:  # no credentials, unreachable (data.remotes.Guarded)
                self.failure = exc
                raise
            for sha, file in sorted(local.items(), key=lambda item: wanted[item[0]]):
                if not file.exists() or _sha256(file) != sha:
                    self.failure = TamperedSegment(
                        f"{wanted[sha]}: the published object {sha[:12]} does not hash to the manifest's "
                        "SHA-256; refused (republish with `mlci ledger publish`)"
                    )
                    raise self.failure
            self.fetched.update(local)

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            return open(self._local(path), "rb")  # noqa: SIM115 - DuckDB closes it

        def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
            local = self._local(path)
            return {"name": path, "size": local.stat().st_size, "type": "file"}

        def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
            return [self.info(path)] if detail else [path]

        def modified(self, path: str) -> datetime:
            return datetime(2000, 1, 1, tzinfo=timezone.utc)  # content-addressed: never changes

    return VerifiedSegments()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def table_views() -> dict[str, str]:
    """The cache's tables as views over `inc`: each from the cache's own INSERT statements (a
    table two statements fill is their UNION ALL), its columns named as `cache.TABLES` names them."""
    from mlci_tui.ledger.cache import INGEST_SQL, TABLES

    selects: dict[str, list[str]] = {}
    for statement in INGEST_SQL:
        m = _INSERT.match(statement)
        if m:  # the DELETEs: redacted records are filtered out of `inc` instead
            selects.setdefault(m.group(1), []).append(_SELF_CHECK.sub("", m.group(2)))
    views = {}
    for table, parts in selects.items():
        columns = ", ".join(f'"{c}"' for c in _COLUMN.findall(TABLES[table]))
        views[table] = f"CREATE TEMP VIEW {table} ({columns}) AS " + " UNION ALL ".join(f"({p})" for p in parts)
    return views


@contextmanager
def open_published(store: LedgerStore, fs: Any, base: str) -> Iterator[tuple[duckdb.DuckDBPyConnection, RemoteRead]]:
    """An in-memory connection with the cache's views over the published segments (from the
    remote) and the ledger's unpublished records (local), locked down for a user's SQL."""
    import duckdb

    from mlci_tui.ledger.cache import BUILD_MEMORY, VIEWS, read_segments

    tip = store.tip()
    manifest = read_manifest(store, tip) if tip else None
    if tip is None or manifest is None:
        raise InputError("no published segments in the ledger: `mlci ledger publish` first (or read locally)")
    entries = store.entries(tip)
    segments = [e for e in entries if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".parquet")]
    served: dict[str, Published] = manifest.served(segments)
    local_segments = [e for e in segments if e.path not in served]
    events = [e for e in entries if e.path.startswith(EVENTS_DIR) and e.path.endswith(".json")]
    with tempfile.TemporaryDirectory(prefix="mlci-remote-read-") as folder:
        scratch = Path(folder)
        con = duckdb.connect()
        verified = _verified_filesystem(fs, base, {p.sha256: path for path, p in served.items()}, scratch)
        try:
            con.execute("SET threads TO 2")
            con.execute(f"SET memory_limit = '{BUILD_MEMORY}'")
            con.execute("SET enable_progress_bar = false")
            con.execute(f"SET temp_directory = '{str(scratch / 'spill').replace(chr(39), chr(39) * 2)}'")
            con.register_filesystem(verified)
            local = _local_rows(store, con, local_segments, events)
            urls = [f"{PROTOCOL}://{p.sha256}" for p in served.values()]
            remote = (
                read_segments(_list(urls), by_name=True)  # a segment published before FILE_OF reads too
                + (" WHERE id NOT IN (SELECT id FROM local_rows)" if local else "")
                if urls
                else None
            )
            parts = [q for q in (remote, "SELECT * FROM local_rows" if local else None) if q]
            if not parts:
                raise InputError("the published manifest serves no segment of this ledger and nothing is local")
            con.execute("CREATE TEMP VIEW inc_all AS " + " UNION ALL ".join(f"({q})" for q in parts))
            # compaction drops redacted records, so only a tombstone newer than the publish hides one
            hidden = "(SELECT target FROM local_rows WHERE type = 'redact')" if local else None
            visible = (
                f"WHERE type = 'redact' OR NOT (id IN {hidden} OR coalesce(target, '') IN {hidden})" if hidden else ""
            )
            con.execute(f"CREATE TEMP VIEW inc AS SELECT * FROM inc_all {visible}")
            for sql in table_views().values():
                con.execute(sql)
            for view, sql in VIEWS.items():
                con.execute(f"CREATE TEMP VIEW {view} AS {sql}")
            con.execute("SET allowed_paths = ?", [urls])  # these, and nothing else (lock_down, below)
            lock_down(con, directories=[scratch / "spill"])
            yield con, RemoteRead(manifest.covers, len(served), len(local_segments), len(events))
        except Exception as exc:  # a query of the caller's included: the object's refusal is the answer
            if verified.failure is not None:
                raise verified.failure from None
            if isinstance(exc, duckdb.Error):
                raise MlciError(f"reading the published ledger: {first_line(exc)}") from None
            raise
        finally:
            con.close()


def _list(items: list[str]) -> str:
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]"


def _local_rows(store: LedgerStore, con: duckdb.DuckDBPyConnection, segments: list[Any], events: list[Any]) -> bool:
    """The temp table `local_rows` (typed, as a segment reads) of the records the manifest does
    not serve: loose event files and segments compacted since the publish; False when none."""
    import pyarrow as pa

    from mlci_tui.ledger.cache import SEGMENT_READ, segment_columns
    from mlci_tui.ledger.compact import typed_table
    from mlci_tui.ledger.segment_read import read_bodies

    bodies: list[str] = []
    if events:
        refuse = refuse_misnamed(events)
        for n, body in store.repo.stream_blobs([e.oid for e in events]):
            line = None if body is None else body if body.endswith(b"\n") else body + b"\n"
            if line is not None and refuse(n, line) is None:
                bodies.append(line.decode("utf-8", "replace"))
    for _n, data in store.repo.stream_blobs([e.oid for e in segments]):
        if data:
            bodies += [b for b in read_bodies(io.BytesIO(data))[2] if b]
    if not bodies:
        return False
    table: pa.Table = typed_table(con, bodies)
    con.register("local_typed", table)
    con.execute(
        f"""CREATE TEMP TABLE local_rows AS SELECT {segment_columns(SEGMENT_READ)} FROM local_typed
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY time) = 1"""
    )
    con.unregister("local_typed")
    return True
