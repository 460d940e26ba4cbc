"""`mlci ledger publish`: compacted segments uploaded to the data remote, and the manifest that
names them, kept in the ledger itself (`published/manifest.json`).

Each segment goes to `<remote>/ledger/<sha256 of its bytes>.parquet` (content-addressed: a
segment two clones published is one object, and an object is never overwritten with other
bytes). The manifest maps each segment's path in the ledger tree to its git blob id, SHA-256,
size and row count, and names the ledger commit it covers. A reader trusts a published segment
only where the ledger tree it reads holds that very blob at that path (`served`), and only once
the object's bytes hash to the manifest's SHA-256 (remote_read.py). Explicit, never from a hook:
it uploads.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from typing import Any

from mlci_tui.errors import CheckFailed, InputError, MlciError, first_line
from mlci_tui.gitio import TreeEntry
from mlci_tui.ledger import records
from mlci_tui.ledger.store import PUBLISHED_DIR, SEGMENTS_DIR, LedgerStore

MANIFEST_PATH = PUBLISHED_DIR + "manifest.json"
MANIFEST_TYPE = "publish"
REMOTE_FOLDER = "ledger"  # under the data remote's base; `data gc` lists only `<xx>/<hash>` objects
_SHA256 = re.compile(r"[0-9a-f]{64}")
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SEGMENT = re.compile(re.escape(SEGMENTS_DIR) + r"[a-z2-7]-[a-z2-7]{26}\.parquet")


@dataclass(frozen=True)
class Published:
    """One manifest entry: a segment as it was uploaded."""

    blob: str  # its git blob id in the ledger tree
    sha256: str  # of its bytes: the object's name on the remote, checked on every read
    size: int
    rows: int


@dataclass
class Manifest:
    covers: str  # the ledger commit whose segments these are
    segments: dict[str, Published] = field(default_factory=dict)  # path in the ledger tree -> entry

    def dumps(self) -> bytes:
        return records.dumps(
            {
                "type": MANIFEST_TYPE,
                "v": 1,
                "covers": self.covers,
                "segments": {
                    p: {"blob": e.blob, "sha256": e.sha256, "size": e.size, "rows": e.rows}
                    for p, e in sorted(self.segments.items())
                },
            }
        )

    def served(self, entries: list[TreeEntry]) -> dict[str, Published]:
        """The tree's segments this manifest publishes with the same bytes (path -> entry);
        a bucket compacted again since then is not among them (read locally)."""
        return {
            e.path: self.segments[e.path]
            for e in entries
            if e.path in self.segments and self.segments[e.path].blob == e.oid
        }


def object_path(base: str, sha256: str) -> str:
    return f"{base}/{REMOTE_FOLDER}/{sha256}.parquet"


def parse_manifest(data: bytes) -> Manifest:
    """The manifest in `data`; ValueError saying what is wrong (the one shape rule: publish,
    fsck, a pull and a reader all go through it)."""
    try:
        doc = records.loads(data)
    except ValueError as exc:
        raise ValueError(f"not JSON ({first_line(exc)})") from None
    if not isinstance(doc, dict) or records.dumps(doc) != data:
        raise ValueError("not one canonical-JSON object")
    if doc.get("type") != MANIFEST_TYPE or doc.get("v") != 1:
        raise ValueError(f"not a publish manifest of version 1 (type {doc.get('type')!r}, v {doc.get('v')!r})")
    covers, segments = doc.get("covers"), doc.get("segments")
    if not isinstance(covers, str) or not _OID.fullmatch(covers):
        raise ValueError("covers: not a full git commit id")
    if not isinstance(segments, dict) or set(doc) != {"type", "v", "covers", "segments"}:
        raise ValueError("expected exactly the keys covers, segments, type and v")
    out = Manifest(covers)
    for path, e in segments.items():
        if not _SEGMENT.fullmatch(path):
            raise ValueError(f"{path!r}: not a segment path")
        fields = ("blob", "rows", "sha256", "size")
        ok = isinstance(e, dict) and sorted(e) == list(fields)
        ok = ok and isinstance(e["blob"], str) and _OID.fullmatch(e["blob"]) is not None
        ok = ok and isinstance(e["sha256"], str) and _SHA256.fullmatch(e["sha256"]) is not None
        ok = ok and all(type(e[k]) is int and e[k] >= 0 for k in ("size", "rows"))
        if not ok:
            raise ValueError(f"{path}: expected blob, sha256 (hex), size and rows (counts)")
        out.segments[path] = Published(e["blob"], e["sha256"], e["size"], e["rows"])
    return out


def read_manifest(store: LedgerStore, tip: str) -> Manifest | None:
    """The manifest in the ledger tree at `tip`, or None when nothing was published."""
    found = store.repo.ls_tree(tip, [MANIFEST_PATH])
    if not found:
        return None
    data = store.repo.cat_blobs([found[0].oid]).get(found[0].oid, b"")
    try:
        return parse_manifest(data)
    except ValueError as exc:
        raise MlciError(f"{MANIFEST_PATH}: {exc} (`mlci ledger fsck`)") from None


def describe(data: bytes) -> tuple[str, int, int]:
    """A segment's SHA-256, size and row count (from its Parquet footer)."""
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    return hashlib.sha256(data).hexdigest(), len(data), rows


