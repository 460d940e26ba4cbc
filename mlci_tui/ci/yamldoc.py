"""Workflow files as data: ruamel.yaml maps and lists that carry their comments, dumped by the library.

The generators build every workflow from these (never from f-strings), so quoting is the YAML
library's job, and each step still carries the comment that says what it does. ruamel.yaml is
imported here only, when a workflow is written: never on the hook path.
"""

from __future__ import annotations

import io
from typing import Any


def mapping(*pairs: tuple[str, Any], comments: dict[str, str] | None = None) -> Any:
    """A YAML map of `pairs` in order; `comments` (key -> text) become end-of-line comments."""
    from ruamel.yaml.comments import CommentedMap

    out = CommentedMap()
    for key, value in pairs:
        out[key] = value
    for key, text in (comments or {}).items():
        out.yaml_add_eol_comment(text, key)
    return out


def sequence(items: list[Any], *, before: dict[int, str] | None = None, indent: int = 0) -> Any:
    """A YAML list; `before` (index -> text) puts a comment line above an item, at `indent` columns."""
    from ruamel.yaml.comments import CommentedSeq

    out = CommentedSeq(items)
    for index, text in (before or {}).items():
        out.yaml_set_comment_before_after_key(index, before=text, indent=indent)
    return out


def literal(text: str) -> Any:
    """A block scalar (`|`): several lines, each as written."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    return LiteralScalarString(text if text.endswith("\n") else text + "\n")


def comment_above(doc: Any, key: str, text: str, indent: int) -> None:
    """A comment line above `key` of the map `doc`."""
    doc.yaml_set_comment_before_after_key(key, before=text, indent=indent)


def dump(doc: Any, header: str = "") -> str:
    """The document as YAML text (2-space maps, lists indented under their key), `header` comment lines first."""
    if header:
        doc.yaml_set_start_comment(header)
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def load_roundtrip(text: str, source: str) -> Any:
    """A user's YAML file, loaded so that writing it back keeps its comments and order."""
    from ruamel.yaml.error import YAMLError

    from mlci_tui.errors import InputError

    try:
        return _yaml().load(text)
    except YAMLError as exc:
        raise InputError(f"{source}: invalid YAML: {str(exc).splitlines()[0]}") from None


def dump_roundtrip(doc: Any) -> str:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a shell line
    yaml.preserve_quotes = True
    return yaml
