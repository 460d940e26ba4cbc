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
import time

from mlci_tui.errors import GitError, MlciError
from mlci_tui.gitio import ZERO_OID, Repo, TreeEntry, parse_raw_tree
from mlci_tui.ledger import records
from mlci_tui.ledger.refs import LEDGER_REF, REMOTE_REF_PREFIX, remote_ref  # noqa: F401 - re-exported
from mlci_tui.scrub import scrub
from mlci_tui.values import Frozen

TYPE_CHECKING = False  # not `from typing import ...`: the post-commit hook appends through this module
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any

    # a running `git cat-file --batch`: (object id, type, bytes) of a name, None when it names nothing
    ReadObject = Callable[[str], tuple[str, str, bytes] | None]

EVENTS_DIR = "events/"
SEGMENTS_DIR = "segments/"
QUARANTINE_DIR = "quarantine/"  # where `ledger fsck --repair` moves bad files; nothing reads it
PUBLISHED_DIR = "published/"  # `ledger publish`'s manifest (publish.py); compaction carries it over
_COMMITTER_NAME, _COMMITTER_EMAIL = "mlci", "mlci@localhost"
COMMITTER = f"{_COMMITTER_NAME} <{_COMMITTER_EMAIL}>"  # fast-import's; commit-tree's below
_COMMITTER_ENV = {
    f"GIT_{who}_{what}": value
    for who in ("AUTHOR", "COMMITTER")
    for what, value in (("NAME", _COMMITTER_NAME), ("EMAIL", _COMMITTER_EMAIL))
}
COMPACTION_SUBJECT = "mlci: compact"  # compact.py's commit: the root of a ledger whose history it dropped
SCRATCH_REF_PREFIX = "refs/mlci/scratch/"  # a commit written before the ledger ref is moved to it
MAX_ATTEMPTS = 60
# A ref lock is held for well under a millisecond; one older than this was left by a writer
# killed mid-update (SIGKILL, OOM) and would otherwise block every later append for good.
STALE_LOCK_SECONDS = 3.0
LARGE_SCRIPT = 8 * 1024 * 1024  # past this, fast-import compresses at level 1 (x3 faster on a 48 MB record)
# What a commit does to a path: an object already in the repository (its id), inline bytes,
# or None to delete it. Appends, merges, compaction and `ledger resolve` all write through it.
Changes = dict[str, str | bytes | None]


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
        """The records these files hold, one per id: an event file's before a segment's copy."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for record, _body in self.versions(entries):
            if record["id"] not in seen:
                seen.add(record["id"])
                out.append(record)
        return out

    def versions(self, entries: Sequence[TreeEntry]) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every readable record in these files with its bytes, duplicate ids included (compaction
        keeps a second meaning as a conflict): event files first, then segments."""
        events = [e for e in entries if e.path.startswith(EVENTS_DIR) and e.path.endswith(".json")]
        segments = [e for e in entries if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".parquet")]
        blobs = self.repo.cat_blobs([e.oid for e in events] + [e.oid for e in segments])
        for entry in events:
            data = blobs.get(entry.oid)
            if data is None:
                continue
            try:
                record = records.loads(data)
            except ValueError:
                continue  # a corrupt record is skipped, not fatal: `mlci ledger fsck` names it
            rid = record.get("id")
            if isinstance(rid, str) and records.record_path(rid) == entry.path:
                yield record, data  # a body filed under another record's name never wins: fsck names it
        from mlci_tui.ledger.segment_read import segment_records  # pyarrow: only where segments are

        for entry in segments:
            for record, body in segment_records(blobs.get(entry.oid, b"")):
                if isinstance(record.get("id"), str):
                    yield record, body

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

    def has_ids(self, ids: Iterable[str], tip: str | None = None, read: ReadObject | None = None) -> set[str]:
        """Which of `ids` the ledger already holds (as event files or in a segment). `read` is a
        running `git cat-file --batch` (`ObjectReader.read`): a capture's few ids are looked up
        there, by name, with no process of their own; otherwise (many ids: merges, back-fill) two
        `ls-tree`s list them."""
        wanted = list(dict.fromkeys(ids))
        tip = tip or self.tip()
        if tip is None or not wanted:
            return set()
        if read is not None:
            present = {i for i in wanted if read(f"{tip}:{records.record_path(i)}") is not None}
        else:
            present = {
                e.path.rsplit("/", 1)[-1][: -len(".json")]
                for e in self.repo.ls_tree(tip, [records.record_path(i) for i in wanted])
            }
        missing = [i for i in wanted if i not in present]
        if missing:
            compacted = set()
            for data in self._segment_id_lists(tip, read):
                compacted.update(data.decode().split())
            present.update(i for i in missing if i in compacted)
        return present

    def _segment_id_lists(self, tip: str, read: ReadObject | None) -> list[bytes]:
        """The `.ids` list of every segment at `tip` (the ids each compacted segment holds)."""
        if read is None:
            lists = [e for e in self.repo.ls_tree(tip, [SEGMENTS_DIR]) if e.path.endswith(".ids")]
            return list(self.repo.cat_blobs([e.oid for e in lists]).values()) if lists else []
        folder = read(f"{tip}:{SEGMENTS_DIR.rstrip('/')}")
        if folder is None or folder[1] != "tree":
            return []
        got = (read(oid) for _mode, name, oid in parse_raw_tree(folder[2]) if name.endswith(".ids"))
        return [g[2] for g in got if g is not None]

    # ----------------------------------------------------------------- writing
    def append(
        self, new_records: Sequence[dict[str, Any]], message: str | None = None, *, expected_tip: str | None = None
    ) -> str:
        """Write records as one ledger commit; returns the new tip. Safe under concurrency.
        `expected_tip`: the tip the caller read (a capture, through its `cat-file`): the first
        attempt builds on it without a `rev-parse`; had the ref moved, fast-import refuses the
        update and the next attempt reads the ref."""
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
        return self._commit_with_retry(lambda tip: _fast_import_script(self.ref, tip, message, files), expected_tip)

    def union_merge(self, other: str, message: str) -> str:
        """Union the tree at `other` into the local ref: a commit with two parents.

        Record names are unique, so a union of tree entries needs no merge base. It never
        replaces a record this clone holds with one that says something else: where both
        sides hold one id with different bytes, bodies of the same meaning (two clones
        captured one commit: `conflicts.CAPTURE_FIELDS` differ) converge on the smaller blob
        id, and any other incoming body is kept at `conflicts/<id>/<blob>.json` in the same
        commit (docs/ledger.md: merging). Still a tree diff: only paths present on both
        sides with different blobs are read, in one batch.

        Two ledgers that share no history because one was compacted (a compaction commit has no
        parent) merge into a commit with one parent (`_disjoint_base`): the history the
        compaction dropped is not brought back by the next pull or push (docs/ledger.md: history).
        """

        for attempt in range(MAX_ATTEMPTS):
            tip = self.tip()
            if tip is not None and (tip == other or self.repo.is_ancestor(other, tip)):
                return tip
            if tip is None or self.repo.is_ancestor(tip, other):
                # a fast-forward, unless it would replace or drop a record this clone holds
                changes = None if tip is None else self._union_changes(tip, other, fast_forward=True)
                if changes is None:
                    if self._cas(other, tip):
                        return other
                    _backoff(attempt)
                    continue
            else:
                changes = self._union_changes(tip, other)
            assert tip is not None and changes is not None
            base = self._disjoint_base(tip, other)
            if base is None:
                new = self._run_fast_import(_fast_import_merge_script(self.ref, tip, other, message, changes))
            else:
                new = self._merge_onto(base, tip, message, changes)
            if new is not None:
                return new
            _backoff(attempt)
        raise LedgerConflict(f"{self.ref}: gave up merging after {MAX_ATTEMPTS} concurrent updates")

    def _disjoint_base(self, tip: str, other: str) -> str | None:
        """The one parent of a union of two ledgers without common history when one of them was
        compacted, else None (a merge with both parents). Ours only when ours starts at a
        compaction and theirs does not (the push then replaces the remote's history); in every
        other case theirs, so that clones converge on one history and pushes fast-forward."""
        if self.repo.run("merge-base", tip, other, check=False).returncode == 0:
            return None
        ours, theirs = self._starts_at_compaction(tip), self._starts_at_compaction(other)
        if not (ours or theirs):
            return None
        return tip if ours and not theirs else other

    def _without_redacted(self, tip: str, changes: Changes) -> Changes:
        """`changes` less the incoming event files of records our compaction dropped because a
        tombstone redacts them (or what they refer to): with no common history, nothing else
        tells a record we dropped from one we never had."""
        added = {
            rid: blob for path, blob in changes.items() for rid in [_record_name(path)] if rid and isinstance(blob, str)
        }
        if not added:
            return changes
        redacted = self.redacted_ids(tip)
        blobs = self.repo.cat_blobs(list(added.values()))
        redacted |= {t for body in blobs.values() for t in [records.redaction_target(body)] if t}
        drop = {
            rid for rid, blob in added.items() if rid in redacted or records.target_of(blobs.get(blob, b"")) in redacted
        }
        return {path: what for path, what in changes.items() if _record_name(path) not in drop}

    def _starts_at_compaction(self, commit: str) -> bool:
        roots = self.repo.text("rev-list", "--max-parents=0", "--first-parent", commit).split()
        if not roots:
            return False
        return self.repo.text("log", "-1", "--format=%s", roots[-1]).startswith(COMPACTION_SUBJECT)

    def _merge_onto(self, base: str, tip: str, message: str, changes: Changes) -> str | None:
        """The union (`tip`'s tree and `changes`) as a commit whose one parent is `base`; None
        when the ref moved meanwhile."""
        if base == tip:
            changes = self._without_redacted(tip, changes)
            if not changes:
                return tip  # theirs holds nothing ours lacks (ours compacted it): no commit
        union = self._commit_detached(tip, message, _changes_script(changes))
        if base != tip:
            union = self._recommit(union, message, parent=base)
        if not self._cas(union, tip):
            return None
        self._gc_keeps_dropped_history_packed()
        return union

    def replace_tree(
        self,
        files: Sequence[tuple[str, bytes | str]],
        message: str,
        expected_tip: str,
        keep: Sequence[TreeEntry] = (),
        trailer: Callable[[str], str] | None = None,
    ) -> str | None:
        """Write a commit whose tree is exactly `files` (inline bytes, or the id of a blob already
        written: compaction's segments) plus the `keep` entries as they are (compaction carries
        `conflicts/` over), and move the ref from `expected_tip` to it. None if the tip moved.

        The commit has no parent: the ledger's history before it is dropped, so a clone fetches
        the segments and not every event file the ledger ever held (docs/ledger.md: history).
        What a record-keeping check needs is the records themselves, which the tree holds.
        `trailer`: the tree id -> text the message ends with (a signed compaction's signature)."""
        changes: Changes = {e.path: e.oid for e in keep}
        changes.update(files)
        new = self._commit_detached(None, message, b"deleteall\n" + _changes_script(changes))
        if trailer is not None:  # the tree is known once written: the same tree, a message that names it
            new = self._recommit(new, message, trailer=trailer)
        if not self._cas(new, expected_tip):
            return None
        self._gc_keeps_dropped_history_packed()
        return new

    def _gc_keeps_dropped_history_packed(self) -> None:
        """History a compaction (or a merge onto a compacted ledger) dropped is unreachable, and
        `git gc` before git 2.40 writes every recent unreachable object out loose: about one file
        per event file the ledger ever had (12,040 loose objects, 48 MB, for 10k runs, against
        7 MB packed). Cruft packs keep them in one pack until git's grace period ends, so where
        the user has not chosen either way, `gc.cruftPacks` is set in this repository (git's
        own default since 2.40; no effect before 2.37)."""
        if self.repo.run("config", "--get", "gc.cruftPacks", check=False).returncode == 0:
            return  # the user's choice stands
        version = self.repo.text("version").split()[-1].split(".")
        try:
            if (int(version[0]), int(version[1])) >= (2, 40):
                return
        except (ValueError, IndexError):
            pass
        self.repo.run("config", "gc.cruftPacks", "true", check=False)

    def _recommit(
        self, commit: str, message: str, *, parent: str | None = None, trailer: Callable[[str], str] | None = None
    ) -> str:
        """A commit of `commit`'s tree (written by fast-import, which cannot give it these) with
        `parent` as its one parent (none: a root) and `message`, plus what `trailer` makes of the
        tree id."""
        tree = self.repo.text("rev-parse", f"{commit}^{{tree}}").strip()
        text = message + (trailer(tree) if trailer is not None else "")
        return self.repo.text(
            "commit-tree", tree, *(["-p", parent] if parent else []), "-m", text, env=_COMMITTER_ENV
        ).strip()

    def _commit_detached(self, parent: str | None, message: str, changes: bytes) -> str:
        """A commit written by fast-import on a scratch ref of this process (so fast-import's own
        fast-forward rule does not apply), which is deleted again: the caller moves the ledger ref."""
        import os

        from mlci_tui.file_lock import pid_alive

        scratch = f"{SCRATCH_REF_PREFIX}{os.getpid()}"
        for ref in self.repo.text("for-each-ref", "--format=%(refname)", SCRATCH_REF_PREFIX).split():
            pid = ref.removeprefix(SCRATCH_REF_PREFIX)
            if not (pid.isdigit() and pid_alive(int(pid))):  # its writer was killed mid-way
                self.repo.run("update-ref", "-d", ref, check=False)
        proc = self.repo.run(
            "fast-import",
            "--quiet",
            "--done",
            "--force",
            input=_commit_script(scratch, parent, message, changes),
            check=False,
        )
        self.repo.run("update-ref", "-d", scratch, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise GitError(f"git fast-import failed: {err.splitlines()[-1] if err else proc.returncode}")
        return proc.stdout.decode().strip().splitlines()[-1]

    def update(self, build: Callable[[str | None], Changes], message: str) -> str:
        """One commit of the changes `build(tip)` returns for the current tip; rebuilt and retried
        like an append when another writer moved the ref (`ledger resolve`)."""
        return self._commit_with_retry(lambda tip: _commit_script(self.ref, tip, message, _changes_script(build(tip))))

    def _union_changes(self, tip: str, other: str, *, fast_forward: bool = False) -> Changes | None:
        """What `other` adds to `tip`: new files; for a record both hold with different bytes,
        the smaller blob when they mean the same, else a conflict entry; never a deletion.
        With `fast_forward` (`other` descends from `tip`): None when moving the ref to `other`
        keeps every record of `tip` as it is (the common case), else the merge's changes."""
        from mlci_tui.ledger.conflicts import blob_id, conflict_path, resolved_path, same_meaning  # merges only

        changes = self._tree_changes(tip, other)
        if changes is None:
            raise GitError(f"git diff-tree {tip[:12]} {other[:12]} failed")
        out: Changes = {}
        both: dict[str, tuple[str, str]] = {}  # record id -> (our blob, their blob): one path, two bodies
        added: dict[str, str] = {}  # record id -> their blob, for event files new to this tree
        segments: list[tuple[str, str]] = []  # (path, blob) of their segments new to this tree
        dropped: set[str] = set()  # records whose event file `other` no longer has
        for status, _mode, old, new, path in changes:
            rid = _record_name(path)
            if status == "M" and rid is not None:
                both[rid] = (old, new)
            elif status == "A" and rid is not None:
                added[rid] = new
                out[path] = new
            elif status == "A" and path.endswith(".parquet") and path.startswith(SEGMENTS_DIR):
                segments.append((path, new))
            elif status == "A":
                out[path] = new  # conflicts/ entries and markers, segment id lists, a newer mlci's files
            elif status == "D" and rid is not None:
                dropped.add(rid)
            # "D": a union never deletes; "M" elsewhere (a segment, a marker): the local file stays
        pairs: list[_Pair] = []
        if both:
            blobs = self.repo.cat_blobs([b for pair in both.values() for b in pair])
            for rid, (old, new) in both.items():
                pairs.append(_Pair(rid, blobs.get(old, b""), blobs.get(new, b""), old, new))
        local_segments = [e for e in self.repo.ls_tree(tip, [SEGMENTS_DIR]) if e.path.endswith(".parquet")]
        if local_segments and added:
            # a record this clone compacted comes back as an event file: the segment holds ours
            compacted = self._segment_ids(tip) & added.keys()
            if compacted:
                from mlci_tui.ledger.segment_read import segment_bodies

                ours = segment_bodies(self.repo.cat_blobs([e.oid for e in local_segments]).values(), compacted)
                blobs = self.repo.cat_blobs([added[rid] for rid in compacted])
                pairs += [_Pair(rid, ours[rid], blobs.get(added[rid], b""), None, added[rid]) for rid in ours]
        for path, blob in segments:
            pairs += self._union_segment(tip, path, blob, out)
        differ = [p.id for p in pairs if not same_meaning(p.ours, p.theirs)]
        if fast_forward and not differ and not (dropped - self.has_ids(dropped, other)):
            return None  # e.g. another clone's compaction: every dropped file is in its segment
        decided = self._decided(tip, differ)
        sha256 = len(tip) == 64
        for pair in pairs:
            path = records.record_path(pair.id)
            if same_meaning(pair.ours, pair.theirs):
                # one meaning, two byte strings: every clone converges on the smaller blob id
                if pair.our_blob is not None and pair.their_blob is not None and pair.their_blob < pair.our_blob:
                    out[path] = pair.their_blob
                elif pair.our_blob is None and pair.ours == pair.theirs and _adds(out, path, pair.their_blob):
                    del out[path]  # our segment holds these very bytes: the loose copy adds nothing
                # (a record of their split segment that we hold as it is: no blob, nothing to change)
                continue
            blob = pair.their_blob or blob_id(pair.theirs, sha256=sha256)
            if _adds(out, path, pair.their_blob):
                del out[path]  # their event file does not come in beside our compacted record
            out.pop(resolved_path(pair.id, blob), None)  # their decision is not ours: it stays open here
            if (pair.id, blob) not in decided:
                out[conflict_path(pair.id, blob)] = pair.their_blob or pair.theirs
        for path in self._quarantined(tip, out):
            del out[path]  # `fsck --repair` moved these very bytes aside: a pull does not bring them back
        return out

    def _quarantined(self, tip: str, out: Changes) -> list[str]:
        """The paths of `out` whose blob the tree at `tip` holds under `quarantine/<path>`."""
        held = self.repo.ls_tree(tip, [QUARANTINE_DIR], recursive=True)
        if not held:
            return []
        return [
            path
            for e in held
            for path in [e.path.removeprefix(QUARANTINE_DIR)]
            if isinstance(out.get(path), str) and out[path] == e.oid
        ]

    def record_ids(self, tip: str) -> set[str]:
        """Every record id the tree at `tip` holds: event files, segments' `.ids` lists, and files
        `fsck --repair` moved aside (kept, not dropped). Names only: no record is read."""
        held = {
            name
            for e in self.repo.ls_tree(tip, [EVENTS_DIR, QUARANTINE_DIR + EVENTS_DIR], recursive=True)
            for name in [event_name(e.path.removeprefix(QUARANTINE_DIR))]
            if name is not None
        }
        return held | self._segment_ids(tip)

    def redacted_ids(self, tip: str) -> set[str]:
        """The targets of the redaction tombstones at `tip` (the records a compaction may drop).
        Event files are read (few, after a compaction); of a segment only its tombstones' rows."""
        entries = self.entries(tip)
        events = [e for e in entries if _record_name(e.path)]
        segments = [e for e in entries if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".parquet")]
        bodies = self.repo.cat_blobs([e.oid for e in events]).values()
        out = {t for data in bodies if b'"redact"' in data for t in [records.redaction_target(data)] if t}
        if segments:
            from mlci_tui.ledger.segment_read import redaction_targets

            for data in self.repo.cat_blobs([e.oid for e in segments]).values():
                try:
                    out |= redaction_targets(io.BytesIO(data))
                except Exception:  # noqa: BLE001 - an unreadable segment holds no tombstone to honour; fsck names it
                    continue
        return out

    def _segment_ids(self, tip: str) -> set[str]:
        lists = [e for e in self.repo.ls_tree(tip, [SEGMENTS_DIR]) if e.path.endswith(".ids")]
        return {i for data in self.repo.cat_blobs([e.oid for e in lists]).values() for i in data.decode().split()}

    def _union_segment(self, tip: str, path: str, blob: str, out: Changes) -> list[_Pair]:
        """Their new segment comes in whole when it holds nothing that differs from ours; otherwise
        its records come in as event files, and those that differ as conflicts (the pairs returned)."""
        from mlci_tui.ledger.conflicts import same_meaning  # merges only: not on the append's path
        from mlci_tui.ledger.segment_read import segment_bodies

        bodies = segment_bodies([self.repo.cat_blobs([blob]).get(blob, b"")], None)
        present = self.has_ids(bodies, tip)
        ours = self.bodies(tip, present) if present else {}
        pairs = [_Pair(rid, ours[rid], bodies[rid], None, None) for rid in ours]
        if all(same_meaning(p.ours, p.theirs) for p in pairs):
            out[path] = blob
            # our loose files of records the segment holds byte for byte go: the trees converge
            same = [records.record_path(p.id) for p in pairs if p.ours == p.theirs]
            loose = self.repo.ls_tree(tip, same) if same else []  # no paths would list the root
            wanted = set(same)
            out.update((e.path, None) for e in loose if e.kind == "blob" and e.path in wanted and e.path not in out)
            return []
        out.pop(path.removesuffix(".parquet") + ".ids", None)
        out.update((records.record_path(rid), body) for rid, body in bodies.items() if rid not in present)
        return pairs

    def bodies(self, tip: str, ids: set[str]) -> dict[str, bytes]:
        """This tree's body of each record in `ids`: its event file, else its segment's copy."""
        files = self.repo.ls_tree(tip, [records.record_path(i) for i in ids])
        blobs = self.repo.cat_blobs([e.oid for e in files])
        found = {rid: blobs.get(e.oid, b"") for e in files for rid in [_record_name(e.path)] if rid}
        rest = ids - found.keys()
        if rest:
            from mlci_tui.ledger.segment_read import segment_bodies

            segs = [e.oid for e in self.repo.ls_tree(tip, [SEGMENTS_DIR]) if e.path.endswith(".parquet")]
            found.update(segment_bodies(self.repo.cat_blobs(segs).values(), rest))
        return found

    def _decided(self, tip: str, ids: list[str]) -> set[tuple[str, str]]:
        """(record id, blob) pairs this clone has resolved already (their `.resolved` markers)."""
        if not ids:
            return set()
        from mlci_tui.ledger.conflicts import CONFLICTS_DIR

        entries = self.repo.ls_tree(tip, [f"{CONFLICTS_DIR}{i}/" for i in set(ids)], recursive=True)
        return {
            (parts[1], parts[2].removesuffix(".resolved"))
            for parts in (e.path.split("/") for e in entries)
            if len(parts) == 3 and parts[2].endswith(".resolved")
        }

    def _commit_with_retry(self, build: Any, expected_tip: str | None = None) -> str:
        for attempt in range(MAX_ATTEMPTS):
            tip = expected_tip if attempt == 0 and expected_tip else self.tip()
            new = self._run_fast_import(build(tip))
            if new is not None:
                return new
            _backoff(attempt)
        raise LedgerConflict(f"{self.ref}: gave up after {MAX_ATTEMPTS} concurrent updates; nothing was written")

    def _run_fast_import(self, script: bytes) -> str | None:
        # a record of tens of MB (a huge params file): zlib's default level costs seconds there
        fast = ("-c", "core.compression=1") if len(script) > LARGE_SCRIPT else ()
        proc = self.repo.run(*fast, "fast-import", "--quiet", "--done", input=script, check=False)
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


