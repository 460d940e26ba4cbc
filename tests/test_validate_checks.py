"""Every check catches its planted failure and passes on clean data, on CSV, Parquet and JSONL.

In-process `Validator` over real files in a real git repository and a real DuckDB; each
planted failure also names its 0-based row in the samples the failure message shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from validate_helpers import (
    COUNTRIES,
    FORMATS,
    PLANTS,
    SCHEMA,
    check_of,
    clean_rows,
    git_env,
    init_repo,
    planted,
    write_table,
)

from mlci_tui.config import validate as validate_config
from mlci_tui.errors import ConfigError
from mlci_tui.gitio import Repo
from mlci_tui.validate.results import DatasetResult
from mlci_tui.validate.run import Validator


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("validate-checks")
    with git_env(tmp):
        repo = init_repo(tmp / "repo")
        (repo / "data").mkdir()
        (repo / "data" / "countries.csv").write_text(COUNTRIES)
        yield repo


def run(root: Path, fmt: str, rows: list[dict[str, Any]], schema: str = SCHEMA) -> DatasetResult:
    write_table(root / "data" / f"customers.{fmt}", rows, fmt)
    datasets = validate_config(yaml.safe_load(schema % {"ext": fmt}), "mlci.yaml")["datasets"]
    v = Validator(Repo.find(root), datasets, record=False, use_cache=False)
    [result] = v.validate_all(v.select(["customers"]))
    return result


@pytest.mark.parametrize("fmt", FORMATS)
def test_clean_data_passes_every_check(root: Path, fmt: str) -> None:
    result = run(root, fmt, clean_rows())
    assert result.status == "pass", [(c.check, c.column, c.status, c.message) for c in result.checks]
    kinds = {(c.check, c.column) for c in result.checks}
    for check, column, _row, _change in PLANTS.values():
        assert (check, column) in kinds, f"{check} on {column} was not run"
    assert all(c.failures == 0 for c in result.checks)
    assert result.rows == 1200


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_planted_failure_is_caught(root: Path, fmt: str, plant: str) -> None:
    check, column, row, change = PLANTS[plant]
    result = run(root, fmt, planted(clean_rows(), plant))
    assert result.status == "fail"
    found = check_of(result, check, column)
    assert found.status == "fail", found
    assert found.failures >= 1 and found.rows == 1200
    assert found.hint
    if check != "sql":
        assert row in [s["row"] for s in found.samples], found.samples  # the 0-based row index
        assert all("customer_id" in s["values"] for s in found.samples), "key columns shown"
    else:
        assert found.samples and found.samples[0]["values"]["signup_date"].startswith("2031")
    if column and check not in ("nullable", "unique"):
        shown = [v for v, _n in found.top_values]
        assert shown, "most common offending values"
    # only this plant's checks fail (unique and primary_key share one plant; references also breaks allowed_values)
    others = {(c.check, c.column) for c in result.checks if c.status == "fail"} - {(check, column)}
    allowed = {("primary_key", None), ("unique", "customer_id"), ("allowed_values", "country")}
    assert others <= allowed, others


@pytest.mark.parametrize("fmt", FORMATS)
def test_row_count_and_strict_schema(root: Path, fmt: str) -> None:
    result = run(root, fmt, clean_rows(50))
    assert check_of(result, "row_count", None).status == "fail"
    assert "50 rows, expected at least 1,000" in check_of(result, "row_count", None).message
    rows = [{**r, "extra": 1} for r in clean_rows()]
    result = run(root, fmt, rows)
    strict = [c for c in result.checks if c.check == "columns"]
    assert strict and strict[0].status == "fail" and "extra" in strict[0].message
    rows = [{k: v for k, v in r.items() if k != "code"} for r in clean_rows()]
    result = run(root, fmt, rows)
    assert any(c.check == "columns" and "code" in c.message for c in result.checks)


def test_nulls_are_skipped_by_range_allowed_and_regex_checks(root: Path) -> None:
    rows = clean_rows()
    for i in range(20):
        rows[i].update({"income": None, "country": None, "code": None, "age": None})
    result = run(root, "csv", rows)
    assert result.status == "pass", [(c.check, c.column, c.failures) for c in result.checks if c.failures]


def test_warn_severity_and_tolerances(root: Path) -> None:
    rows = planted(clean_rows(), "allowed_values")
    warn = SCHEMA.replace(
        'allowed_values: ["US", "GB", "NO"]', 'allowed_values: {value: ["US", "GB", "NO"], severity: warn}'
    )
    result = run(root, "csv", rows, warn)
    assert result.status == "warn" and check_of(result, "allowed_values", "country").status == "warn"
    tolerant = SCHEMA.replace(
        'allowed_values: ["US", "GB", "NO"]', 'allowed_values: {value: ["US", "GB", "NO"], max_failures: 1}'
    )
    result = run(root, "csv", rows, tolerant)
    assert result.status == "pass" and check_of(result, "allowed_values", "country").failures == 1
    fraction = SCHEMA.replace("income: {type: float64, min: 0}", "income: {type: float64, min: 0, max_fraction: 0.01}")
    rows = clean_rows()
    for i in range(10):
        rows[i]["income"] = -1
    assert run(root, "csv", rows, fraction).status == "pass"  # 10 of 1,200 < 1%
    for i in range(30):
        rows[i]["income"] = -1
    assert check_of(run(root, "csv", rows, fraction), "min", "income").status == "fail"  # 30 of 1,200 > 1%


def test_a_type_failure_late_in_a_csv_is_counted_not_a_crash(root: Path) -> None:
    rows = clean_rows(30000)
    rows[29000]["age"] = "abc"  # beyond DuckDB's sniffing sample: the scan re-reads as text
    result = run(root, "csv", rows)
    found = check_of(result, "type", "age")
    assert found.status == "fail" and found.failures == 1
    assert [s["row"] for s in found.samples] == [29000]


def test_yaml_11_no_is_refused_for_a_string_column() -> None:
    raw = yaml.safe_load(
        "datasets:\n  c:\n    path: c.csv\n    columns:\n      country: {type: string, allowed_values: [US, NO]}\n"
    )
    datasets = validate_config(raw, "mlci.yaml")["datasets"]
    with pytest.raises(ConfigError, match=r"allowed_values\[1\]: False for a string column.*quote it"):
        Validator(Repo.find("."), datasets, record=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_composite_primary_key_counts_null_parts_and_repeats(root: Path, fmt: str) -> None:
    """A key with a null part fails; a complete key repeated fails beyond its first row (the
    exact distinct count runs as its own query in Parquet, inside the one pass in CSV)."""
    rows = clean_rows()
    rows[3]["age"] = None  # (customer_id, age) with a null part
    rows[5].update(customer_id=rows[4]["customer_id"], age=rows[4]["age"])  # a repeated complete key
    schema = SCHEMA.replace("primary_key: [customer_id]", "primary_key: [customer_id, age]").replace(
        "customer_id: {type: int64, nullable: false, unique: true}", "customer_id: {type: int64}"
    )
    result = run(root, fmt, rows, schema)
    pk = check_of(result, "primary_key", None)
    assert (pk.status, pk.failures) == ("fail", 2), pk
    assert {s["row"] for s in pk.samples} == {3, 4, 5}
