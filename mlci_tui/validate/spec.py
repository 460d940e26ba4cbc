"""A dataset's config entry, normalised: literals coerced to the column type, paths checked.

YAML 1.1 (PyYAML, which reads mlci.yaml) turns `NO`, `yes`, `off` into booleans: such a
value for a string column is refused with a hint to quote it, never silently compared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from mlci_tui.errors import ConfigError

INTEGER_TYPES = {
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "integer": "BIGINT",
}
FLOAT_TYPES = {"float32": "FLOAT", "float64": "DOUBLE", "number": "DOUBLE"}
SQL_TYPES = {
    **INTEGER_TYPES,
    **FLOAT_TYPES,
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
YAML11_BOOL_HINT = (
    'YAML 1.1 (how mlci.yaml is read) turns unquoted NO/YES/ON/OFF/y/n into true/false; quote it (e.g. "NO")'
)


@dataclass
class Tolerance:
    severity: str = "error"
    max_failures: int | None = None
    max_fraction: float | None = None

    def allows(self, failures: int, rows: int) -> bool:
        if failures == 0:
            return True
        if self.max_failures is not None and failures <= self.max_failures:
            return True
        return self.max_fraction is not None and rows > 0 and failures / rows <= self.max_fraction

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_failures is not None:
            out["max_failures"] = self.max_failures
        if self.max_fraction is not None:
            out["max_fraction"] = self.max_fraction
        return out


@dataclass
class ColumnCheck:
    kind: str  # type, nullable, unique, min, max, allowed_values, regex, length, references
    value: Any
    tolerance: Tolerance


@dataclass
class ColumnSpec:
    name: str
    type: str | None
    checks: list[ColumnCheck] = field(default_factory=list)
    diff: tuple[float, float] | None = None  # (abs, rel): `mlci data diff` ignores numeric changes within it

    @property
    def sql_type(self) -> str | None:
        return SQL_TYPES.get(self.type) if self.type else None


@dataclass
class SqlCheck:
    name: str
    sql: str
    tolerance: Tolerance


@dataclass
class DatasetSpec:
    name: str
    path: str
    format: str
    csv: dict[str, Any]
    primary_key: list[str]
    row_count: dict[str, Any] | None
    strict: bool
    schema_severity: str
    columns: dict[str, ColumnSpec]
    checks: list[SqlCheck]
    compare: dict[str, Any] | None
    severity: str
    raw: dict[str, Any]

    def schema_hash(self) -> str:
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_path(path: str, where: str) -> str:
    """A repository-relative path that stays inside the repository."""
    p = PurePosixPath(path)
    if not path or path.startswith("/") or os.path.isabs(path) or ".." in p.parts or "\\" in path:
        raise ConfigError(f"{where}: {path!r}: a dataset path must be relative and stay inside the repository")
    return str(p)


def format_of(path: str, declared: str | None, where: str) -> str:
    """The declared format, else the one the extension names; "" for a path without an
    extension (a folder dataset: its data files' extension decides, see validate/source.py)."""
    if declared:
        return declared
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if not suffix:
        return ""
    raise ConfigError(
        f"{where}.format: cannot tell the format of {path!r} from its extension; set csv, parquet or jsonl"
    )


def coerce(value: Any, ctype: str | None, where: str) -> Any:
    """A config literal as a value of the column's type (the SQL literal is built from this)."""
    if ctype is None:
        if isinstance(value, bool) or value is None:
            return value
        return value
    if ctype == "string":
        if isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} for a string column: {YAML11_BOOL_HINT}")
        if isinstance(value, float):
            raise ConfigError(f"{where}: {value!r} is a number in YAML; quote it for a string column")
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value)
    if ctype == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false for a bool column, got {value!r}")
    if ctype in INTEGER_TYPES or ctype in FLOAT_TYPES:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} for a numeric column: {YAML11_BOOL_HINT}")
        if isinstance(value, str):
            try:
                value = float(value) if ctype in FLOAT_TYPES else int(value)
            except ValueError:
                raise ConfigError(f"{where}: {value!r} is not a {ctype}") from None
        if ctype in INTEGER_TYPES and isinstance(value, float):
            if value != int(value):
                raise ConfigError(f"{where}: {value!r} is not an integer, as a {ctype} column needs")
            value = int(value)
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {value!r} is not a number")
        return value
    if ctype in ("date", "timestamp"):
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=" ") if ctype == "timestamp" else value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"{where}: {value!r} is not an ISO {ctype} (YYYY-MM-DD)") from None
            return parsed.date().isoformat() if ctype == "date" else parsed.isoformat(sep=" ")
        raise ConfigError(f"{where}: {value!r} is not a {ctype}")
    return value


def _tolerance(check: dict[str, Any] | None, column: dict[str, Any], dataset: dict[str, Any]) -> Tolerance:
    check = check or {}
    return Tolerance(
        severity=check.get("severity") or column.get("severity") or dataset.get("severity") or "error",
        max_failures=check.get("max_failures", None)
        if check.get("max_failures") is not None
        else column.get("max_failures"),
        max_fraction=check.get("max_fraction", None)
        if check.get("max_fraction") is not None
        else column.get("max_fraction"),
    )


