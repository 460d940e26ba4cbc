"""Checking ledger files: what `mlci ledger fsck` checks in the whole tree, what `ledger pull`
checks in what a remote would bring, and what `fsck --repair` moves aside. One rule for each
kind of file (docs/ledger.md, "Checking a ledger").

A record, whether an event file or a row of a segment, must be one canonical-JSON object
(the bytes `records.dumps` writes for it, so it cannot carry a second meaning in whitespace,
key order or a duplicate key), within the size limits, of a known type whose fields have the
shape the cache reads, and named by an id that matches its path and, where mlci derives ids
(a commit's run, an import, a trial), what its body says. A record from a newer mlci (a
higher `v`) is a warning, checked only as far as this version knows.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlci_tui.errors import first_line
from mlci_tui.gitio import TreeEntry
from mlci_tui.ledger import records
from mlci_tui.ledger.conflicts import blob_id
from mlci_tui.ledger.events import KNOWN_TYPES, TRIAL_STATE_OF
from mlci_tui.ledger.publish import MANIFEST_PATH, manifest_problem
from mlci_tui.ledger.segment_read import canonical, is_residual_layout, read_bodies, table_rebuilt
from mlci_tui.ledger.store import EVENTS_DIR, QUARANTINE_DIR, SEGMENTS_DIR, LedgerStore

MAX_RECORD_BYTES = 64 * 1024 * 1024  # the params/metrics file limit: no record legitimately holds more
# A params file may nest 64 deep (config `limits`); a run record puts it 3 levels down.
MAX_DEPTH = 96
MAX_KEYS = 1_000_000  # a run holds several params/metrics files of up to 100,000 keys each
_SHOWN = 3  # example rows named per bad segment

_encode = _canonical = canonical  # records.dumps without its float walk, the C encoder made once
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a SHA-1 or SHA-256 git object id
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


# ------------------------------------------------------------------ record schema
# Per type, the fields the cache reads and the shape it needs (an absent field is None).
Check = Callable[[Any], bool]


_INNER: dict[Check, Check] = {}  # an optional field's check -> the check of a present value


def _opt(check: Check) -> Check:
    optional: Check = lambda v: v is None or check(v)  # noqa: E731 - registered below
    _INNER[optional] = check
    return optional


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _hex(v: Any) -> bool:
    return isinstance(v, str) and _HEX.fullmatch(v) is not None


def _time(v: Any) -> bool:
    return isinstance(v, str) and _TIME.fullmatch(v) is not None


def _number(v: Any) -> bool:
    """A metric value: a JSON number, or a `{"$float": ...}` wrapper (NaN, infinities)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
        isinstance(v, dict) and len(v) == 1 and records.FLOAT_KEY in v
    )


def _params(v: Any) -> bool:
    """file -> {name -> value}."""
    return isinstance(v, dict) and all(isinstance(m, dict) for m in v.values())


def _metrics(v: Any) -> bool:
    """file -> {name -> number}: loops, not a call per value (a run may hold 100,000)."""
    if not isinstance(v, dict):
        return False
    for names in v.values():
        if not isinstance(names, dict):
            return False
        for x in names.values():
            kind = type(x)
            if kind is not float and kind is not int and not (kind is dict and len(x) == 1 and records.FLOAT_KEY in x):
                return False
    return True


def _step(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 4
        and isinstance(v[0], str)
        and isinstance(v[1], str)
        and isinstance(v[2], int)
        and (v[3] is None or _number(v[3]))
    )


_ID: Check = records.is_id
_TEXT, _OBJECT = _opt(_str), _opt(lambda v: isinstance(v, dict))
_STRINGS = _opt(lambda v: isinstance(v, list) and (not v or all(isinstance(s, str) for s in v)))
_STEPS = _opt(lambda v: isinstance(v, list) and (not v or all(_step(s) for s in v)))
_WANT = {_ID: "a record id", _TEXT: "a string or null", _OBJECT: "an object or null"}

