"""Events that refer to a run: tags, notes, promotions and redactions. Never edits.

A correction is a new event; state is a fold over events (the DuckDB views). Names are
validated here, when written, so every reader can trust them.
"""

from __future__ import annotations

import re
from typing import Any

from mlci_tui.errors import InputError
from mlci_tui.ledger import records
from mlci_tui.scrub import has_secret

# every type this version reads; the cache skips others with a notice (a newer mlci wrote them).
# validation/profile: data checks (mlci_tui/validate); sweep/trial: sweep queue (mlci_tui/sweep)
KNOWN_TYPES = ("run", "tag", "note", "promote", "redact", "validation", "profile", "sweep", "trial")
# Sweep trials (mlci_tui/sweep/events.py folds them; the `trials` view reads them in SQL):
# the state each transition leaves a trial in, and the order of transitions written in one
# instant (a failure and its automatic requeue). `done` is final.
TRIAL_STATE_OF = {
    "queued": "queued",
    "requeued": "queued",
    "started": "running",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "pruned": "pruned",  # stopped by the sweep's pruner: final, like done
}
TRIAL_RANK = {"queued": 0, "started": 1, "failed": 2, "cancelled": 2, "pruned": 2, "requeued": 3, "done": 4}
_LABEL = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")
MAX_NOTE = 64 * 1024


def check_label(kind: str, value: str) -> str:
    if not _LABEL.match(value):
        raise InputError(f"{kind} {value!r}: must be 1 to 128 characters with no spaces or control characters")
    if has_secret(value):
        raise InputError(f"{kind}: looks like a credential or token; refused so it never reaches the ledger")
    return value


def tag(run_id: str, name: str, *, remove: bool = False) -> dict[str, Any]:
    return records.envelope("tag", {"target": run_id, "name": check_label("tag", name), "remove": remove})


def note(run_id: str, text: str) -> dict[str, Any]:
    if not text.strip():
        raise InputError("note: empty text")
    if len(text.encode()) > MAX_NOTE or "\x00" in text:
        raise InputError(f"note: at most {MAX_NOTE // 1024} KiB of text without NUL")
    return records.envelope("note", {"target": run_id, "text": text})  # scrubbed at append, as every event


def promote(
    run_id: str, stage: str, *, model: str | None = None, model_hash: str | None = None, by: str | None = None
) -> dict[str, Any]:
    return records.envelope(
        "promote",
        {"target": run_id, "stage": check_label("stage", stage), "model": model, "model_hash": model_hash, "by": by},
    )


def redact(target_id: str, reason: str | None = None) -> dict[str, Any]:
    if not records.is_id(target_id):
        raise InputError(f"redact: {target_id!r} is not a full record id (26 base32 characters)")
    return records.envelope("redact", {"target": target_id, "reason": reason})  # scrubbed at append
