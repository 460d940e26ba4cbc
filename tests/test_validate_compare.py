"""Comparison with the previous version: harmless changes pass, drift flags only the shifted
column, row count and schema changes, and a previous version with neither profile nor data
is skipped with a warning. Real git repository, real DuckDB, real ledger."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import git
from validate_helpers import check_of, clean_rows, git_env, init_repo, write_csv

from mlci_tui.config import validate as validate_config
from mlci_tui.data.cache import DataCache
from mlci_tui.data.pointer import Pointer, dump_pointer
from mlci_tui.gitio import Repo
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.validate.results import DatasetResult
from mlci_tui.validate.run import Validator

SCHEMA = """\
datasets:
  customers:
    path: %(path)s
    columns:
      customer_id: {type: int64, unique: true}
      income: {type: float64, min: 0}
      age: {type: int64}
      country: {type: string}
    compare:
      row_count_change: {max_pct: 10}
      schema_change: error
      drift: {columns: [income, age, country], method: %(method)s}
"""
N = 4000


def datasets(path: str = "data/customers.csv", method: str = "psi") -> dict[str, Any]:
    return validate_config(yaml.safe_load(SCHEMA % {"path": path, "method": method}), "mlci.yaml")["datasets"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("validate-compare")
    with git_env(tmp):
        repo = init_repo(tmp / "repo")
        write_csv(repo / "data" / "customers.csv", base_rows())
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "v1")
        yield repo


def base_rows(n: int = N, seed: int = 3) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("customer_id", "income", "age", "country")} for r in clean_rows(n, seed)]


def run(root: Path, rows: list[dict[str, Any]], method: str = "psi", record: bool = False) -> DatasetResult:
    write_csv(root / "data" / "customers.csv", rows)
    v = Validator(Repo.find(root), datasets(method=method), record=record, use_cache=False)
    [result] = v.validate_all(v.select(["customers"]))
    return result


def failing(result: DatasetResult) -> set[tuple[str, str | None]]:
    return {(c.check, c.column) for c in result.checks if c.status != "pass"}


@pytest.mark.parametrize("method", ["psi", "ks", "chi2"])
def test_unchanged_data_passes(root: Path, method: str) -> None:
    result = run(root, base_rows(), method)
    assert result.status == "pass", failing(result)
    assert {c.check for c in result.checks} >= {"row_count_change", "schema_change", "drift"}


def test_rows_appended_within_bounds_pass(root: Path) -> None:
    rows = base_rows() + [{**r, "customer_id": r["customer_id"] + N} for r in base_rows(300, seed=11)]
    result = run(root, rows)
    assert result.status == "pass", [(c.check, c.column, c.message) for c in result.checks if c.status != "pass"]
    assert check_of(result, "row_count_change", None).message.endswith("(+7.5%)")


def test_rows_shuffled_pass(root: Path) -> None:
    rows = base_rows()
    random.Random(5).shuffle(rows)
    for method in ("psi", "ks", "chi2"):
        result = run(root, rows, method)
        assert result.status == "pass", (method, failing(result))


@pytest.mark.parametrize("method", ["psi", "ks", "chi2"])
def test_drift_flags_the_shifted_column_only(root: Path, method: str) -> None:
    rows = [{**r, "income": round(r["income"] * 1.4 + 5000, 2)} for r in base_rows()]
    result = run(root, rows, method)
    assert failing(result) == {("drift", "income")}, [(c.check, c.column, c.message) for c in result.checks]
    income = check_of(result, "drift", "income")
    assert income.status == "fail" and income.params["statistic"] > income.params["threshold"]
    assert check_of(result, "drift", "age").status == "pass"


def test_categorical_drift(root: Path) -> None:
    rows = base_rows()
    for r in rows[: N // 2]:
        r["country"] = "US"
    result = run(root, rows)
    assert failing(result) == {("drift", "country")}


def test_row_count_and_schema_changes_fail(root: Path) -> None:
    result = run(root, base_rows() + [{**r, "customer_id": r["customer_id"] + N} for r in base_rows(1000, 9)])
    assert ("row_count_change", None) in failing(result)
    rows = [{**r, "extra": 1} for r in base_rows()]
    change = check_of(run(root, rows), "schema_change", None)
    assert change.status == "fail" and "added: extra" in change.message
    rows = [{k: v for k, v in r.items() if k != "age"} | {"age": str(r["age"]) + "y"} for r in base_rows()]
    change = check_of(run(root, rows), "schema_change", None)
    assert change.status == "fail" and "retyped: age" in change.message


def test_previous_version_with_neither_profile_nor_data_is_skipped_with_a_warning(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "p")
    data = repo / "data" / "customers.csv"
    write_csv(data, base_rows())
    cache = DataCache.for_repo(repo)
    digest, size = cache.add_file(data)
    pointer = Pointer(path="data/customers.csv", algo="blake3", hash=digest, size=size, format="csv")
    (repo / "data" / "customers.csv.mlci").write_text(dump_pointer(pointer))
    (repo / ".gitignore").write_text("data/customers.csv\n.mlci/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1 as a pointer")
    obj = cache.object_path(digest)
    os.chmod(obj.parent, 0o755)
    obj.unlink()  # the previous version's data is gone, and no profile of it was ever stored
    rows = [{**r, "income": r["income"] * 3} for r in base_rows()]
    write_csv(data, rows)
    new_digest, new_size = cache.add_file(data)
    new = Pointer(path="data/customers.csv", algo="blake3", hash=new_digest, size=new_size, format="csv")
    (repo / "data" / "customers.csv.mlci").write_text(dump_pointer(new))
    v = Validator(Repo.find(repo), datasets(), record=True)
    [result] = v.validate_all(v.select(["customers"]))
    assert result.status == "warn" and not result.failed
    assert any("neither its profile nor its data" in w for w in result.warnings), result.warnings
    assert not [c for c in result.checks if c.check == "drift"]
    assert result.content_hash == f"blake3:{new_digest}"


def test_profile_in_the_ledger_stands_in_for_missing_data(tmp_path: Path) -> None:
    """Comparing reads only the new data: the previous version's profile comes from the ledger."""
    repo = init_repo(tmp_path / "q")
    data = repo / "data" / "customers.csv"
    write_csv(data, base_rows())
    cache = DataCache.for_repo(repo)
    digest, size = cache.add_file(data)
    (repo / "data" / "customers.csv.mlci").write_text(
        dump_pointer(Pointer(path="data/customers.csv", algo="blake3", hash=digest, size=size, format="csv"))
    )
    git(repo, "add", "data/customers.csv.mlci")
    git(repo, "commit", "-qm", "v1")
    v = Validator(Repo.find(repo), datasets(), record=True)
    assert v.validate_all(v.select(["customers"]))[0].status in ("pass", "warn")
    # the profile is in the ledger; drop the local copies and the old data
    for f in (repo / ".git" / "mlci" / "validate" / "profiles").iterdir():
        f.unlink()
    obj = cache.object_path(digest)
    os.chmod(obj.parent, 0o755)
    obj.unlink()
    write_csv(data, [{**r, "income": r["income"] * 3} for r in base_rows()])
    new_digest, new_size = cache.add_file(data)
    (repo / "data" / "customers.csv.mlci").write_text(
        dump_pointer(Pointer(path="data/customers.csv", algo="blake3", hash=new_digest, size=new_size, format="csv"))
    )
    v = Validator(Repo.find(repo), datasets(), record=True)
    [result] = v.validate_all(v.select(["customers"]))
    assert failing(result) == {("drift", "income")}, result.warnings
    with LedgerCache(Repo.find(repo)).connect() as con:
        validations = con.execute("SELECT dataset, status, content_hash FROM validations ORDER BY time").fetchall()
        profiles = con.execute("SELECT content_hash, rows, columns FROM profiles").fetchall()
    assert [(d, s) for d, s, _h in validations] == [("customers", "pass"), ("customers", "fail")]
    assert {h for h, _r, _c in profiles} == {f"blake3:{digest}", f"blake3:{new_digest}"}
    columns = json.loads(profiles[0][2])
    assert set(columns["income"]) >= {"nulls", "min", "max", "mean", "std", "distinct", "histogram"}
    assert len(columns["income"]["histogram"]["edges"]) == 21


