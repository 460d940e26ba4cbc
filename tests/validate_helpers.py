"""Shared by the validation tests: a clean customers table, its formats, planted failures."""

from __future__ import annotations

import csv
import datetime as dt
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import IDENTITY, git

FORMATS = ("csv", "parquet", "jsonl")
COLUMNS = ["customer_id", "country", "income", "age", "signup_date", "email", "code"]
N = 1200

SCHEMA = """\
datasets:
  countries:
    path: data/countries.csv
    columns:
      code: {type: string, nullable: false, unique: true}
  customers:
    path: data/customers.%(ext)s
    primary_key: [customer_id]
    row_count: {min: 1000}
    schema: {strict: true}
    columns:
      customer_id: {type: int64, nullable: false, unique: true}
      country: {type: string, allowed_values: ["US", "GB", "NO"], references: countries.code}
      income: {type: float64, min: 0}
      age: {type: int64, min: 18, max: 120}
      signup_date: {type: date, min: "2015-01-01"}
      email: {type: string, nullable: false, regex: '[^@ ]+@[^@ ]+'}
      code: {type: string, length: 5}
    checks:
      - name: no_future_signups
        sql: "SELECT * FROM data WHERE signup_date > DATE '2030-01-01'"
"""
COUNTRIES = "code\nUS\nGB\nNO\nFR\n"


def clean_rows(n: int = N, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "customer_id": i + 1,
                "country": rng.choice(["US", "GB", "NO"]),
                "income": round(abs(rng.gauss(50000, 12000)) + 1, 2),
                "age": rng.randint(18, 90),
                "signup_date": (dt.date(2016, 1, 1) + dt.timedelta(days=rng.randint(0, 2500))).isoformat(),
                "email": f"user{i}@example.com",
                "code": f"C{i % 10000:04d}",
            }
        )
    return rows


# planted failure -> (check, column, row index, how the row changes)
PLANTS: dict[str, tuple[str, str | None, int, dict[str, Any]]] = {
    "type": ("type", "age", 3, {"age": "abc"}),
    "nullable": ("nullable", "email", 4, {"email": None}),
    "unique": ("unique", "customer_id", 5, {"customer_id": 1}),
    "primary_key": ("primary_key", None, 5, {"customer_id": 1}),
    "min": ("min", "income", 6, {"income": -1.5}),
    "max": ("max", "age", 7, {"age": 200}),
    "allowed_values": ("allowed_values", "country", 8, {"country": "FR"}),
    "regex": ("regex", "email", 9, {"email": "not-an-email"}),
    "length": ("length", "code", 10, {"code": "abc"}),
    "references": ("references", "country", 11, {"country": "ZZ"}),
    "date_min": ("min", "signup_date", 12, {"signup_date": "2010-05-05"}),
    "sql": ("sql", None, 13, {"signup_date": "2031-01-01"}),
}


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    columns = columns or list(rows[0]) if rows else (columns or COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])


def write_table(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    """CSV written directly; Parquet and JSONL converted from it by DuckDB (types as sniffed)."""
    import duckdb

    tmp = path.with_name(path.name + ".tmp.csv")
    write_csv(tmp if fmt != "csv" else path, rows)
    if fmt == "csv":
        return
    target = str(path).replace("'", "''")
    source = str(tmp).replace("'", "''")
    option = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT json)"
    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT * FROM read_csv('{source}', header = true)) TO '{target}' {option}")
    finally:
        con.close()
    tmp.unlink()


def planted(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    _check, _col, index, change = PLANTS[name]
    out = [dict(r) for r in rows]
    out[index].update(change)
    return out


@contextmanager
def git_env(tmp: Path) -> Iterator[None]:
    """The isolation conftest gives each test, for a module-scoped fixture."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp / "home"
        home.mkdir(exist_ok=True)
        (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
        mp.setenv("HOME", str(home))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.delenv("MLCI_NO_HOOKS", raising=False)
        for key, value in IDENTITY.items():
            mp.setenv(key, value)
        yield


def init_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    return root


def check_of(result: Any, check: str, column: str | None) -> Any:
    hits = [c for c in result.checks if c.check == check and c.column == column]
    assert hits, f"no {check} check on {column} in {[(c.check, c.column) for c in result.checks]}"
    return hits[0]


def env_without_hooks() -> dict[str, str]:
    env = dict(os.environ)
    env["MLCI_NO_HOOKS"] = "1"
    return env