SCHEMAS: dict[str, dict[str, tuple[Check, str]]] = {
    "run": {
        "run_id": (_ID, "the record's id"),
        **{f: (_TEXT, _WANT[_TEXT]) for f in ("kind", "name", "status", "source", "branch", "author", "message")},
        **{f: (_TEXT, _WANT[_TEXT]) for f in ("parent", "sweep_id", "trial_id", "mlci_version", "python_version")},
        **{f: (_opt(_time), "an ISO 8601 UTC time or null") for f in ("started", "ended")},
        **{f: (_opt(_hex), "a full git object id or null") for f in ("commit", "tree", "patch_id")},
        "stale": (_opt(lambda v: isinstance(v, bool)), "true, false or null"),
        "datasets": (_OBJECT, _WANT[_OBJECT]),
        "deps": (_OBJECT, _WANT[_OBJECT]),
        "warnings": (_STRINGS, "a list of strings"),
        "params": (_opt(_params), "an object of objects (file -> name -> value)"),
        "metrics": (_opt(_metrics), "an object of objects of numbers (file -> name -> number)"),
        "steps": (_STEPS, "a list of [file, name, step, value] rows"),
    },
    "tag": {
        "target": (_ID, "a record id"),
        "name": (_str, "a string"),
        "remove": (_opt(lambda v: isinstance(v, bool)), "true, false or null"),
    },
    "note": {"target": (_ID, "a record id"), "text": (_str, "a string")},
    "promote": {
        "target": (_ID, "a record id"),
        "stage": (_str, "a string"),
        **{f: (_TEXT, _WANT[_TEXT]) for f in ("model", "model_hash", "by")},
    },
    "redact": {"target": (_ID, "a record id"), "reason": (_TEXT, _WANT[_TEXT])},
    "validation": {"dataset": (_TEXT, _WANT[_TEXT]), "status": (_TEXT, _WANT[_TEXT])},
    "profile": {"content_hash": (_TEXT, _WANT[_TEXT]), "columns": (_OBJECT, _WANT[_OBJECT])},
    "sweep": {"name": (_TEXT, _WANT[_TEXT]), "spec": (_OBJECT, _WANT[_OBJECT])},
    "trial": {
        "sweep_id": (_ID, "a record id"),
        "trial_id": (_ID, "a record id"),
        "state": (lambda v: v in TRIAL_STATE_OF, "one of " + ", ".join(TRIAL_STATE_OF)),
    },
}
assert set(SCHEMAS) == set(KNOWN_TYPES), "every type this version reads has its schema here"
# The same schemas split for speed: the string-or-null fields in one loop, the rest by their
# check, an optional one's (`_opt`) called only on a present value (None passes it).
_SPLIT = {
    etype: (
        tuple(n for n, (check, _) in fields.items() if check is _TEXT),
        [
            (n, _INNER.get(check, check), check in _INNER, want)
            for n, (check, want) in fields.items()
            if check is not _TEXT
        ],
    )
    for etype, fields in SCHEMAS.items()
}


