"""The ledger on `refs/mlci/ledger`: append, read and union-merge, with git plumbing only.

Each record is an immutable canonical-JSON blob at `events/<id[:2]>/<id>.json`. An append
is one `git fast-import` process that writes the blobs and a commit whose tree is the
previous tip's with the new entries added (only the touched shard trees are rewritten).
fast-import publishes the ref itself with a compare-and-swap that also refuses anything
that is not a fast-forward, so a concurrent writer's records are never dropped: we re-read
the tip and retry with jittered backoff. HEAD, the user's index and work tree are never
touched. See docs/architecture.md for why fast-import rather than hash-object + mktree +
commit-tree + update-ref (five processes per append instead of two).
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mlci_tui.errors import GitError, MlciError
from mlci_tui.gitio import ZERO_OID, Repo, TreeEntry
from mlci_tui.ledger import records
from mlci_tui.ledger.refs import LEDGER_REF, REMOTE_REF_PREFIX, remote_ref  # noqa: F401 - re-exported
from mlci_tui.scrub import scrub

EVENTS_DIR = "events/"
SEGMENTS_DIR = "segments/"
COMMITTER = "mlci <mlci@localhost>"
MAX_ATTEMPTS = 60
# A ref lock is held for well under a millisecond; one older than this was left by a writer
# killed mid-update (SIGKILL, OOM) and would otherwise block every later append for good.
STALE_LOCK_SECONDS = 3.0


class LedgerConflict(MlciError):
    """Another writer kept winning the compare-and-swap; nothing was lost, nothing written."""


class LedgerStore:
    """Reads and writes one repository's ledger ref."""

    def __init__(self, repo: Repo, ref: str = LEDGER_REF) -> None:
        self.repo = repo
        self.ref = ref

    # ----------------------------------------------------------------- reading
    def tip(self) -> str | None:
        return self.repo.rev_parse(self.ref)

    def entries(self, tip: str | None = None) -> list[TreeEntry]:
        tip = tip or self.tip()
        if tip is None:
            return []
        return [e for e in self.repo.ls_tree(tip, recursive=True) if e.kind == "blob"]

    def read_records(self, tip: str | None = None) -> list[dict[str, Any]]:
        """Every record in the tree at `tip` (events and compacted segments), de-duplicated."""
        entries = self.entries(tip)
        return self.load_entries(entries)

    def load_entries(self, entries: Sequence[TreeEntry]) -> list[dict[str, Any]]:
        events = [e for e in entries if e.path.startswith(EVENTS_DIR) and e.path.endswith(".json")]
        segments = [e for e in entries if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".parquet")]
        blobs = self.repo.cat_blobs([e.oid for e in events] + [e.oid for e in segments])
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for entry in events:
            data = blobs.get(entry.oid)
            if data is None:
                continue
            try:
                record = records.loads(data)
            except ValueError:
                continue  # a corrupt record is skipped, not fatal: `mlci ledger fsck` names it
            rid = record.get("id")
            if isinstance(rid, str) and rid not in seen:
                seen.add(rid)
                out.append(record)
        for entry in segments:
            for record in _read_segment(blobs.get(entry.oid, b"")):
                rid = record.get("id")
                if isinstance(rid, str) and rid not in seen:
                    seen.add(rid)
                    out.append(record)
        return out

    def _tree_changes(self, old: str, new: str) -> list[tuple[str, str, str, str, str]] | None:
        """(status, new mode, old oid, new oid, path) for each blob that differs; None on error."""
        proc = self.repo.run("diff-tree", "-r", "-z", "--no-renames", old, new, check=False)
        if proc.returncode != 0:
            return None
        parts = proc.stdout.split(b"\0")
        changes = []
        for meta, path in zip(parts[0::2], parts[1::2]):
            if meta:
                _src_mode, dst_mode, src_oid, dst_oid, status = meta.decode().lstrip(":").split()
                changes.append((status, dst_mode, src_oid, dst_oid, path.decode("utf-8", "surrogateescape")))
        return changes

    def added_between(self, old: str, new: str) -> list[TreeEntry] | None:
        """Entries added from `old` to `new`, or None when anything else changed (rebuild)."""
        changes = self._tree_changes(old, new)
        if changes is None or any(c[0] != "A" or not c[4].startswith(EVENTS_DIR) for c in changes):
            return None
        return [TreeEntry(mode, "blob", oid, path) for _status, mode, _old, oid, path in changes]

    def brought_by(self, old: str | None, new: str) -> list[TreeEntry]:
        """The files `new`'s tree adds or changes against `old`'s (all of them when there is no
        `old`): what a merge of `new` could bring. A tree diff: unchanged shards are skipped."""
        changes = self._tree_changes(old, new) if old else None
        if changes is None:
            return self.entries(new)
        return [
            TreeEntry(mode, "blob", oid, path) for status, mode, _old, oid, path in changes if status in ("A", "M", "T")
        ]

    def has_ids(self, ids: Iterable[str], tip: str | None = None) -> set[str]:
        """Which of `ids` the ledger already holds (as event files or in a segment)."""
        wanted = list(dict.fromkeys(ids))
        tip = tip or self.tip()
        if tip is None or not wanted:
            return set()
        present = {
            e.path.rsplit("/", 1)[-1][: -len(".json")]
            for e in self.repo.ls_tree(tip, [records.record_path(i) for i in wanted])
        }
        missing = [i for i in wanted if i not in present]
        if missing:
            seg_lists = [e for e in self.repo.ls_tree(tip, [SEGMENTS_DIR]) if e.path.endswith(".ids")]
            if seg_lists:
                blobs = self.repo.cat_blobs([e.oid for e in seg_lists])
                compacted = set()
                for data in blobs.values():
                    compacted.update(data.decode().split())
                present.update(i for i in missing if i in compacted)
        return present

    # ----------------------------------------------------------------- writing
    def append(self, new_records: Sequence[dict[str, Any]], message: str | None = None) -> str:
        """Write records as one ledger commit; returns the new tip. Safe under concurrency."""
        if not new_records:
            tip = self.tip()
            if tip is None:
                raise MlciError("nothing to append")
            return tip
        files: list[tuple[str, bytes]] = []
        for record in new_records:
            validate_envelope(record)
            # every event type, whoever built it (a trial's log tail, a profile's values): one scrubber
            files.append((records.record_path(record["id"]), records.dumps(scrub(record))))
        message = message or _describe(new_records)
        return self._commit_with_retry(lambda tip: _fast_import_script(self.ref, tip, message, files))

    def union_merge(self, other: str, message: str) -> str:
        """Union the tree at `other` into the local ref: a commit with two parents.

        Record names are unique, so a union of tree entries needs no merge base and no
        conflict resolution; where both sides hold different bytes under one name (two
        clones captured the same commit with different mlci versions) the smaller blob id
        wins, so every clone converges on the same tree.
        """

        def script(tip: str | None) -> bytes | None:
            if tip is None or tip == other:
                return None
            if self.repo.is_ancestor(other, tip):
                return None
            if self.repo.is_ancestor(tip, other):
                return b"ff"
            changes = self._union_changes(tip, other)
            return _fast_import_merge_script(self.ref, tip, other, message, changes)

        def ff(tip: str | None) -> bool:
            return tip is None or (tip != other and self.repo.is_ancestor(tip, other))

        for attempt in range(MAX_ATTEMPTS):
            tip = self.tip()
            if ff(tip):
                if self._cas(other, tip):
                    return other
            else:
                body = script(tip)
                if body is None:
                    assert tip is not None
                    return tip
                new = self._run_fast_import(body)
                if new is not None:
                    return new
            _backoff(attempt)
        raise LedgerConflict(f"{self.ref}: gave up merging after {MAX_ATTEMPTS} concurrent updates")

    def replace_tree(self, files: Sequence[tuple[str, bytes]], message: str, expected_tip: str) -> str | None:
        """Write a commit whose tree is exactly `files` (compaction). None if the tip moved."""
        lines = [b"deleteall\n"]
        for path, data in files:
            lines.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        body = _commit_script(self.ref, expected_tip, message, b"".join(lines))
        return self._run_fast_import(body)

    def _union_changes(self, tip: str, other: str) -> list[tuple[str, str, str]]:
        changes = self._tree_changes(tip, other)
        if changes is None:
            raise GitError(f"git diff-tree {tip[:12]} {other[:12]} failed")
        return [
            (mode, new_oid, path)
            for status, mode, old_oid, new_oid, path in changes
            if status == "A" or (status == "M" and new_oid < old_oid)
        ]

    def _commit_with_retry(self, build: Any) -> str:
        for attempt in range(MAX_ATTEMPTS):
            tip = self.tip()
            new = self._run_fast_import(build(tip))
            if new is not None:
                return new
            _backoff(attempt)
        raise LedgerConflict(f"{self.ref}: gave up after {MAX_ATTEMPTS} concurrent updates; nothing was written")

    def _run_fast_import(self, script: bytes) -> str | None:
        proc = self.repo.run("fast-import", "--quiet", "--done", input=script, check=False)
        if proc.returncode == 0:
            return proc.stdout.decode().strip().splitlines()[-1]
        err = proc.stderr.decode("utf-8", "replace")
        if "Not updating" in err or "cannot lock ref" in err or "but expected" in err:
            self._clear_stale_lock()
            return None
        raise GitError(f"git fast-import failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")

    def _cas(self, new: str, old: str | None) -> bool:
        proc = self.repo.run("update-ref", self.ref, new, old or ZERO_OID, check=False)
        if proc.returncode != 0:
            self._clear_stale_lock()
        return proc.returncode == 0

    def _clear_stale_lock(self) -> None:
        """Remove the ref's lock file when it is older than STALE_LOCK_SECONDS (its writer died)."""
        lock = self.repo.common_dir / f"{self.ref}.lock"
        try:
            if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
                lock.unlink()
        except OSError:
            pass  # no lock, or another writer cleared it first


