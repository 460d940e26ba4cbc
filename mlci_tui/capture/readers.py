"""Readers for params and metrics files: JSON, YAML 1.2, TOML, CSV/TSV and dvclive layouts.

Everything here parses bytes (from git objects or the working tree) into flat dotted names.
Bad input raises `InputError` with file, line and reason; limits from docs/contracts.md (size,
nesting depth, key count) are enforced before and during parsing so a hostile file cannot
exhaust memory.
"""

from __future__ import annotations

import io
import json
import re

from mlci_tui.errors import InputError
from mlci_tui.importers import simple_yaml
from mlci_tui.values import Frozen, Plain

TYPE_CHECKING = False  # not `from typing import ...`: the commit hooks read through this module
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

MAX_NAME_LENGTH = 1024


class Limits(Frozen):
    __slots__ = ("max_bytes", "max_depth", "max_keys")
    max_bytes: int
    max_depth: int
    max_keys: int

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_depth: int = 64, max_keys: int = 100_000) -> None:
        object.__setattr__(self, "max_bytes", max_bytes)
        object.__setattr__(self, "max_depth", max_depth)
        object.__setattr__(self, "max_keys", max_keys)

    @classmethod
    def from_config(cls, limits: dict[str, Any]) -> Limits:
        return cls(int(limits["max_file_mb"] * 1024 * 1024), int(limits["max_depth"]), int(limits["max_keys"]))


class Step(Plain):
    __slots__ = ("file", "name", "step", "value")

    def __init__(self, file: str, name: str, step: int, value: float) -> None:
        self.file = file
        self.name = name
        self.step = step
        self.value = value


class MetricsRead(Plain):
    __slots__ = ("values", "steps", "warnings")

    def __init__(
        self, values: dict[str, float] | None = None, steps: list[Step] | None = None, warnings: list[str] | None = None
    ) -> None:
        self.values = {} if values is None else values
        self.steps = [] if steps is None else steps
        self.warnings = [] if warnings is None else warnings


def check_size(name: str, size: int, limits: Limits) -> None:
    if size > limits.max_bytes:
        raise InputError(
            f"{name}: {_amount(size)} is over the {_amount(limits.max_bytes)} limit (limits.max_file_mb in mlci.yaml)"
        )


def _amount(size: int) -> str:
    """Bytes as people read them: `1,200 bytes` under 1 MB (small limits), `64 MB` above."""
    return f"{size:,} bytes" if size < 1048576 else f"{size / 1048576:.1f} MB".replace(".0 MB", " MB")


def decode(name: str, data: bytes, limits: Limits) -> str:
    check_size(name, len(data), limits)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise InputError(f"{name}: empty file")
    return text


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > name.rfind("/") else ""


def parse_tree(name: str, data: bytes, limits: Limits) -> Any:
    """Parse a JSON, YAML 1.2 or TOML document into Python values."""
    text = decode(name, data, limits)
    suffix = _suffix(name)
    if suffix in (".yaml", ".yml"):
        return parse_yaml12(name, text)
    if suffix not in (".json", ".toml"):
        raise InputError(f"{name}: unsupported file type (use .json, .yaml, .yml, .toml, .csv or .tsv)")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys) if suffix == ".json" else _tomllib().loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError, or an integer too long to convert
        raise InputError(f"{name}: invalid {suffix[1:].upper()}: {exc}") from None
    except RecursionError:
        raise InputError(f"{name}: nested deeper than {limits.max_depth} levels") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose key repeats is refused, as YAML refuses it (last-wins would hide a value)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {twice!r}")
    return out