def _derivation(record: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """(what the id derives from, the parts `records.derived_id` takes) for records whose id
    mlci derives from their content; None for random ids."""
    etype, kind, source = record.get("type"), record.get("kind"), record.get("source")
    if etype == "run":
        if kind == "commit":  # capture: one run per commit, whichever clone captured it
            return "commit", ("commit", str(record.get("commit")))
        if source == "import:dvc" and kind in ("import", "experiment"):
            return "commit", (str(kind), str(record.get("commit")))
        if source == "import:mlflow":
            imported = record.get("import")
            return "MLflow run id", (
                "import",
                "mlflow",
                str(imported.get("run_id") if isinstance(imported, dict) else None),
            )
        if kind == "trial" and source == "sweep":
            return "trial_id", ("trial-run", str(record.get("trial_id")))
    if etype == "trial" and record.get("state") in ("done", "queued"):
        return "trial_id", (f"trial-{record['state']}", str(record.get("trial_id")))
    return None


# ------------------------------------------------------------------ one record
@dataclass
class RecordCheck:
    """What is wrong with one record (refused), or what to say about it (kept)."""

    problem: str | None = None
    warning: str | None = None
    type: str | None = None  # the record's type, once it parsed


def check_record(text: str, *, path: str | None = None, row_id: str | None = None) -> RecordCheck:
    """One record's text (with its newline), named by an event-file `path` or a segment's id
    column (`row_id`). Bytes are checked by the caller (`check_record_file`)."""
    if text.count("\n") != 1 or not text.endswith("\n"):
        return RecordCheck(f"{text.count(chr(10))} lines; a record is one line")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return RecordCheck(f"not JSON ({first_line(exc)})")
    if not isinstance(record, dict):
        return RecordCheck("not a JSON object")
    try:
        canonical = _encode(record) + "\n" == text
    except (ValueError, RecursionError):  # NaN or Infinity as a bare JSON literal
        canonical = False
    if not canonical:
        return RecordCheck("not canonical JSON (whitespace, key order, a duplicate key or a number's form)")
    return _check_canonical(text, record, path, row_id)


def _check_canonical(text: str, record: dict[str, Any], path: str | None, row_id: str | None) -> RecordCheck:
    """The rest of `check_record`, for a record whose text is its canonical form."""
    limit = _size_problem(text, record)
    if limit:
        return RecordCheck(limit)
    rid = record.get("id")
    if not isinstance(rid, str) or not records.is_id(rid):
        return RecordCheck(f"id {rid!r} is not a record id (26 base32 characters)")
    if path is not None and records.record_path(rid) != path:
        return RecordCheck(f"id {rid} does not match its path")
    if row_id is not None and rid != row_id:
        return RecordCheck(f"body's id {rid} differs from the id column ({row_id!r})")
    return _content(record, rid)


def _content(record: dict[str, Any], rid: str) -> RecordCheck:
    found = _envelope_and_fields(record, rid)
    found.type = record.get("type") if isinstance(record.get("type"), str) else None
    return found


def _envelope_and_fields(record: dict[str, Any], rid: str) -> RecordCheck:
    etype, v = record.get("type"), record.get("v")
    if not isinstance(etype, str) or not _TYPE_NAME.fullmatch(etype):
        return RecordCheck(f"type {etype!r} is not a type name")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        return RecordCheck(f"v {v!r} is not a schema version")
    if not _time(record.get("time")):
        return RecordCheck(f"time {record.get('time')!r} is not an ISO 8601 UTC time")
    if v > records.SCHEMA_VERSION:
        return RecordCheck(
            warning=f"{etype} record {rid} is of schema v{v} (this mlci reads v{records.SCHEMA_VERSION}); "
            "kept, its fields unchecked: upgrade mlci to read it"
        )
    split = _SPLIT.get(etype)
    if split is None:
        return RecordCheck(f"unknown type {etype!r} at v{v} (no mlci of this schema writes it)")
    texts, others = split
    for name in texts:
        value = record.get(name)
        if value is not None and type(value) is not str:
            return RecordCheck(f"{etype} field {name!r} must be a string or null")
    for name, check, optional, want in others:
        value = record.get(name)
        if check is _ID and value == rid:  # the record's own id, already checked (a run's run_id)
            continue
        if (value is not None or not optional) and not check(value):
            return RecordCheck(f"{etype} field {name!r} must be {want}")
    if etype == "run" and record["run_id"] != rid:
        return RecordCheck(f"run_id {record['run_id']} differs from its id")
    derived = _derivation(record)
    if derived is not None and records.derived_id(*derived[1]) != rid:
        return RecordCheck(f"id {rid} does not derive from its {derived[0]}")
    return RecordCheck()


def _size_problem(text: str, record: dict[str, Any]) -> str | None:
    """Nesting depth and key count: the bracket and colon counts bound both, so only a record
    that could exceed a limit is walked."""
    might_nest = text.count("{") + text.count("[") > MAX_DEPTH
    if not might_nest and text.count(":") <= MAX_KEYS:
        return None
    keys = 0
    stack: list[tuple[Any, int]] = [(record, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH}"
        if isinstance(value, dict):
            keys += len(value)
            if keys > MAX_KEYS:
                return f"more than {MAX_KEYS:,} keys"
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        else:
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return None


def check_record_file(path: str, body: bytes) -> RecordCheck:
    """An event file: one record of UTF-8 under `events/<id[:2]>/<id>.json`."""
    if len(body) > MAX_RECORD_BYTES:
        return RecordCheck(f"{len(body):,} bytes; larger than any record")
    problem = records.line_problem(body)
    if problem:
        return RecordCheck(problem)
    return check_record(body.decode("utf-8"), path=path)


def record_file_problem(path: str, body: bytes) -> str | None:
    """Why an event file is not a valid record ("path: reason"), or None."""
    problem = check_record_file(path, body).problem
    return f"{path}: {problem}" if problem else None


# ------------------------------------------------------------------ a tree's files
@dataclass
class Verdict:
    """Problems (path, reason) refuse a pull and fail fsck; warnings are said and kept."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{path}: {reason}" for path, reason in self.problems]

    def bad_paths(self) -> list[str]:
        return sorted({path for path, _ in self.problems})


def check_files(
    store: LedgerStore, entries: Sequence[TreeEntry], tree: str | None = None, known: Known | None = None
) -> Verdict:
    """Everything wrong with these ledger files: event files, segments (a `.parquet` and its
    `.ids` together: a partner not among `entries` is read from `tree`), the publish manifest
    (its entries checked against the segments of `tree`). Other paths
    (`quarantine/`, a newer mlci's folders) are not read by the cache and not checked.
    `known`: record bodies the local ledger holds already, byte for byte (not checked again:
    a merge brings nothing new with them)."""
    verdict = Verdict()
    events = [e for e in entries if e.path.startswith(EVENTS_DIR)]
    if known is not None:
        events = [e for e in events if not known.holds_blob(e.oid)]
    blobs = store.repo.cat_blobs([e.oid for e in events])
    for entry in events:
        found = check_record_file(entry.path, blobs.get(entry.oid, b""))
        if found.problem:
            verdict.problems.append((entry.path, found.problem))
        if found.warning:
            verdict.warnings.append(f"{entry.path}: {found.warning}")
    segments = [e for e in entries if e.path.startswith(SEGMENTS_DIR)]
    if segments:
        _check_segments(store, segments, tree, verdict, known)
    for entry in (e for e in entries if e.path == MANIFEST_PATH):  # what a remote reader trusts
        problem = manifest_problem(store, store.repo.cat_blobs([entry.oid]).get(entry.oid, b""), tree)
        if problem:
            verdict.problems.append((entry.path, problem))
    return verdict


class Known:
    """The record bodies a ledger tree holds, as git blob ids: an event file's is its object
    id (from `ls-tree`, nothing read); a segment row's is computed from its body, and only
    when a pull brings a segment (a remote's compaction: mostly records this clone has)."""

    def __init__(self, store: LedgerStore, tip: str) -> None:
        self.store = store
        self.tip = tip
        self._events: set[str] | None = None
        self._segments: set[str] | None = None

    def load(self) -> None:
        """Read what it holds now (before forking workers that would each read it)."""
        self.holds_body("")

    def holds_blob(self, oid: str) -> bool:
        if self._events is None:
            self._events = {e.oid for e in self.store.repo.ls_tree(self.tip, [EVENTS_DIR], recursive=True)}
        return oid in self._events

    def holds_body(self, oid: str) -> bool:
        if self.holds_blob(oid):
            return True
        if self._segments is None:
            self._segments = set()
            local = [e for e in self.store.repo.ls_tree(self.tip, [SEGMENTS_DIR]) if e.path.endswith(".parquet")]
            for data in self.store.repo.cat_blobs([e.oid for e in local]).values():
                try:
                    self._segments.update(blob_id(b.encode()) for b in _bodies(data))
                except Exception:  # noqa: BLE001 - a local segment it cannot read holds nothing it knows
                    continue
        return oid in self._segments


def _bodies(data: bytes) -> list[str]:
    return [b for b in read_bodies(io.BytesIO(data))[2] if b]


def fsck(store: LedgerStore) -> list[str]:
    """Problems in everything the cache reads (`check_files` over the whole tree), as lines."""
    return check_files(store, store.entries()).lines()


def ledger_problems(store: LedgerStore, entries: list[TreeEntry], tree: str | None = None) -> list[str]:
    """What is wrong with these ledger files, as "path: reason" lines."""
    return check_files(store, entries, tree).lines()


# ------------------------------------------------------------------ segments
def _check_segments(
    store: LedgerStore, entries: list[TreeEntry], tree: str | None, verdict: Verdict, known: Known | None
) -> None:
    """A segment is checked as a unit: Parquet whose first columns are the string columns id,
    type and body, unique ids equal to its `.ids` list, in the residual layout its stored bodies
    as compaction writes them and its name the hash of the rebuilt ones, every body a valid
    record of that id and type, and the typed columns what the bodies give.
    A bad segment is reported (and quarantined) with its `.ids`, and an `.ids` with no segment
    is bad too: capture trusts it to say which commits are captured."""
    by_path = {e.path: e for e in entries}
    partners = {_partner(p) for p in by_path} - by_path.keys()
    if partners and tree:
        by_path.update((e.path, e) for e in store.repo.ls_tree(tree, sorted(partners)))
    blobs = store.repo.cat_blobs([e.oid for e in by_path.values()])
    wanted = {e.path for e in entries}
    typed = _TypedCheck()
    try:
        _check_each_segment(by_path, blobs, wanted, verdict, known, typed)
    finally:
        typed.close()


def _check_each_segment(
    by_path: dict[str, TreeEntry],
    blobs: dict[str, bytes],
    wanted: set[str],
    verdict: Verdict,
    known: Known | None,
    typed: _TypedCheck,
) -> None:
    jobs = [
        (path, blobs.get(by_path[path].oid, b""), _listed(by_path, blobs, path))
        for path in sorted(by_path)
        if path.endswith(".parquet")
    ]
    found = dict(zip((path for path, _d, _l in jobs), _segment_findings(jobs, known, typed)))
    for path in sorted(by_path):
        base = path.removesuffix(".parquet").removesuffix(".ids")
        if path.endswith(".ids"):
            if base + ".parquet" not in by_path and path in wanted:
                verdict.problems.append((path, "a segment id list with no segment beside it"))
            continue
        if not path.endswith(".parquet"):
            if path in wanted:
                verdict.problems.append((path, "not a segment file (.parquet or .ids)"))
            continue
        problem, said = found[path]
        verdict.warnings.extend(said)
        if problem:
            verdict.problems.append((path, problem))
            if base + ".ids" in by_path:
                verdict.problems.append((base + ".ids", f"the id list of the bad segment {path}"))


def _listed(by_path: dict[str, TreeEntry], blobs: dict[str, bytes], path: str) -> bytes | None:
    ids = path.removesuffix(".parquet") + ".ids"
    return blobs.get(by_path[ids].oid) if ids in by_path else None


SegmentJob = tuple[str, bytes, "bytes | None"]  # a segment's path, its bytes, its `.ids` list (None: none)
# Segments whose bytes add up to this or more are checked by one forked process per core, a
# whole segment each (read, rebuild, rows, typed columns: all but DuckDB's part is Python, so
# threads would not help): a new clone's pull of a compacted ledger brings ~32 of them.
PARALLEL_SEGMENT_BYTES = 1 << 20
_JOBS: Any = None  # the segment jobs and `known`, inherited by forked workers
_WORKER_TYPED: Any = None  # a forked worker's own DuckDB connection, opened after the fork


def _segment_findings(
    jobs: list[SegmentJob], known: Known | None, typed: _TypedCheck
) -> list[tuple[str | None, list[str]]]:
    """(problem or None, warnings) of each segment job, in order: in this process, or past
    PARALLEL_SEGMENT_BYTES across forked workers (each checks its segment's rows itself)."""
    global _JOBS
    cores = min(os.cpu_count() or 1, 8)
    if (
        len(jobs) < 2
        or cores < 2
        or not hasattr(os, "fork")
        or sum(len(d) for _p, d, _l in jobs) < PARALLEL_SEGMENT_BYTES
    ):
        return [_one_segment(job, known, typed, split=True) for job in jobs]
    import multiprocessing

    typed.close()  # no DuckDB threads alive across a fork
    if known is not None:
        known.load()  # once, here, not once per worker
    _JOBS = (jobs, known)
    try:
        with multiprocessing.get_context("fork").Pool(min(cores, len(jobs))) as pool:
            return pool.map(_check_inherited_segment, range(len(jobs)), chunksize=1)
    finally:
        _JOBS = None


def _check_inherited_segment(n: int) -> tuple[str | None, list[str]]:
    global _WORKER_TYPED
    assert _JOBS is not None
    jobs, known = _JOBS
    if _WORKER_TYPED is None:
        _WORKER_TYPED = _TypedCheck(threads=1)
    return _one_segment(jobs[n], known, _WORKER_TYPED, split=False)


def _one_segment(
    job: SegmentJob, known: Known | None, typed: _TypedCheck, *, split: bool
) -> tuple[str | None, list[str]]:
    path, data, listed = job
    said: list[str] = []
    return _segment_problem(data, listed, said, path, known, typed, split=split), said


def _partner(path: str) -> str:
    if path.endswith(".parquet"):
        return path.removesuffix(".parquet") + ".ids"
    return path.removesuffix(".ids") + ".parquet"


def _segment_problem(
    data: bytes,
    listed: bytes | None,
    warnings: list[str],
    path: str,
    known: Known | None = None,
    typed: _TypedCheck | None = None,
    *,
    split: bool = True,
) -> str | None:
    """What is wrong with one segment (`_check_segments`), or None; `split`: its rows may go to
    forked workers (not in a worker already)."""
    import pyarrow as pa  # lazy: only a compacted ledger has segments
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data), use_threads=False)  # ~one row group: threads gain nothing
    except Exception as exc:  # pyarrow raises several types for a broken file
        return f"not a readable segment ({first_line(exc)})"
    columns = [(f.name, f.type) for f in table.schema][:3]  # then, written by compaction, the typed columns
    if [n for n, _ in columns] != ["id", "type", "body"] or any(
        t not in (pa.string(), pa.large_string()) for _, t in columns
    ):
        return "not a segment: its columns must be id, type and body, all strings"
    if listed is None:
        return "no .ids list beside it"
    problem = _utf8_problem(table)
    if problem:
        return problem
    ids = table.column("id").to_pylist()
    if pc.count_distinct(table.column("id")).as_py() != len(ids) or None in ids:
        return "its id column holds a missing or repeated id"
    if listed.decode("utf-8", "replace").split() != ids:
        return f"its ids differ from {path.removesuffix('.parquet')}.ids"
    parsed: Sequence[dict[str, Any] | None] = ()
    if is_residual_layout(table.schema):
        rebuilt = _rebuilt(table, ids, path)
        if isinstance(rebuilt, str):
            return rebuilt
        table, parsed = rebuilt
    if typed is not None and split and table.num_rows >= PARALLEL_ROWS:
        typed.close()  # the rows are checked by forked workers: no DuckDB threads alive across a fork
    bad, said = _check_table_split(table, known, parsed, split=split)
    warnings.extend(f"{path}: {w}" for w in said)
    if bad:
        shown = "; ".join(f"row {n} (id {ids[n]!r}): {why}" for n, why in bad[:_SHOWN])
        return f"{len(bad):,} invalid record(s): {shown}" + ("; ..." if len(bad) > _SHOWN else "")
    if typed is not None:
        return typed.problem(table)
    one = _TypedCheck()
    try:
        return one.problem(table)
    finally:
        one.close()


def _rebuilt(table: Any, ids: list[str], path: str) -> tuple[Any, list[dict[str, Any] | None]] | str:
    """A segment of the residual layout with its bodies rebuilt (`segment_read.rebuild`), for the
    checks of every segment, and per row the record a residual was rebuilt into (its body is
    its canonical JSON: not parsed or encoded again to check it); or what is wrong: a row whose
    stored text is not what compaction writes, or a name that is not the hash of its ids and
    bodies (compaction names a segment so: a column changed after it changes the bodies, and so
    the name they need)."""
    import pyarrow as pa

    from mlci_tui.ledger.cache import TYPED_NAMES
    from mlci_tui.ledger.compact import NAMED, segment_name

    if table.column_names != TYPED_NAMES:
        return "its columns are not the typed segment's, which its residual bodies need"
    types = table.column("type").to_pylist()
    try:
        rebuilt, parsed = table_rebuilt(table)
    except Exception as exc:  # noqa: BLE001 - typed columns of another type than compaction writes
        return f"its typed columns do not rebuild its bodies ({first_line(exc)})"
    bodies = [body for body in rebuilt if body is not None]
    if len(bodies) != len(rebuilt):
        refused = [n for n, body in enumerate(rebuilt) if body is None]
        shown = "; ".join(f"row {n} (id {ids[n]!r})" for n in refused[:_SHOWN])
        return (
            f"{len(refused):,} body residual(s) not as compaction writes them (not canonical, holding "
            f"a key the typed columns give back, or a whole body a residual gives back): {shown}"
            + ("; ..." if len(refused) > _SHOWN else "")
        )
    named = NAMED.fullmatch(path)
    if named is None or segment_name(named.group(1), list(zip(ids, types, bodies))) != path.removesuffix(".parquet"):
        return "its name is not the hash of its ids and bodies (the bodies its columns rebuild)"
    return table.set_column(table.column_names.index("body"), "body", pa.array(bodies, pa.string())), parsed


def _utf8_problem(table: Any) -> str | None:
    """Whether the id, type and body columns are UTF-8 (Parquet does not promise it): checked
    in Arrow; a bad column is converted to name the error as Python's decoder does."""
    import pyarrow as pa

    for name in ("id", "type", "body"):
        column = table.column(name)
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            try:
                column.to_pylist()
            except UnicodeDecodeError as exc:
                return f"not UTF-8 ({exc.reason})"
    return None


class _TypedCheck:
    """A reader copies a segment's typed columns: they must say what its bodies say. One DuckDB
    connection for all the segments of a check (opening one per segment cost a pull of 32
    segments 0.5 s)."""

    def __init__(self, threads: int = 2) -> None:
        self._con: Any = None
        self._threads = threads

    def problem(self, table: Any) -> str | None:
        if table.num_columns == 3:
            return None  # bodies only: nothing else to trust
        from mlci_tui.ledger.compact import typed_connection, typed_mismatch

        if self._con is None:
            self._con = typed_connection(self._threads)
        return typed_mismatch(self._con, table)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


# A segment of more rows than this, checked alone (not one of several: `_segment_findings`
# gives each of those a worker), has its rows checked by one forked process per core: the rows
# are pure Python work (a JSON parse and re-encode each), so threads would not help.
PARALLEL_ROWS = 20_000
_SHARED: Any = None  # the segment's Arrow table and the records its rebuild parsed, inherited by forked workers
Findings = tuple[list[tuple[int, str]], list[str]]  # (row number, problem) of each bad row; warnings


def _check_table_split(
    table: Any, known: Known | None, parsed: Sequence[dict[str, Any] | None] = (), *, split: bool = True
) -> Findings:
    """`_check_selected` over the segment's rows that this clone does not hold byte for byte
    (`known`: held rows bring nothing new), split across forked workers when they are many.
    Workers inherit the Arrow table and make Python strings of their own rows only (strings
    made here would be copied page by page into every worker as it touched their reference
    counts); only row numbers and findings cross the pipe. `parsed`: by row number, the record
    a rebuild made of a row (its body is that record's canonical JSON), or None; none when empty."""
    global _SHARED
    rows = _unheld_rows(table, known)
    cores = min(os.cpu_count() or 1, 8)
    if not split or len(rows) < PARALLEL_ROWS or cores < 2 or not hasattr(os, "fork"):
        return _check_selected(table, rows, parsed)
    import multiprocessing

    size = -(-len(rows) // cores)
    parts = [rows[i : i + size] for i in range(0, len(rows), size)]
    _SHARED = (table, parsed)
    try:
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            found = pool.map(_check_shared_rows, parts)
    finally:
        _SHARED = None
    return [b for part, _w in found for b in part], [w for _b, said in found for w in said]


def _check_shared_rows(rows: Sequence[int]) -> Findings:
    assert _SHARED is not None
    table, parsed = _SHARED
    return _check_selected(table, rows, parsed)


def _unheld_rows(table: Any, known: Known | None) -> Sequence[int]:
    """The rows whose bodies `known` does not hold (every row without it): blob ids hashed from
    the body column's bytes as Arrow holds them (valid UTF-8, so the encoded text's)."""
    if known is None:
        return range(table.num_rows)
    import pyarrow as pa

    column = table.column("body")
    raw = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
    rows: list[int] = []
    for first in range(0, table.num_rows, _BATCH):
        for n, body in enumerate(raw.slice(first, _BATCH).to_pylist(), first):
            if body is None or not known.holds_body(blob_id(body)):
                rows.append(n)
    return rows


def _check_selected(table: Any, rows: Sequence[int], parsed: Sequence[dict[str, Any] | None] = ()) -> Findings:
    """These rows of a segment, `_BATCH` at a time (`_check_rows`): a run of consecutive rows
    is a slice of the Arrow columns, others are taken by number."""
    bad: list[tuple[int, str]] = []
    warnings: list[str] = []
    for first in range(0, len(rows), _BATCH):
        batch = rows[first : first + _BATCH]
        if batch[-1] - batch[0] == len(batch) - 1:
            ids, types, bodies = (table.column(c).slice(batch[0], len(batch)).to_pylist() for c in _ROW_COLUMNS)
        else:
            import pyarrow as pa

            numbers = pa.array(batch, pa.int64())
            ids, types, bodies = (table.column(c).take(numbers).to_pylist() for c in _ROW_COLUMNS)
        rebuilt = [parsed[n] for n in batch] if parsed else ()
        found, said = _check_rows(range(len(batch)), ids, types, bodies, rebuilt)
        bad.extend((batch[n], why) for n, why in found)
        warnings.extend(said)
    return bad, warnings


_ROW_COLUMNS = ("id", "type", "body")
_BATCH = 2048  # rows parsed as one JSON array (`_canonical_records`) and converted from Arrow at once


def _check_rows(
    rows: Sequence[int],
    ids: Sequence[str],
    types: Sequence[str | None],
    bodies: Sequence[str | None],
    parsed: Sequence[dict[str, Any] | None] = (),
) -> Findings:
    """(row number, problem) of each bad row among `rows`, and the warnings: each row as
    `check_record` checks it alone (a row the batch parse does not vouch for is checked so).
    `parsed` (by row number, or empty): the record a rebuild made of a row, whose canonical JSON
    its body is (not parsed again), or None."""
    bad: list[tuple[int, str]] = []
    warnings: list[str] = []
    texts = [bodies[n] for n in rows]
    made = [parsed[n] if parsed and bodies[n] is not None else None for n in rows]
    stored = iter(_canonical_records([t for t, r in zip(texts, made) if t is not None and r is None]))
    for n, body, record in zip(rows, texts, made):
        if body is None:
            bad.append((n, "no body"))
            continue
        if record is None:
            record = next(stored)
        rid = ids[n]
        found = check_record(body, row_id=rid) if record is None else _check_canonical(body, record, None, rid)
        if found.problem is None and types[n] != found.type:
            found.problem = f"its type column {types[n]!r} differs from its body's"
        if found.problem:
            bad.append((n, found.problem))
        if found.warning:
            warnings.append(found.warning)
    return bad, warnings


def _canonical_records(texts: list[str]) -> list[dict[str, Any] | None]:
    """Each text's record when the text is the canonical JSON of an object and its newline
    (what `check_record`'s parse and canonical test accept), else None (check that text alone).

    The texts are parsed `_JOINT` at a time as one JSON array (fewer calls, and the parser's
    memo of object keys spans them). A text is vouched for only when the canonical encoding of
    the value parsed for it is the text itself, so whatever went wrong in a joint parse (a text
    that is not one value, a string that spans two texts) leaves the texts it touched to the
    check alone: a text equal to the canonical encoding of a JSON value parses back to that
    value, whose encoding it is."""
    out: list[dict[str, Any] | None] = [None] * len(texts)
    for first in range(0, len(texts), _JOINT):
        part = texts[first : first + _JOINT]
        try:
            values = json.loads("[" + ",".join([t[:-1] for t in part]) + "]")
        except (ValueError, RecursionError):
            continue
        for n, (text, value) in enumerate(zip(part, values), first):
            if type(value) is dict and text[-1:] == "\n":
                try:
                    if _canonical(value) == text[:-1]:
                        out[n] = value
                except (ValueError, RecursionError):  # NaN, infinities: never canonical
                    pass
    return out


# Texts per joint parse: ~15% less CPU than a parse per text at 8-128 (measured on run
# records of ~1.1 KB); larger arrays gain nothing more.
_JOINT = 32


# ------------------------------------------------------------------ repair
def quarantine_moves(verdict: Verdict) -> dict[str, str]:
    """Each bad file's path -> where `fsck --repair` puts it."""
    return {path: QUARANTINE_DIR + path for path in verdict.bad_paths()}


def repair(store: LedgerStore, checked: tuple[str, Verdict] | None = None) -> dict[str, str]:
    """Move every bad file of the ledger into `quarantine/<its path>` in one ledger commit, so
    nothing is lost and nothing reads it; returns the moves made. `checked` is a verdict
    already computed for a tip: reused while the tip is that one, redone if a writer moved it."""
    moved: dict[str, str] = {}

    def changes(tip: str | None) -> dict[str, str | bytes | None]:
        entries = store.entries(tip) if tip else []
        verdict = checked[1] if checked and checked[0] == tip else check_files(store, entries, tip)
        oids = {e.path: e.oid for e in entries}
        moved.clear()
        moved.update(quarantine_moves(verdict))
        out: dict[str, str | bytes | None] = {}
        for old, new in moved.items():
            out[old] = None
            out[new] = oids[old]
        return out

    tip = store.tip()
    if tip is None or not changes(tip):
        return {}
    store.update(changes, f"mlci: quarantine {len(moved)} invalid file(s) (ledger fsck --repair)")
    return dict(moved)


def incoming_verdict(
    store: LedgerStore, fetched: str, trusted: Callable[[], Collection[tuple[str, str]]] | None = None
) -> Verdict:
    """What a merge of `fetched` would bring that is bad. Files the local ledger already holds
    (unchanged paths) are not checked: a pull is not blocked by local bad files, only by new
    ones. Nothing is brought when `fetched` is already in the local history; a bad file this
    clone already quarantined (the same blob under `quarantine/`) is not refused again.
    `trusted`: the (path, blob) of files taken as checked (a signed compaction's segments),
    asked for only when segment files come."""
    tip = store.tip()
    if tip is not None and store.repo.is_ancestor(fetched, tip):
        return Verdict()
    brought = store.brought_by(tip, fetched)
    if trusted is not None and any(e.path.startswith(SEGMENTS_DIR) for e in brought):
        taken = trusted()
        brought = [e for e in brought if (e.path, e.oid) not in taken]
    verdict = check_files(store, brought, fetched, Known(store, tip) if tip is not None else None)
    if verdict.problems and tip is not None:
        held = _quarantined(store, tip, {e.path: e.oid for e in brought if e.path in verdict.bad_paths()})
        verdict.problems = [(p, why) for p, why in verdict.problems if p not in held]
    return verdict


def _quarantined(store: LedgerStore, tip: str, files: dict[str, str]) -> set[str]:
    """Which of `files` (path -> blob) the tree at `tip` holds in quarantine with those bytes."""
    if not files:
        return set()
    held = store.repo.ls_tree(tip, [QUARANTINE_DIR + p for p in files])
    return {
        e.path.removeprefix(QUARANTINE_DIR) for e in held if files.get(e.path.removeprefix(QUARANTINE_DIR)) == e.oid
    }
