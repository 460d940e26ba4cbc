"""Secrets never reach the ledger: URL credentials, known token shapes and the values of
password-like keys are masked. `LedgerStore.append` scrubs every record of every event type
(runs, trials' log tails, validations and profiles, notes) before it is written: one place.

The shapes are those detect-secrets has a plugin for (tests/test_secrets_detect.py checks
the two agree; detect-secrets itself is not imported here: it costs over 100 ms). Commit ids,
content hashes and run ids are hex or base32 and match none of these shapes. A value is
masked for its entropy only under a key named like a token, key or credential (`hf_token`,
`auth`), never on its own, so a digest in a params file stays as it is.
"""

from __future__ import annotations

import math
import re

TYPE_CHECKING = False  # not `from typing import ...`: every ledger append (the post-commit hook) scrubs
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MASK = "***"


class _Lazy:
    """A regular expression compiled on its first use. Most records meet few of the ~40 below
    (each runs only when one of its literals is in the text): compiling them all at import
    cost every ledger append, the post-commit hook's among them, ~3.5 ms."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, source: str, flags: int = 0) -> None:
        self._args = (source, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:  # sub, search, fullmatch, findall
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)


# Key names. STRONG: the value is a secret whatever it looks like (`db_password: hunter2`).
# WEAK: the value is a secret when it looks random (`hf_token: Zx8k...`, not `pad_token: [PAD]`,
# `max_tokens: 512` or `sort_key: val_loss`).
_STRONG = (
    r"password|passwd|passphrase|pwd|secret|contrase[ñn]a|api_?key|auth_?key|service_?key|account_?key"
    r"|db_?key|database_?key|priv_?key|private_?key|client_?key|db_?pass|database_?pass|key_?pass|access_?key"
    r"|access_?token|auth_?token|api_?token|refresh_?token|bearer_?token"
)
_STRONG_NAME = _Lazy(rf"(?i)(?:{_STRONG})")
_WEAK_NAME = _Lazy(r"(?i)token|key|auth|cred|pass|sig")
# the whole of a key name that is a secret by itself
SECRET_KEYS = frozenset(["token", "secret", "password", "credentials"])


_NAME_WORDS = ("pass", "pwd", "secret", "key", "token", "auth", "cred", "sig", "contrase")


def _named_secret(name: str) -> int:
    """2 when a key so named holds a secret, 1 when it may (its value decides), else 0."""
    part = name.rsplit(".", 1)[-1].rsplit(":", 1)[-1].lower()
    if not any(word in part for word in _NAME_WORDS):
        return 0
    if part in SECRET_KEYS or _STRONG_NAME.search(part):
        return 2
    return 1 if _WEAK_NAME.search(part) else 0


_ALNUM_RUN = _Lazy(r"[A-Za-z0-9]{16,}")
_TOKEN_TEXT = _Lazy(r"[A-Za-z0-9+/=_\-.~]{16,}")
_DIGEST = _Lazy(r"[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{128}|[a-z2-7]{26}")


def looks_random(value: str) -> bool:
    """A token: a token's alphabet only, holding a run of 16+ letters and digits, mixed, with over
    3 bits of entropy per character. A path (`/data/sp_2048x7.model`), a model name
    (`resnet50_imagenet_v2`) and a hex digest, UUID or run id are not: a content hash under
    `cache_key` is kept."""
    if len(value) < 16 or _TOKEN_TEXT.fullmatch(value) is None:
        return False
    for run in _ALNUM_RUN.findall(value):
        if run.isalpha() or run.isdigit() or _DIGEST.fullmatch(run):
            continue
        counts: dict[str, int] = {}
        for char in run:
            counts[char] = counts.get(char, 0) + 1
        size = len(run)
        if -sum(n / size * math.log2(n / size) for n in counts.values()) > 3.0:
            return True
    return False


def _mask_assigned(match: re.Match[str]) -> str:
    """`name = value`, `name: "value"`: the value masked when the name says secret."""
    kind = _named_secret(match["name"])
    value = match["dq"] or match["sq"] or match["bare"]
    if not kind or value == MASK or (kind == 1 and not looks_random(value)):
        return match[0]
    start, end = match.span("dq" if match["dq"] else "sq" if match["sq"] else "bare")
    return match[0][: start - match.start()] + MASK + match[0][end - match.start() :]


if TYPE_CHECKING:
    Replacement = str | Callable[[re.Match[str]], str]

_ASSIGNMENT = _Lazy(
    r"(?<![\w.\-])(?P<name>[A-Za-z_][\w.\-]{0,63})[\"'\]]{0,2}[ \t]*(?::=|=>|::|[:=])[ \t]*"
    r"(?:\"(?P<dq>[^\"\n]{1,256})\"|'(?P<sq>[^'\n]{1,256})'|(?P<bare>[^\s\"',;]{1,256}))"
)

# (literals, one of which the lowercased text must hold for the pattern to run; the pattern; its replacement)
_RULES: list[tuple[tuple[str, ...], _Lazy, Replacement]] = [
    # user info in URLs: scheme://user:secret@host -> scheme://***@host. The secret may hold `/`
    # (AWS secret keys do) or `@`: it runs to the last `@` before the host, unless what follows
    # the colon is a port (`host:443/@scope/pkg`). Bounded repeats, and a secret that never
    # spans another `://`, keep it linear on long text.
    (
        ("://",),
        _Lazy(
            r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://)[^/\s@:]{0,256}:(?!\d*(?:[/?#\s]|$))(?:(?!://)\S)*?@"
            r"(?=[^\s@/?#]*(?:[/?#\s]|$))"
        ),
        r"\g<scheme>***@",
    ),
    (
        ("hooks.slack.com",),
        _Lazy(r"(?i)(?P<key>hooks\.slack\.com/services/)[A-Za-z0-9_/]+"),
        r"\g<key>***",
    ),
    # presigned-URL query parameters
    (
        ("?", "&"),
        _Lazy(
            r"(?i)(?P<key>[?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|"
            r"signature|sig|x-goog-signature|x-goog-credential|awsaccesskeyid|token|access_token)=)"
            r"[^&\s#]+"
        ),
        r"\g<key>***",
    ),
    (
        ("private key", "putty-user-key"),
        _Lazy(
            r"(?:-----)?BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?(?:-----)?[\s\S]*?"
            r"(?:-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----|$)"
            r"|PuTTY-User-Key-File-\d[\s\S]*?(?:Private-MAC: \S+|$)"
        ),
        MASK,
    ),
    (("akia", "asia", "abia", "acca", "a3t"), _Lazy(r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}"), MASK),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), _Lazy(r"\b(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9_]{20,}"), MASK),
    (("github_pat_",), _Lazy(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), MASK),
    (
        ("gl", "gr1348941"),
        _Lazy(r"\b(?:(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent|gloas)-|GR1348941)[A-Za-z0-9_\-]{20,}"),
        MASK,
    ),
    (("xox",), _Lazy(r"(?i)\bxox[abposr]-[A-Za-z0-9\-]{5,}"), MASK),  # Slack
    (("sk-",), _Lazy(r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"), MASK),  # OpenAI, Anthropic
    (("hf_",), _Lazy(r"\bhf_[A-Za-z0-9]{30,}"), MASK),  # Hugging Face
    (("sk_", "rk_"), _Lazy(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"), MASK),  # Stripe
    (("npm_",), _Lazy(r"\bnpm_[A-Za-z0-9]{36}"), MASK),
    (("sg.",), _Lazy(r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"), MASK),  # SendGrid
    (("sq0",), _Lazy(r"sq0(?:csp|atp)-[0-9A-Za-z\\\-_]{22,}"), MASK),  # Square
    (("pypi-",), _Lazy(r"pypi-AgE[A-Za-z0-9_\-]{50,}"), MASK),
    (("-us",), _Lazy(r"\b[0-9a-z]{32}-us[0-9]{1,2}\b"), MASK),  # Mailchimp
    (("eyj",), _Lazy(r"eyJ[A-Za-z0-9_\-=]+\.[A-Za-z0-9_\-=]+(?:\.[A-Za-z0-9_\-.+/=]*)?"), MASK),  # JWT
    # Artifactory API keys, and passwords (`AP` and a hex digit: only between separators)
    (("akc",), _Lazy(r"(?<![A-Za-z0-9])AKC[a-zA-Z0-9]{10,}"), MASK),
    (("ap",), _Lazy(r"(?:(?<=[\s=:\"/])|^)AP[\dABCDEF][a-zA-Z0-9]{8,}(?=[\s\"]|$)", re.M), MASK),
    (("softlayer",), _Lazy(r"(?i)(?P<key>api\.softlayer\.com/soap/v3(?:\.1)?/)[a-z0-9]{64}"), r"\g<key>***"),
    # Azure storage connection strings
    (
        ("accountkey", "sharedaccess"),
        _Lazy(r"(?i)(?P<key>\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)=)[^;\s\"']+"),
        r"\g<key>***",
    ),
    # `name = value`, `"name": "value"`, `NAME=value`: by the name (`_named_secret`)
    (_NAME_WORDS, _ASSIGNMENT, _mask_assigned),
]

# shapes without a literal to look for: Discord bot tokens, Telegram bot tokens, Twilio keys.
# Each is 34+ characters, so shorter strings (most names and values) never run it.
_LONG_SHAPES = _Lazy(
    r"[MNO][a-zA-Z\d_\-]{23,25}\.[a-zA-Z\d_\-]{6}\.[a-zA-Z\d_\-]{27}"
    r"|\b\d{8,10}:[0-9A-Za-z_\-]{35}"
    r"|(?:AC|SK)[a-z0-9]{32}"
)
_LONGEST_FREE = 34

# each literal, and the rules (by position) that need it
_TRIGGERS: tuple[tuple[str, tuple[int, ...]], ...] = tuple(
    (t, tuple(i for i, (triggers, _, _) in enumerate(_RULES) if t in triggers))
    for t in sorted({t for triggers, _, _ in _RULES for t in triggers})
)
_ASSIGNMENT_RULE = next(i for i, (_, pattern, _) in enumerate(_RULES) if pattern is _ASSIGNMENT)

SHORTEST_SECRET = 8  # `pwd: abc`: every shape is at least this long, and most names and values are shorter


def scrub_text(text: str) -> str:
    if len(text) < SHORTEST_SECRET:
        return text
    if len(text) >= _LONGEST_FREE and _LONG_SHAPES.search(text):
        text = _LONG_SHAPES.sub(MASK, text)
    low = text.lower()
    # plain substring tests rule most strings (names, numbers, paths) out, ~4x faster than a regex
    hits = [i for trigger, rules in _TRIGGERS if trigger in low for i in rules]
    if not hits:
        return text
    if ":" not in text and "=" not in text:
        hits = [i for i in hits if i != _ASSIGNMENT_RULE]
    for i in sorted(set(hits)):
        _, pattern, replacement = _RULES[i]
        text = pattern.sub(replacement, text)
    return text


def _mask_value(kind: int, value: Any) -> bool:
    """The value of a key of this `kind` is masked whole: a non-empty string or an integer (a
    PIN) under a password-like name, a random-looking string under a token-like one. Floats
    never: metrics are floats, and `secret_recall: 0.8` is one."""
    if type(value) not in (str, int) or value == "":
        return False
    return kind == 2 or (isinstance(value, str) and looks_random(value))


# keys repeat in every record (field names, param names): each is scrubbed and judged once
_KEYS: dict[str, tuple[str, int]] = {}
_KEYS_HELD = 10_000


def _key(key: str) -> tuple[str, int]:
    found = _KEYS.get(key)
    if found is None:
        found = (scrub_text(key), _named_secret(key) if len(key) >= 3 else 0)
        if len(_KEYS) < _KEYS_HELD:
            _KEYS[key] = found
    return found


def scrub(value: Any) -> Any:
    """A copy of `value` with every string (keys included) scrubbed, and the value of a
    password-like key (`db.password`, `api_key`) or a random-looking one under a token-like key
    (`hub.hf_token`) masked whole."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                k, kind = _key(k)
                out[k] = MASK if kind and _mask_value(kind, v) else scrub(v)
            else:
                out[k] = scrub(v)
        return out
    if isinstance(value, list):
        if _NO_TEXT.issuperset(map(type, value)):
            return list(value)  # a list of numbers (a large params file's bulk): no call per item
        return [scrub(v) for v in value]
    return value


_NO_TEXT = frozenset({float, int, bool, type(None)})


def has_secret(text: str) -> bool:
    return scrub_text(text) != text