def _tomllib() -> Any:
    """tomllib, imported when a TOML file is read (tomli before Python 3.11)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib


def parse_yaml12(name: str, text: str) -> Any:
    """YAML 1.2 (`1e-5` is a float, `NO` a string), everywhere (docs/contracts.md: names and values).

    Plain params YAML goes through `simple_yaml`, which reads it exactly or declines; ruamel.yaml
    (pure Python: 77 ms to import, minutes for a 50 MB file) reads everything else."""
    tree = simple_yaml.load(text)
    if tree is not simple_yaml.NOT_SIMPLE:
        return tree
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise InputError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except YAMLError as exc:
        raise InputError(f"{name}: invalid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise InputError(f"{name}: nested too deeply") from None


def flatten(name: str, tree: Any, limits: Limits) -> dict[str, Any]:
    """Nested mappings become dotted names (`train.lr`); a key holding `/` stays whole.

    Iterative, with depth and key-count limits checked as it goes: an alias bomb or a
    100-level nesting is refused, not expanded.
    """
    if not isinstance(tree, dict):
        raise InputError(f"{name}: expected a mapping at the top level, got {type(tree).__name__}")
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any, int]] = [("", tree, 1)]
    seen = 0
    text_size = 0  # characters of names and strings once aliases are expanded
    while stack:
        prefix, node, depth = stack.pop()
        if depth > limits.max_depth:
            raise InputError(f"{name}: {prefix or 'document'}: nested deeper than {limits.max_depth} levels")
        for key, value in node.items():
            seen += 1
            if seen > limits.max_keys:
                raise InputError(f"{name}: more than {limits.max_keys} keys (limits.max_keys in mlci.yaml)")
            key_text = _key_text(key)
            full = f"{prefix}.{key_text}" if prefix else key_text
            if isinstance(value, dict) and value:
                stack.append((full, value, depth + 1))
            else:
                check_name(name, full)
                _check_scalar(name, full, value)
                if full in out:
                    raise InputError(f"{name}: {full}: named twice (a dotted key and a nested one); rename one")
                text_size += len(full)
                if isinstance(value, list):
                    text_size += _check_list(name, full, value, depth + 1, limits)
                elif isinstance(value, str):
                    text_size += len(value)
                if text_size > limits.max_bytes:
                    raise InputError(
                        f"{name}: expands to more than {_amount(limits.max_bytes)} of text "
                        "(YAML aliases?); refused (limits.max_file_mb in mlci.yaml)"
                    )
                out[full] = value
    return out


# item types that hold no text and no value a ledger cannot take (a float is any float; an int
# may be too large, a str adds to the text size)
_NOTHING_TO_CHECK = frozenset({float, bool, type(None)})
_JSON_SCALARS = frozenset({float, int, bool, str, type(None)})


def _check_list(name: str, key: str, value: list[Any], depth: int, limits: Limits) -> int:
    """Check depth and item count of a list value; return the characters of text it holds."""
    stack = [(value, depth)]
    count = 0
    size = 0
    while stack:
        node, level = stack.pop()
        if level > limits.max_depth:
            raise InputError(f"{name}: {key}: nested deeper than {limits.max_depth} levels")
        items = node.values() if isinstance(node, dict) else node
        count += len(items)
        if count > limits.max_keys:
            raise InputError(f"{name}: {key}: more than {limits.max_keys} items")
        # a list of floats (most of a large params file) needs no per-item Python loop
        for item in () if _NOTHING_TO_CHECK.issuperset(map(type, items)) else items:
            if isinstance(item, (list, dict)):
                stack.append((item, level + 1))  # type: ignore[arg-type]
            elif isinstance(item, str):
                size += len(item)
            else:
                _check_scalar(name, key, item)
        if isinstance(node, dict):
            size += sum(len(str(k)) for k in node)
        if size > limits.max_bytes:
            raise InputError(
                f"{name}: {key}: expands to more than {_amount(limits.max_bytes)} of text "
                "(YAML aliases?); refused (limits.max_file_mb in mlci.yaml)"
            )
    return size


def _check_scalar(name: str, key: str, value: Any) -> None:
    """Values a ledger cannot hold as they were meant: a YAML set or binary (stored as Python's
    repr before), an integer too large for a metric's float."""
    if isinstance(value, (set, frozenset, bytes, bytearray)):
        kind = "binary" if isinstance(value, (bytes, bytearray)) else "set"
        raise InputError(f"{name}: {key}: a YAML {kind} is not a param or metric value (use a list or a string)")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**1023:
        raise InputError(f"{name}: {key}: integer too large ({len(str(abs(value)))} digits)")


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def check_name(file: str, name: str) -> None:
    if not name:
        raise InputError(f"{file}: empty key name")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(f"{file}: key name longer than {MAX_NAME_LENGTH} characters: {name[:40]}…")
    if "\x00" in name:
        raise InputError(f"{file}: key name holds a NUL character")


def read_params(name: str, data: bytes, limits: Limits) -> dict[str, Any]:
    tree = parse_tree(name, data, limits)
    if tree is None:
        raise InputError(f"{name}: empty document")
    values = flatten(name, tree, limits)
    return {k: _jsonable(v) for k, v in values.items()}