def _diff_tolerance(entry: dict[str, Any] | None, ctype: str | None, where: str) -> tuple[float, float] | None:
    """`diff: {abs, rel}`: numeric noise `mlci data diff` does not count as a change."""
    if not entry:
        return None
    if ctype is not None and ctype not in INTEGER_TYPES and ctype not in FLOAT_TYPES:
        raise ConfigError(f"{where}.diff: a tolerance needs a numeric column, and this one is {ctype}")
    return float(entry.get("abs") or 0), float(entry.get("rel") or 0)


MAX_COLUMN_NAME = 255
_IDENT = re.compile(rf"^[^\x00-\x1f\"]{{1,{MAX_COLUMN_NAME}}}$")


def is_ident(name: str) -> bool:
    """Whether `name` can name a column in mlci.yaml (no quotes or control characters, 1-255 long)."""
    return bool(_IDENT.match(name))


def build(name: str, raw: dict[str, Any]) -> DatasetSpec:
    where = f"mlci.yaml: datasets.{name}"
    if not raw.get("path"):
        raise ConfigError(f"{where}.path: required (the dataset's file, relative to the repository root)")
    path = check_path(raw["path"], f"{where}.path")
    fmt = format_of(path, raw.get("format"), where)
    columns: dict[str, ColumnSpec] = {}
    for col_name, col in (raw.get("columns") or {}).items():
        cwhere = f"{where}.columns.{col_name}"
        if len(col_name) > MAX_COLUMN_NAME:
            raise ConfigError(f"{cwhere[:80]}…: a column name is at most {MAX_COLUMN_NAME} characters")
        if not _IDENT.match(col_name):
            raise ConfigError(f"{cwhere}: column names may not hold quotes or control characters")
        ctype = col.get("type")
        spec = ColumnSpec(col_name, ctype)
        if ctype:
            spec.checks.append(ColumnCheck("type", ctype, _tolerance(None, col, raw)))
        for kind in ("nullable", "unique", "min", "max", "allowed_values", "regex", "length", "references"):
            entry = col.get(kind)
            if entry is None or entry.get("value") is None:
                continue
            value = entry["value"]
            if kind in ("min", "max"):
                value = coerce(value, ctype, f"{cwhere}.{kind}")
            elif kind == "allowed_values":
                value = [coerce(v, ctype or "string", f"{cwhere}.allowed_values[{i}]") for i, v in enumerate(value)]
                if not value:
                    raise ConfigError(f"{cwhere}.allowed_values: empty list: no value could pass")
            elif kind == "regex":
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ConfigError(f"{cwhere}.regex: invalid regular expression: {exc}") from None
            elif kind in ("nullable", "unique") and value is (kind == "nullable"):
                continue  # only `nullable: false` and `unique: true` check anything
            spec.checks.append(ColumnCheck(kind, value, _tolerance(entry, col, raw)))
        spec.diff = _diff_tolerance(col.get("diff"), ctype, cwhere)
        columns[col_name] = spec
    checks = []
    for i, item in enumerate(raw.get("checks") or []):
        if not item.get("sql"):
            raise ConfigError(f"{where}.checks[{i}].sql: required (a query over `data` returning failing rows)")
        checks.append(SqlCheck(item.get("name") or f"check_{i + 1}", item["sql"], _tolerance(item, {}, raw)))
    for key in raw.get("primary_key") or []:
        if key not in columns:
            columns[key] = ColumnSpec(key, None)
    compare = raw.get("compare")
    if compare and compare.get("drift"):
        for col_name in compare["drift"]["columns"]:
            if not _IDENT.match(col_name):
                raise ConfigError(f"{where}.compare.drift.columns: bad column name {col_name!r}")
    schema = raw.get("schema") or {}
    return DatasetSpec(
        name=name,
        path=path,
        format=fmt,
        csv=raw.get("csv") or {"delimiter": None, "header": True, "quote": None, "encoding": "utf-8"},
        primary_key=list(raw.get("primary_key") or []),
        row_count=raw.get("row_count"),
        strict=bool(schema.get("strict")),
        schema_severity=schema.get("severity") or raw.get("severity") or "error",
        columns=columns,
        checks=checks,
        compare=compare,
        severity=raw.get("severity") or "error",
        raw=raw,
    )


def load_specs(datasets: dict[str, Any] | None) -> dict[str, DatasetSpec]:
    specs = {name: build(name, raw) for name, raw in (datasets or {}).items()}
    for spec in specs.values():
        for col in spec.columns.values():
            for check in col.checks:
                if check.kind == "references":
                    other = str(check.value).split(".", 1)[0]
                    if other not in specs:
                        raise ConfigError(
                            f"mlci.yaml: datasets.{spec.name}.columns.{col.name}.references: "
                            f"no dataset named {other!r} (known: {', '.join(sorted(specs))})"
                        )
    return specs
