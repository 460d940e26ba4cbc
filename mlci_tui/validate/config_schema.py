"""The `datasets:` section of mlci.yaml (loaded by `config.load_plugin_sections`).

Every check takes a `severity` (error|warn) and a tolerance (`max_failures` or
`max_fraction`): either on the column (for all of its checks) or on one check written as a
mapping with `value:` (`min: {value: 0, severity: warn}`). Values are only shape-checked
here; `validate.spec` coerces them to the column's type (YAML 1.1 reads `NO` as false).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from mlci_tui.config import Bool, Enum, ListOf, MapOf, Number, Schema, Str, Struct
from mlci_tui.errors import ConfigError

SEVERITY = Enum("error", "warn")
TYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "integer",
    "float32",
    "float64",
    "number",
    "string",
    "bool",
    "date",
    "timestamp",
)
TOLERANCE: dict[str, tuple[Schema, Any]] = {
    "severity": (SEVERITY, None),
    "max_failures": (Number(integer=True, minimum=0), None),
    "max_fraction": (Number(minimum=0), None),
}


class Scalar(Schema):
    """A number, string, boolean or date (YAML reads `2015-01-01` unquoted as a date)."""

    expected = "a number, string, boolean or date"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if isinstance(value, (int, float, str, bool, dt.date)):
            return value
        raise fail(path, f"expected {self.expected}, got {type(value).__name__} {value!r}")


class Check(Schema):
    """A check's value, or `{value: ..., severity: ..., max_failures: ..., max_fraction: ...}`."""

    def __init__(self, inner: Schema) -> None:
        self.inner = inner
        self.expected = inner.expected
        self.struct = Struct({"value": (inner, None), **TOLERANCE})

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if isinstance(value, dict) and "value" in value:
            return self.struct.check(value, path, fail)
        return {
            "value": self.inner.check(value, path, fail),
            "severity": None,
            "max_failures": None,
            "max_fraction": None,
        }


class Length(Schema):
    """`length: 5` (exactly) or `length: {min: 1, max: 64}`."""

    expected = "an integer or {min, max}"
    struct = Struct({"min": (Number(integer=True, minimum=0), None), "max": (Number(integer=True, minimum=0), None)})

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"min": value, "max": value}
        return self.struct.check(value, path, fail)


class AllowedValues(Schema):
    expected = "a list of values"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if not isinstance(value, list):
            raise fail(path, f"expected {self.expected}, got {type(value).__name__} {value!r}")
        return [Scalar().check(v, f"{path}[{i}]", fail) for i, v in enumerate(value)]


class SchemaChange(Schema):
    """`schema_change: error|warn` or `{severity: ...}`."""

    expected = "error or warn"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if isinstance(value, dict):
            return Struct({"severity": (SEVERITY, "error")}).check(value, path, fail)["severity"]
        return SEVERITY.check(value, path, fail)


COLUMN = Struct(
    {
        "type": (Enum(*TYPES), None),
        "nullable": (Check(Bool()), None),
        "unique": (Check(Bool()), None),
        "min": (Check(Scalar()), None),
        "max": (Check(Scalar()), None),
        "allowed_values": (Check(AllowedValues()), None),
        "regex": (Check(Str()), None),
        "length": (Check(Length()), None),
        "references": (Check(Str(pattern=r"[^.\s]+\.[^\s]+", hint="write DATASET.COLUMN")), None),
        # `mlci data diff`: a numeric change within abs + rel * |old| is no change (float noise)
        "diff": (Struct({"abs": (Number(minimum=0), 0), "rel": (Number(minimum=0), 0)}), None),
        **TOLERANCE,
    }
)

SQL_CHECK = Struct(
    {
        "name": (Str(), None),
        "sql": (Str(), None),  # a query over the table `data` returning the failing rows
        "description": (Str(), None),
        **TOLERANCE,
    }
)

CSV_OPTIONS = Struct(
    {
        "delimiter": (Str(), None),
        "header": (Bool(), True),
        "quote": (Str(), None),
        "encoding": (Enum("utf-8", "utf-16", "latin-1"), "utf-8"),
    }
)

COMPARE = Struct(
    {
        "row_count_change": (
            Struct({"max_pct": (Number(minimum=0), None), "severity": (SEVERITY, "error")}),
            None,
        ),
        "schema_change": (SchemaChange(), None),
        "drift": (
            Struct(
                {
                    "columns": (ListOf(Str()), list),
                    "method": (Enum("psi", "ks", "chi2"), "psi"),
                    "threshold": (Number(minimum=0), None),
                    "severity": (SEVERITY, "error"),
                }
            ),
            None,
        ),
    }
)

DATASET = Struct(
    {
        "path": (Str(), None),
        "format": (Enum("csv", "tsv", "parquet", "jsonl"), None),
        "csv": (CSV_OPTIONS, None),
        "primary_key": (ListOf(Str()), list),
        "row_count": (
            Struct({"min": (Number(integer=True, minimum=0), None), "max": (Number(integer=True, minimum=0), None)}),
            None,
        ),
        "schema": (Struct({"strict": (Bool(), False), "severity": (SEVERITY, "error")}), None),
        "columns": (MapOf(COLUMN), dict),
        "checks": (ListOf(SQL_CHECK), list),
        "compare": (COMPARE, None),
        "severity": (SEVERITY, "error"),
    }
)

SECTIONS: dict[str, Schema] = {"datasets": MapOf(DATASET)}
