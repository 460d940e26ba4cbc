"""Canonical JSON for ledger records, and the ids that name them.

A record is written once and never edited, so its bytes must be reproducible: sorted keys,
UTF-8, no spaces, one trailing newline. JSON has no NaN or infinities; they travel as
`{"$float": "NaN"}` so that metrics such as a diverged loss survive the round trip.
"""

from __future__ import annotations

import math
import os
import time

try:  # the builtin BLAKE2 module: `hashlib` loads OpenSSL first (~3 ms on the hook path)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import blake2b

from mlci_tui.numbers import NAN, NEG_INF, POS_INF

TYPE_CHECKING = False  # `typing` costs more than the hook path can spend; mypy treats this as true
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

# Imports are kept to the standard library's cheapest modules: the hook path derives ids
# (to see whether a pushed commit is captured) and must stay within its budget.

SCHEMA_VERSION = 1
B32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
FLOAT_KEY = "$float"  # {"$float": "NaN"}: JSON has no NaN or infinities (the cache reads it in SQL too)
_FLOAT_NAMES = {NAN: math.nan, POS_INF: math.inf, NEG_INF: -math.inf}
# The canonical form: `dumps` writes it, `ledger/verify.py` holds every record to it.
JSON_OPTIONS: dict[str, Any] = {"sort_keys": True, "ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}


_PAIRS: list[str] = []  # the 1,024 two-character strings of 10 bits, built on first use


def _b32(data: bytes) -> str:
    """RFC 4648 base32, lowercase, unpadded: 16 bytes give 26 characters, 10 bits per lookup
    (as the standard library's encoder does, without importing `base64`: under `python -S`
    it pulls in `re`, which the hook path cannot spend)."""
    if not _PAIRS:
        _PAIRS.extend(a + b for a in B32_ALPHABET for b in B32_ALPHABET)
    number = int.from_bytes(data, "big") << (5 * 26 - 8 * len(data))
    pairs = _PAIRS
    return "".join([pairs[(number >> shift) & 1023] for shift in range(120, -1, -10)])


def is_id(value: object) -> bool:
    # strip() empties the text only when every character is in the alphabet (a set is 2x slower)
    return isinstance(value, str) and len(value) == 26 and not value.strip(B32_ALPHABET)


def new_id() -> str:
    """128 random bits as 26 lowercase base32 characters."""
    return _b32(os.urandom(16))


def content_id(digest: bytes) -> str:
    """A 16-byte digest in the 26 base32 characters of an id (a compaction segment's name)."""
    return _b32(digest)


def derived_id(*parts: str) -> str:
    """A deterministic id: two clones capturing the same commit write the same record name."""
    return _b32(blake2b("\x00".join(parts).encode(), digest_size=16).digest())


def record_path(event_id: str) -> str:
    """Where a record lives in the ledger tree: sharded so no tree grows past ~a thousand."""
    return f"events/{event_id[:2]}/{event_id}.json"


ISO_SECONDS = "%Y-%m-%dT%H:%M:%S"  # then `.` and six digits of microseconds, and `Z`


def now_iso() -> str:
    """UTC now as `iso_time` writes it, through `time` (`datetime` costs ~2 ms to import on the hook path)."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return f"{time.strftime(ISO_SECONDS, time.gmtime(seconds))}.{nanos // 1000:06d}Z"


def iso_time(moment: datetime) -> str:
    from datetime import timezone

    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_iso(seconds: int | float) -> str:
    if isinstance(seconds, int):  # a commit's time: whole seconds, no `datetime` needed
        return f"{time.strftime(ISO_SECONDS, time.gmtime(seconds))}.000000Z"
    from datetime import datetime, timezone

    return iso_time(datetime.fromtimestamp(seconds, timezone.utc))


def _wrap_floats(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return {FLOAT_KEY: NAN}
        if math.isinf(value):
            return {FLOAT_KEY: POS_INF if value > 0 else NEG_INF}
        return value
    if isinstance(value, dict):
        return {k: _wrap_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # a list of floats (a large params file's bulk) without a call per item: a finite sum
        # means no item is NaN or infinite
        if _FLOATS.issuperset(map(type, value)) and math.isfinite(sum(value)):
            return list(value)
        return [_wrap_floats(v) for v in value]
    return value


_FLOATS = frozenset({float})


def _unwrap_float(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and FLOAT_KEY in obj and obj[FLOAT_KEY] in _FLOAT_NAMES:
        return _FLOAT_NAMES[obj[FLOAT_KEY]]
    return obj


def dumps(record: dict[str, Any]) -> bytes:
    """Canonical bytes of a record."""
    import json

    text = json.dumps(_wrap_floats(record), **JSON_OPTIONS)
    return (text + "\n").encode("utf-8")


def line_problem(body: bytes) -> str | None:
    """Why a record file's bytes are not one record: canonical JSON is one line of UTF-8 with
    its newline (a file of two lines would pass as two records). None when they are."""
    lines = body.count(b"\n")
    if lines != 1 or not body.endswith(b"\n"):
        return f"{lines} lines; a record file holds one line (one record)"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason} at byte {exc.start})"
    return None


def loads(data: bytes | str) -> dict[str, Any]:
    import json

    value = json.loads(data, object_hook=_unwrap_float)
    if not isinstance(value, dict):
        raise ValueError("a ledger record must be a JSON object")
    return value


def target_of(body: bytes | str) -> str | None:
    """The record a record refers to (a tag's, a note's, a tombstone's), or None."""
    try:
        target = loads(body).get("target")
    except ValueError:
        return None
    return target if isinstance(target, str) else None


def redaction_target(body: bytes | str) -> str | None:
    """The record a tombstone (a `redact` record) hides; None for any other body. A caller
    scanning many bodies may skip those without `"redact"` in them before parsing."""
    try:
        record = loads(body)
    except ValueError:
        return None  # fsck names it
    target = record.get("target")
    return target if record.get("type") == "redact" and isinstance(target, str) else None


def envelope(
    event_type: str, body: dict[str, Any], *, event_id: str | None = None, time: str | None = None
) -> dict[str, Any]:
    """An event with the fields every event carries: type, v, id, time."""
    record = dict(body)
    record["type"] = event_type
    record["v"] = SCHEMA_VERSION
    record["id"] = event_id or new_id()
    record["time"] = time or now_iso()
    return record