def refuse_misnamed(events: Sequence[TreeEntry]) -> Callable[[int, bytes], str | None]:
    """For the cache build (`Repo.cat_blobs_to_lines`, called with the position in `events` of
    each file it reads): why that event file is not read, or None. It must be one record
    (`records.line_problem`) whose id is its file name, so that a body filed under another
    record's name never shadows that record. The id costs a substring search."""
    return refuse_by_name([event_name(entry.path) for entry in events])


def event_name(path: str) -> str | None:
    """events/ab/<id>.json -> <id> (26 characters); None for a file not where records.record_path puts one."""
    ok = len(path) == 41 and path[7:9] == path[10:12] and path.startswith(EVENTS_DIR) and path.endswith(".json")
    return path[10:-5] if ok else None


def refuse_by_name(names: Sequence[str | None]) -> Callable[[int, bytes], str | None]:
    """`refuse_misnamed` from each file's `event_name` alone (compaction keeps no paths)."""

    def refuse(n: int, line: bytes) -> str | None:
        problem = records.line_problem(line)
        if problem:
            return problem
        rid = _body_id(line)
        if rid is None or rid != names[n]:
            return "its id does not match its path"
        return None

    return refuse


def _body_id(line: bytes) -> str | None:
    if line.count(b'"id":"') == 1:
        start = line.index(b'"id":"') + 6
        return line[start : line.find(b'"', start)].decode("utf-8", "replace")
    try:
        rid = records.loads(line).get("id")
    except ValueError:
        return None
    return rid if isinstance(rid, str) else None


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
    return _commit_script(ref, parent, message, _changes_script(dict(files)))


