"""The one display sanitiser: untrusted strings never reach a terminal as escapes or markup.

Run names, metric names, cells, commit messages and authors come from data. Control
characters (C0, C1, DEL), ANSI escape sequences and bidirectional overrides are shown as
visible `\\xNN`/`\\uNNNN` escapes; Rich/Textual markup is never built from them (the TUI
wraps them in `rich.text.Text`, the CLI prints plain text).
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "\u2028\u2029\ufeff\ufff9-\ufffb]")
_UNSAFE_KEEP_NOTHING = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI + "\u2028\u2029\ufeff\ufff9-\ufffb]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def display(value: object, *, multiline: bool = False) -> str:
    """Return `value` as text safe to print: every control or bidi character made visible.

    With `multiline`, newlines and tabs are kept (for notes and commit messages shown in
    full); otherwise they are escaped too, so one value stays on one line.
    """
    text = value if isinstance(value, str) else str(value)
    pattern = _UNSAFE if multiline else _UNSAFE_KEEP_NOTHING
    return pattern.sub(_escape, text)


_BREAKS = "\t\n\x0b\x0c\r\x85\u2028\u2029"


def plain(value: object) -> str:
    """`value` with every control or bidi character removed and each line break or tab made a
    space: for a CSV cell, which stays data (no visible escapes added) and one line."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE_KEEP_NOTHING.sub(lambda m: " " if m.group() in _BREAKS else "", text)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|www)(:|\.)")


def markdown_cell(value: object) -> str:
    """A sanitised value escaped for a Markdown table cell: no links, no HTML, no pipes.

    Code hosts also turn `@name` into a notification and bare URLs into links: a zero-width
    joiner entity after `@`, and an entity for the `:`/`.` after a scheme, keep both inert
    while they render the same.
    """
    text = _MD_SPECIAL.sub(r"\\\1", display(value))
    text = _MENTION.sub("@&#8203;", text)
    return _AUTOLINK.sub(lambda m: m.group(1) + ("&#58;" if m.group(2) == ":" else "&#46;"), text)