def _jsonable(value: Any) -> Any:
    """Params keep their YAML type; dates and other scalars become strings."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        if _JSON_SCALARS.issuperset(map(type, value)):
            return value  # already JSON's (exact types: a subclass takes the walk below)
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def read_metrics(name: str, data: bytes, limits: Limits) -> MetricsRead:
    suffix = _suffix(name)
    if suffix in (".csv", ".tsv"):
        return read_table_metrics(name, data, limits)
    if suffix == ".txt":
        return read_text_metrics(name, data, limits)
    # any other suffix (DVC's `.metric` files, no suffix at all) is read as YAML, as DVC does
    if suffix in TREE_SUFFIXES:
        tree = parse_tree(name, data, limits)
    else:
        tree = parse_yaml12(name, decode(name, data, limits))
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        base = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        _check_scalar(name, base, tree)
        return MetricsRead(values={base: float(tree)})
    result = MetricsRead()
    for key, value in flatten(name, tree, limits).items():
        number = as_number(value)
        if number is None:
            result.warnings.append(f"{name}: {key}: not a number ({_short(value)}), not recorded")
        else:
            result.values[key] = number
    return result


TREE_SUFFIXES = (".json", ".yaml", ".yml", ".toml")
_TEXT_LINE = r"\s*(?P<key>[^:=]+?)\s*[:=]\s*(?P<value>.*?)\s*"  # compiled by `re` on first use: rare files


def read_text_metrics(name: str, data: bytes, limits: Limits) -> MetricsRead:
    """`key: value` or `key=value` lines (CML's `metrics.txt`: `Accuracy: 0.86`, `65.6%`).

    Blank lines and `#` comments are skipped; a value that is not a number is left out with a
    warning; a file holding one bare number is named after the file, as a JSON one is."""
    text = decode(name, data, limits)
    lines = [(no, line) for no, line in enumerate(text.splitlines(), 1) if line.strip() and line.strip()[0] != "#"]
    result = MetricsRead()
    if len(lines) == 1 and (bare := cell_number(lines[0][1].strip().removesuffix("%"))) is not None:
        result.values[name.rsplit("/", 1)[-1].rsplit(".", 1)[0]] = bare
        return result
    for no, line in lines:
        found = re.fullmatch(_TEXT_LINE, line)
        if found is None:
            result.warnings.append(f"{name}:{no}: not a `key: value` line, not recorded")
            continue
        key, value = found.group("key"), found.group("value")
        check_name(name, key)
        if key in result.values:
            raise InputError(f"{name}:{no}: {key}: named twice")
        if len(result.values) >= limits.max_keys:
            raise InputError(f"{name}: more than {limits.max_keys} keys (limits.max_keys in mlci.yaml)")
        number = cell_number(value.removesuffix("%"))
        if number is None:
            result.warnings.append(f"{name}:{no}: {key}: not a number ({_short(value)}), not recorded")
        else:
            result.values[key] = number
    if len(result.warnings) == len(lines):
        raise InputError(f"{name}: no `key: value` or `key=value` line with a number")
    return result


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, allow_nan=True)
    return text if len(text) <= 40 else text[:37] + "..."


def read_table_metrics(name: str, data: bytes, limits: Limits, series_name: str | None = None) -> MetricsRead:
    """CSV/TSV: every row is a step; the last row gives the final values.

    A `step` column (or dvclive's `step`) numbers the rows; `timestamp` is ignored. With
    `series_name`, a single value column is named after the file (dvclive's plots layout).
    """
    import csv  # lazy: the capture of a plain params/metrics commit reads no table (~6 ms of imports)

    text = decode(name, data, limits)
    delimiter = "\t" if _suffix(name) == ".tsv" else ","
    # newline="": a quoted field may hold a line break, and a lone CR ends a line (old Mac files)
    rows_read = _csv_rows(name, csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    first = next(rows_read, None)
    if first is None:
        raise InputError(f"{name}: empty file")
    header = [h.strip() for h in first[1]]
    for h in header:
        check_name(name, h)
        if h and header.count(h) > 1:
            raise InputError(f"{name}:{first[0]}: column {h!r} appears twice")
    if len(header) > limits.max_keys:
        raise InputError(f"{name}: more than {limits.max_keys} columns")
    step_col = header.index("step") if "step" in header else None
    value_cols = [i for i, h in enumerate(header) if i != step_col and h not in ("timestamp", "")]
    result = MetricsRead()
    rows = 0
    for line_no, row in rows_read:
        if not row or all(not c.strip() for c in row):
            continue
        rows += 1
        if rows * max(1, len(value_cols)) > limits.max_keys * 10:
            raise InputError(f"{name}: more than {limits.max_keys * 10} values")
        if len(row) != len(header):
            raise InputError(f"{name}:{line_no}: expected {len(header)} columns, got {len(row)}")
        if step_col is not None:
            step_number = as_number(cell_number(row[step_col]))
            if step_number is None or not abs(step_number) < 2**63 or step_number != int(step_number):
                raise InputError(f"{name}:{line_no}: step {row[step_col]!r} is not an integer")
            step = int(step_number)
        else:
            step = rows - 1
        for i in value_cols:
            metric = series_name if series_name and len(value_cols) == 1 else header[i]
            number = cell_number(row[i])
            if number is None:
                result.warnings.append(f"{name}:{line_no}: {header[i]}: not a number ({_short(row[i])})")
                continue
            result.steps.append(Step(name, metric, step, number))
            result.values[metric] = number
    return result


def _csv_rows(name: str, reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(line number, row) pairs; a malformed CSV is an InputError naming the line."""
    import csv

    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{name}:{reader.line_num}: invalid CSV: {exc}") from None
        yield reader.line_num, row


def cell_number(cell: str) -> float | None:
    text = cell.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None
