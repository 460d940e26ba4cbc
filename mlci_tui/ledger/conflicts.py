"""Two bodies under one record id: when they differ in what they say, and the conflicts a merge keeps.

A union merge never replaces a record the clone holds with one that says something else
(docs/contracts.md: runs and ids). It keeps its own body in `events/` and files the
incoming one at `conflicts/<id>/<blob>.json` in the same merge commit, where `mlci ledger
fsck`/`status` show it until `mlci ledger resolve` decides. A decision leaves a marker,
`conflicts/<id>/<blob>.resolved`, so that a later union (which never deletes) cannot reopen
it. Queries read only `events/` and `segments/`: a conflict body never reaches a view.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import InputError
from mlci_tui.ledger import records

if TYPE_CHECKING:
    from mlci_tui.ledger.store import LedgerStore

CONFLICTS_DIR = "conflicts/"
RESOLVED = ".resolved"
# What a run record says about how it was captured, not about the run: two clones capturing
# one commit write the same id and differ in these (the capture time, the clone's branch,
# patch-id and staleness, the tool versions, capture or record, what could not be read).
CAPTURE_FIELDS = frozenset(
    {"time", "branch", "patch_id", "stale", "source", "mlci_version", "python_version", "warnings"}
)


@dataclass(frozen=True)
class Conflict:
    """An incoming body kept beside the clone's own for the same record id, not yet resolved."""

    id: str
    blob: str  # the incoming body's blob id (its file under conflicts/)

    @property
    def path(self) -> str:
        return conflict_path(self.id, self.blob)


def conflict_path(record_id: str, blob: str) -> str:
    return f"{CONFLICTS_DIR}{record_id}/{blob}.json"


def resolved_path(record_id: str, blob: str) -> str:
    return f"{CONFLICTS_DIR}{record_id}/{blob}{RESOLVED}"


def meaning(record: dict[str, Any]) -> bytes:
    """The canonical bytes of what a record says: a run without its CAPTURE_FIELDS; any other
    event whole (a tag, a note, a promotion is nothing but what it says)."""
    if record.get("type") == "run":
        record = {k: v for k, v in record.items() if k not in CAPTURE_FIELDS}
    return records.dumps(record)


def same_meaning(ours: bytes, theirs: bytes) -> bool:
    """Whether two bodies for one id say the same thing (unreadable bodies: only when equal)."""
    if ours == theirs:
        return True
    try:
        return meaning(records.loads(ours)) == meaning(records.loads(theirs))
    except ValueError:
        return False


def blob_id(data: bytes, *, sha256: bool = False) -> str:
    """The git object id `data` gets as a blob (a conflict from a segment has no file of its own yet)."""
    digest = hashlib.sha256 if sha256 else hashlib.sha1
    return digest(b"blob %d\0" % len(data) + data).hexdigest()


def open_conflicts(store: LedgerStore, tip: str | None = None) -> list[Conflict]:
    """Conflicts not yet resolved, by id then blob: one `git ls-tree` of `conflicts/` (cheap
    enough for the TUI to call on every ledger change)."""
    tip = tip or store.tip()
    if tip is None:
        return []
    names = {e.path for e in store.repo.ls_tree(tip, [CONFLICTS_DIR], recursive=True) if e.kind == "blob"}
    found = []
    for path in sorted(names):
        parts = path.split("/")
        if len(parts) != 3 or not path.endswith(".json") or not records.is_id(parts[1]):
            continue
        blob = parts[2].removesuffix(".json")
        if resolved_path(parts[1], blob) not in names:
            found.append(Conflict(parts[1], blob))
    return found


def conflict_lines(store: LedgerStore) -> list[str]:
    """One line per open conflict, as `mlci ledger fsck` and `status` print them."""
    return [
        f"{c.path}: conflict: another body for record {c.id} (`mlci ledger resolve {c.id} --keep ours|theirs`)"
        for c in open_conflicts(store)
    ]


def resolve(store: LedgerStore, record_id: str, keep: str) -> str:
    """Close the open conflicts of `record_id`: `ours` keeps the clone's body, `theirs` (or a
    conflict's blob id or unique prefix) puts that body in `events/`. One ledger commit,
    retried like an append; both blobs are marked decided so no later union reopens them."""

    def build(tip: str | None) -> dict[str, str | bytes | None]:
        pending = [c for c in open_conflicts(store, tip) if c.id == record_id]
        if not pending:
            raise InputError(f"resolve: no open conflict for record {record_id!r} (`mlci ledger resolve --list`)")
        chosen = _chosen(pending, keep)
        marker = records.dumps({"id": record_id, "kept": keep if chosen is None else chosen.blob})
        changes: dict[str, str | bytes | None] = {}
        for c in pending:
            changes[c.path] = None
            changes[resolved_path(c.id, c.blob)] = marker
        if chosen is not None:
            assert tip is not None
            _check_body(store, chosen)
            ours = store.repo.ls_tree(tip, [records.record_path(record_id)])
            if ours:
                changes[resolved_path(record_id, ours[0].oid)] = marker
            changes[records.record_path(record_id)] = chosen.blob
        return changes

    return store.update(build, f"mlci: resolve conflict {record_id} ({keep})")


def _chosen(pending: list[Conflict], keep: str) -> Conflict | None:
    """The conflict whose body is kept (None: ours)."""
    if keep == "ours":
        return None
    if keep == "theirs":
        if len(pending) > 1:
            blobs = ", ".join(c.blob[:12] for c in pending)
            raise InputError(
                f"resolve: {len(pending)} bodies conflict with record {pending[0].id}; --keep one of {blobs}"
            )
        return pending[0]
    matches = [c for c in pending if len(keep) >= 4 and c.blob.startswith(keep.lower())]
    if len(matches) != 1:
        raise InputError(f"resolve --keep {keep!r}: not ours, theirs or the blob id of one open conflict")
    return matches[0]


def _check_body(store: LedgerStore, chosen: Conflict) -> None:
    """A body filed under another id, or not a record, is never put in `events/`."""
    body = store.repo.cat_blobs([chosen.blob]).get(chosen.blob, b"")
    try:
        record = records.loads(body)
    except ValueError as exc:
        raise InputError(f"resolve: {chosen.path} is not a readable record ({exc})") from None
    if record.get("id") != chosen.id or records.line_problem(body):
        raise InputError(f"resolve: {chosen.path} is not one record with id {chosen.id}; keep ours")
