"""What a validation found, as plain data: the same dict goes to text, `--format json` and the ledger."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CheckResult:
    check: str  # type, nullable, unique, min, max, allowed_values, regex, length, references,
    #             primary_key, row_count, columns, sql, row_count_change, schema_change, drift
    column: str | None
    params: dict[str, Any]
    severity: str
    status: str = "pass"  # pass, fail, warn, skip
    failures: int = 0
    rows: int = 0
    message: str = ""
    top_values: list[list[Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    hint: str = ""


@dataclass
class DatasetResult:
    dataset: str
    path: str
    rev: str
    content_hash: str = ""
    status: str = "pass"  # pass, warn, fail, error (unreadable data), unavailable
    rows: int | None = None
    base_rev: str | None = None
    base_hash: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    cached: bool = False

    def finish(self) -> DatasetResult:
        if self.status in ("error", "unavailable"):
            return self
        if any(c.status == "fail" for c in self.checks):
            self.status = "fail"
        elif any(c.status == "warn" for c in self.checks) or self.warnings:
            self.status = "warn"
        else:
            self.status = "pass"
        return self

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error", "unavailable")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("cached")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetResult:
        checks = [CheckResult(**c) for c in data.get("checks", [])]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "checks"}
        return cls(**fields, checks=checks)