def validate_envelope(record: dict[str, Any]) -> None:
    rid = record.get("id")
    if not isinstance(rid, str) or not records.is_id(rid):
        raise MlciError(f"ledger record has an invalid id: {rid!r}")
    if not isinstance(record.get("type"), str) or not record["type"]:
        raise MlciError(f"ledger record {rid} has no type")
    if record.get("v") != records.SCHEMA_VERSION or not isinstance(record.get("time"), str):
        raise MlciError(f"ledger record {rid} lacks v or time")


def _describe(new_records: Sequence[dict[str, Any]]) -> str:
    if len(new_records) == 1:
        return f"mlci: {new_records[0]['type']} {new_records[0]['id']}"
    return f"mlci: {len(new_records)} records"


def _commit_script(ref: str, parent: str | None, message: str, changes: bytes, merge: str | None = None) -> bytes:
    msg = message.encode()
    head = (
        (
            f"feature done\ncommit {ref}\nmark :1\ncommitter {COMMITTER} {int(time.time())} +0000\ndata {len(msg)}\n"
        ).encode()
        + msg
        + b"\n"
    )
    if parent:
        head += f"from {parent}\n".encode()
    if merge:
        head += f"merge {merge}\n".encode()
    return head + changes + b"\nget-mark :1\ndone\n"


def _fast_import_script(ref: str, parent: str | None, message: str, files: Sequence[tuple[str, bytes]]) -> bytes:
    body = io.BytesIO()
    for path, data in files:
        body.write(f"M 100644 inline {path}\ndata {len(data)}\n".encode())
        body.write(data)
        body.write(b"\n")
    return _commit_script(ref, parent, message, body.getvalue())


def _fast_import_merge_script(
    ref: str, parent: str, other: str, message: str, changes: Sequence[tuple[str, str, str]]
) -> bytes:
    body = "".join(f"M {mode} {oid} {path}\n" for mode, oid, path in changes).encode()
    return _commit_script(ref, parent, message, body, merge=other)


def _backoff(attempt: int) -> None:
    """Jittered, growing sleep: immediate retries starve one writer (docs/architecture.md: deviation (a))."""
    time.sleep(random.uniform(0.001, 0.004) * min(2 ** min(attempt, 6), 40))


def _read_segment(data: bytes) -> Iterator[dict[str, Any]]:
    if not data:
        return
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data), columns=["body"])
    for body in table.column("body").to_pylist():
        try:
            yield records.loads(body)
        except ValueError:
            continue
