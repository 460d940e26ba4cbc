"""A fast reader for the plain YAML most params files are, giving exactly what YAML 1.2 gives.

`capture.parse_yaml12` (ruamel.yaml, pure Python) costs a few milliseconds per small file;
over a 1,000-commit history whose params.yaml changes at every commit that was most of an
import. Nearly every params file is a block mapping of plain keys to numbers, booleans,
short words, quoted strings and flow lists of those. This module reads that shape and
nothing else: at the first line outside it (a comment after a value, a block sequence, an
anchor, a tab, a multi-line scalar, a number form such as `1_000`, `0x1f` or `.5`), it
returns NOT_SIMPLE and the caller uses the full YAML 1.2 parser. Every scalar form accepted
here resolves the same way under YAML 1.2's core schema (`1e-5` a float, `NO` a string);
tests/test_import_dvc.py compares it with ruamel.yaml on generated documents.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False  # not `from typing import ...`: the pre-commit hook reads params through this module
if TYPE_CHECKING:
    from typing import Any

NOT_SIMPLE: Any = object()

_KEY = r"[A-Za-z_][A-Za-z0-9_.\-/]*"
_HEAD = re.compile(rf"( *)({_KEY}):(?: +|$)")  # the value is the rest of the line: no regex runs over it
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n"
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)")
_WORD = re.compile(_KEY)
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = {"null", "Null", "NULL", "~"}
_RESERVED = {w.lower() for w in _BOOLS} | {"null"}


def load(text: str) -> Any:
    """The document as Python values, or NOT_SIMPLE when it is not of the simple shape."""
    if "\t" in text or "\r" in text or "&" in text or "*" in text or "!" in text:
        return NOT_SIMPLE
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(0, root)]
    open_key: tuple[dict[str, Any], str] | None = None  # a `key:` with nothing after it yet
    # printable ASCII and line feeds: one C pass over the bytes instead of a check per line
    printable = text.isascii() and not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    for line in text.split("\n"):
        if not printable and not line.isprintable():
            return NOT_SIMPLE  # U+2028, NEL and the like end lines in YAML; control characters are refused
        match = _HEAD.match(line)
        if match is None:  # a blank or comment line, else anything else (`- item`, `---`, `? key`)
            rest = line.lstrip(" ")  # the only white space left: tabs and CRs were declined above
            if not rest or rest[0] == "#":
                continue
            return NOT_SIMPLE
        indent, key, raw = len(match.group(1)), match.group(2), line[match.end() :]
        if "#" in raw:
            return NOT_SIMPLE  # a comment after a value, or `#` inside one: the full parser decides
        raw = raw.rstrip(" ")
        if key.lower() in _RESERVED:
            return NOT_SIMPLE
        if open_key is not None and indent > stack[-1][0]:
            child: dict[str, Any] = {}
            parent, name = open_key
            parent[name] = child
            stack.append((indent, child))
        else:
            if open_key is not None:
                open_key[0][open_key[1]] = None
            while stack and stack[-1][0] > indent:
                stack.pop()
            if not stack or stack[-1][0] != indent:
                return NOT_SIMPLE
        open_key = None
        target = stack[-1][1]
        if key in target:
            return NOT_SIMPLE  # a duplicate key: the full parser says what is wrong
        if not raw:
            target[key] = None
            open_key = (target, key)
            continue
        value = _scalar(raw) if not raw.startswith("[") else _flow_list(raw)
        if value is NOT_SIMPLE:
            return NOT_SIMPLE
        target[key] = value
    if open_key is not None:
        open_key[0][open_key[1]] = None
    return root if root else NOT_SIMPLE


def _scalar(raw: str) -> Any:
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(raw):
        return float(raw)
    if raw in _BOOLS:
        return _BOOLS[raw]
    if raw in _NULLS:
        return None
    first = raw[0]
    if first in "\"'":
        inner = raw[1:-1]
        if len(raw) < 2 or raw[-1] != first or first in inner or "\\" in inner or not inner.isprintable():
            return NOT_SIMPLE
        return inner
    if _WORD.fullmatch(raw) and raw.lower() not in _RESERVED and not raw.startswith(("_", ".")):
        return raw
    return NOT_SIMPLE


# characters of a flow list of plain decimal numbers: JSON reads those (in C) to the values YAML
# 1.2 gives. JSON refuses every other number form (`+1`, `.5`, `1.`, `017`) and a trailing comma,
# which then go through the item-by-item path below.
_NUMBER_LIST = re.compile(r"[-+0-9.eE, \[\]]*")


def _flow_list(raw: str) -> Any:
    if _NUMBER_LIST.fullmatch(raw):
        try:
            values = json.loads(raw)
        except ValueError:
            pass
        else:
            return values if isinstance(values, list) else NOT_SIMPLE
    if not raw.endswith("]") or raw.count("[") != 1 or "{" in raw or "'" in raw or '"' in raw:
        return NOT_SIMPLE
    inner = raw[1:-1].strip()
    if not inner:
        return []
    items = [part.strip() for part in inner.split(",")]
    if any(not part for part in items):
        return NOT_SIMPLE
    values = [_scalar(part) for part in items]
    return NOT_SIMPLE if any(v is NOT_SIMPLE for v in values) else values
