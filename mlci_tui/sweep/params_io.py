"""Write a trial's params into its params files, keeping their comments and formatting.

YAML goes through ruamel.yaml's round-trip mode (comments, key order, quoting and
indentation survive); JSON is rewritten with two-space indentation. A name is a dotted
path (`train.lr`), or `file:name` to choose the file; an existing key that itself holds
a dot is matched whole before the name is split further.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlci_tui.errors import InputError


def split_name(name: str, default_file: str) -> tuple[str, str]:
    """(file, dotted name) of a param name, `file:name` or plain."""
    if ":" in name:
        file, _, inner = name.rpartition(":")
        if file and inner:
            return file, inner
    return default_file, name


def group_by_file(params: Mapping[str, Any], default_file: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in params.items():
        file, inner = split_name(name, default_file)
        out.setdefault(file, {})[inner] = value
    return out


def _set(doc: Any, dotted: str, value: Any, new_map: Any) -> None:
    parts = dotted.split(".")
    node = doc
    while parts:
        # the longest run of parts that is an existing key (a key may hold a dot)
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if isinstance(node, dict) and key in node:
                break
        else:
            key, n = parts[0], 1
        parts = parts[n:]
        if not parts:
            node[key] = value
            return
        if key not in node or not isinstance(node[key], dict):
            node[key] = new_map()
        node = node[key]


def _float_repr(representer: Any, value: float) -> Any:
    """Floats that YAML 1.1 readers (PyYAML) also read as floats: 1.0e-05, not 1e-05."""
    text = repr(value)
    if text in ("nan", "inf", "-inf"):
        text = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[text]
    elif "e" in text and "." not in text.split("e")[0]:
        mantissa, exp = text.split("e")
        text = f"{mantissa}.0e{exp}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def write_yaml(path: Path, values: Mapping[str, Any]) -> None:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.representer.add_representer(float, _float_repr)
    doc: Any = CommentedMap()
    if path.exists():
        try:
            doc = yaml.load(path.read_text(encoding="utf-8")) or CommentedMap()
        except Exception as exc:  # ruamel raises many error types; any of them means "not YAML"
            raise InputError(f"{path.name}: cannot read as YAML to write params ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path.name}: the params file is not a mapping at the top level")
    for dotted, value in values.items():
        _set(doc, dotted, value, CommentedMap)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    _atomic_write(path, buf.getvalue())


def write_json(path: Path, values: Mapping[str, Any]) -> None:
    doc: Any = {}
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise InputError(f"{path.name}: cannot read as JSON to write params") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path.name}: the params file is not an object at the top level")
    for dotted, value in values.items():
        _set(doc, dotted, value, dict)
    _atomic_write(path, json.dumps(doc, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.mlci-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def apply_params(root: Path, params: Mapping[str, Any], default_file: str) -> list[str]:
    """Write every param into its file under `root`; returns the files written."""
    written = []
    for file, values in group_by_file(params, default_file).items():
        target = (root / file).resolve()
        if not target.is_relative_to(root.resolve()):
            raise InputError(f"params file {file!r} is outside the repository")
        if file.endswith((".yaml", ".yml")):
            write_yaml(target, values)
        elif file.endswith(".json"):
            write_json(target, values)
        else:
            raise InputError(f"params file {file!r}: sweeps write YAML or JSON params files only")
        written.append(file)
    return written