def test_a_version_is_profiled_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-validating the same content (no result cache) runs only the checks: the stored profile
    stands, from the local copy, or from the ledger for a large file; one lacking a needed
    histogram is computed again. The checks themselves still run on the data."""
    import mlci_tui.validate.run as run_mod

    repo = init_repo(tmp_path / "p")
    write_csv(repo / "data" / "customers.csv", base_rows())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    profiles = repo / ".git" / "mlci" / "validate" / "profiles"
    mine = profiles / f"git-{git(repo, 'hash-object', 'data/customers.csv').strip()}.json"

    def validate(rows: list[dict[str, Any]] | None = None) -> DatasetResult:
        write_csv(repo / "data" / "customers.csv", rows or base_rows())
        v = Validator(Repo.find(repo), datasets(), record=True, use_cache=False)
        return v.validate_all(v.select(["customers"]))[0]

    assert validate().status == "pass"
    first = json.loads(mine.read_text())
    first["columns"]["age"]["mean"] = -1.0
    mine.write_text(json.dumps(first))
    assert validate().status == "pass"
    assert json.loads(mine.read_text())["columns"]["age"]["mean"] == -1.0  # reused, not recomputed
    # a failing check is still found on the data of a known version
    rows = base_rows()
    rows[7]["income"] = -5.0
    assert failing(validate(rows)) == {("min", "income")}
    assert failing(validate(rows)) == {("min", "income")}
    # a stored profile lacking a needed histogram is recomputed
    del first["columns"]["income"]["histogram"]
    mine.write_text(json.dumps(first))
    assert validate().status == "pass"
    again = json.loads(mine.read_text())
    assert again["columns"]["income"]["histogram"] and again["columns"]["age"]["mean"] != -1.0
    # from the ledger, for a file large enough: the local copy gone, nothing is recomputed
    monkeypatch.setattr(run_mod, "LEDGER_PROFILE_LOOKUP", 0)
    mine.unlink()
    assert validate().status == "pass"
    assert not mine.exists()  # the ledger's profile was used: no local copy was written
    monkeypatch.setattr(run_mod, "LEDGER_PROFILE_LOOKUP", 2**40)
    assert validate().status == "pass"
    assert mine.exists()  # a small file: profiled again rather than a ledger read
