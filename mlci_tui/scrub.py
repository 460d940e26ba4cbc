"""Secrets never reach the ledger: URL credentials and known token shapes are masked.

Commit ids, content hashes and run ids are hex or base32 and match none of these shapes.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # user info in URLs: scheme://user:secret@host -> scheme://***@host. The secret may hold `/`
    # (AWS secret keys do) or `@`: it runs to the last `@` before the host, unless what follows
    # the colon is a port (`host:443/@scope/pkg`). Bounded repeats, and a secret that never
    # spans another `://`, keep it linear on long text.
    (
        re.compile(
            r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://)[^/\s@:]{0,256}:(?!\d*(?:[/?#\s]|$))(?:(?!://)\S)*?@"
            r"(?=[^\s@/?#]*(?:[/?#\s]|$))"
        ),
        r"\g<scheme>***@",
    ),
    # presigned-URL query parameters
    (
        re.compile(
            r"(?i)(?P<key>[?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|"
            r"signature|sig|x-goog-signature|x-goog-credential|awsaccesskeyid|token|access_token)=)"
            r"[^&\s#]+"
        ),
        r"\g<key>***",
    ),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\b(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]{20,}\b"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"), MASK),
    (re.compile(r"\bglpat-[A-Za-z0-9_\-.]{20,}"), MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}\b"), MASK),
    (
        re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)"),
        MASK,
    ),
]


def scrub_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        if pattern.search(text):
            text = pattern.sub(replacement, text)
    return text


def scrub(value: Any) -> Any:
    """A copy of `value` with every string (keys included) scrubbed."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_text(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def has_secret(text: str) -> bool:
    return any(p.search(text) for p, _ in _PATTERNS)