def _fast_import_merge_script(ref: str, parent: str, other: str, message: str, changes: Changes) -> bytes:
    return _commit_script(ref, parent, message, _changes_script(changes), merge=other)


def _changes_script(changes: Changes) -> bytes:
    """fast-import file commands: an existing object by id, inline bytes, or a deletion."""
    body = io.BytesIO()
    for path, what in changes.items():
        if what is None:
            body.write(f"D {path}\n".encode())
        elif isinstance(what, str):
            body.write(f"M 100644 {what} {path}\n".encode())
        else:
            body.write(f"M 100644 inline {path}\ndata {len(what)}\n".encode() + what + b"\n")
    return body.getvalue()


class _Pair(Frozen):
    """One record id, two bodies: ours and theirs, with their blob ids where they are files."""

    __slots__ = ("id", "ours", "theirs", "our_blob", "their_blob")
    id: str
    ours: bytes
    theirs: bytes
    our_blob: str | None
    their_blob: str | None

    def __init__(self, id: str, ours: bytes, theirs: bytes, our_blob: str | None, their_blob: str | None) -> None:
        for name, value in zip(self.__slots__, (id, ours, theirs, our_blob, their_blob)):
            object.__setattr__(self, name, value)


def _adds(out: Changes, path: str, blob: str | None) -> bool:
    """Whether the merge's changes add `blob` at `path` (a deletion or no blob is not an addition)."""
    return blob is not None and out.get(path) == blob


def _record_name(path: str) -> str | None:
    """The record id an `events/` path names, or None for any other path."""
    if not (path.startswith(EVENTS_DIR) and path.endswith(".json")):
        return None
    rid = path.rsplit("/", 1)[-1][: -len(".json")]
    return rid if records.is_id(rid) and records.record_path(rid) == path else None


def _backoff(attempt: int) -> None:
    """Jittered, growing sleep: immediate retries starve one writer (docs/architecture.md: deviation (a))."""
    import random  # lazy: only a writer that lost a race waits

    time.sleep(random.uniform(0.001, 0.004) * min(2 ** min(attempt, 6), 40))