def manifest_problem(store: LedgerStore, data: bytes, tree: str | None) -> str | None:
    """What is wrong with a manifest (`ledger fsck`, and a pull that brings one): its shape, and
    each entry whose segment the tree at `tree` holds with that blob must say that segment's
    SHA-256, size and rows. Entries of segments no longer in the tree are kept: a reader ignores them."""
    try:
        manifest = parse_manifest(data)
    except ValueError as exc:
        return f"not a valid publish manifest: {exc}"
    if tree is None or not manifest.segments:
        return None
    held = sorted(manifest.served(store.repo.ls_tree(tree, sorted(manifest.segments))).items())
    for n, segment in store.repo.stream_blobs([e.blob for _p, e in held]):  # one segment in memory at a time
        path, entry = held[n]
        try:
            found = describe(segment or b"")
        except Exception:  # noqa: BLE001 - an unreadable segment: fsck names it on its own
            continue
        if found != (entry.sha256, entry.size, entry.rows):
            return f"{path}: the manifest says sha256 {entry.sha256[:12]}, {entry.size} bytes, {entry.rows} rows; the segment is {found[0][:12]}, {found[1]} bytes, {found[2]} rows"
    return None


@dataclass
class PublishResult:
    covers: str
    segments: int = 0
    rows: int = 0
    uploaded: int = 0  # objects written (the others were on the remote already)
    bytes_uploaded: int = 0
    manifest_written: bool = False


def publish(store: LedgerStore, fs: Any, base: str) -> PublishResult:
    """Upload the segments of the ledger tip the remote lacks (by content), then record the
    manifest in the ledger: objects first, so a manifest never names a missing object."""
    tip = store.tip()
    if tip is None:
        raise InputError("ledger publish: the ledger is empty; nothing to publish")
    segments = [e for e in store.entries(tip) if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".parquet")]
    if not segments:
        raise InputError("ledger publish: the ledger has no compacted segments (`mlci ledger compact`)")
    old = read_manifest(store, tip)
    known = old.served(segments) if old else {}
    present = _listing(fs, f"{base}/{REMOTE_FOLDER}")
    result = PublishResult(tip)
    manifest = Manifest(tip)
    todo = [e for e in segments if e.path not in known or present.get(known[e.path].sha256) != known[e.path].size]
    manifest.segments.update({e.path: known[e.path] for e in segments if e not in todo})
    for n, data in store.repo.stream_blobs([e.oid for e in todo]):  # one segment in memory at a time
        entry = todo[n]
        if data is None:
            raise MlciError(f"ledger publish: {entry.path}: cannot read its blob")
        sha, size, rows = describe(data)
        if present.get(sha) != size:  # absent, or cut short by an interrupted upload
            try:
                _upload(fs, object_path(base, sha), data)
            except MlciError:
                raise
            except Exception as exc:  # a read-only remote, a full disk: the manifest is not written
                raise CheckFailed(
                    f"ledger publish: {entry.path}: upload failed ({first_line(exc, with_type=True)}); "
                    "no manifest recorded"
                ) from None
            result.uploaded += 1
            result.bytes_uploaded += size
        manifest.segments[entry.path] = Published(entry.oid, sha, size, rows)
    result.segments = len(manifest.segments)
    result.rows = sum(e.rows for e in manifest.segments.values())
    if old is None or old.segments != manifest.segments:
        body = manifest.dumps()
        store.update(lambda _tip: {MANIFEST_PATH: body}, f"mlci: publish {result.segments} segments")
        result.manifest_written = True
    return result


def _upload(fs: Any, target: str, data: bytes) -> None:
    """One object; into a local folder through a temp name and a rename, so a reader or a later
    publish never meets half an object (an object store's put is whole already)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local"):
        fs.pipe_file(target, data)
        return
    fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{target}.tmp-{os.urandom(4).hex()}"
    fs.pipe_file(tmp, data)
    fs.mv(tmp, target)


def _listing(fs: Any, folder: str) -> dict[str, int]:
    """sha256 -> size of the objects published already (one listing)."""
    try:
        found = fs.find(folder, detail=True)
    except (FileNotFoundError, OSError):
        return {}
    out: dict[str, int] = {}
    for path, info in found.items():
        name = str(path).rsplit("/", 1)[-1].removesuffix(".parquet")
        if _SHA256.fullmatch(name):
            out[name] = int(info.get("size") or 0)
    return out
