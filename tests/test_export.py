"""`mlci export FILE`: each format read back equals what the ledger holds."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import git, run_mlci
from ledger_helpers import assert_clean_exit, make_run

from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore


@pytest.fixture
def ledger(repo: Path) -> dict[str, Any]:
    git(repo, "commit", "-q", "--allow-empty", "-m", "root")
    a = make_run(
        name="a",
        time="2026-01-01T00:00:00.000000Z",
        params={"lr": 0.01, "model.depth": 5},
        metrics={"acc": 0.9, "loss": math.nan, "a/b": 1.5, "up": math.inf, "down": -math.inf},
        steps=[["metrics.json", "loss", i, 1.0 / (i + 1)] for i in range(50)]
        + [["metrics.json", "gnorm", 0, math.inf]],
    )
    b = make_run(name="b", time="2026-01-02T00:00:00.000000Z", metrics={"acc": 0.8})
    LedgerStore(Repo.find(repo)).append([a, b])
    return {"repo": repo, "a": a, "b": b}


def _export(repo: Path, *args: str) -> None:
    assert_clean_exit(run_mlci(repo, "export", *args))


def _check_nested(rows: list[dict[str, Any]], ledger: dict[str, Any], non_finite: Any = float) -> None:
    """`non_finite` reads back how the format spells NaN and infinities (JSON: the strings)."""
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"a", "b"}
    a = by_name["a"]
    assert a["run_id"] == ledger["a"]["id"]
    metrics = dict(a["metrics"].items()) if isinstance(a["metrics"], dict) else dict(a["metrics"])
    assert metrics["acc"] == 0.9 and metrics["a/b"] == 1.5
    assert math.isnan(non_finite(metrics["loss"]))
    assert non_finite(metrics["up"]) == math.inf and non_finite(metrics["down"]) == -math.inf
    params = dict(a["params"].items()) if isinstance(a["params"], dict) else dict(a["params"])
    assert params == {"lr": "0.01", "model.depth": "5"}
    assert [(s["step"], s["value"]) for s in a["steps"] if s["name"] == "loss"] == [
        (i, 1.0 / (i + 1)) for i in range(50)
    ]
    assert [non_finite(s["value"]) for s in a["steps"] if s["name"] == "gnorm"] == [math.inf]
    assert by_name["b"]["steps"] == []


def test_parquet_round_trip(ledger: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "runs.parquet"
    _export(ledger["repo"], str(out))
    rows = pq.read_table(out).to_pylist()
    _check_nested(rows, ledger)


def _strict(text: str) -> Any:
    """What a strict JSON parser reads: NaN/Infinity tokens are refused."""

    def refuse(token: str) -> Any:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _from_json(value: Any) -> float:
    """mlci's JSON spelling of floats: numbers, or the strings NaN, Infinity, -Infinity."""
    assert isinstance(value, float) or value in ("NaN", "Infinity", "-Infinity"), value
    return float(value)


def test_json_and_jsonl_are_strict_json(ledger: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "runs.json"
    _export(ledger["repo"], str(out))
    _check_nested(_strict(out.read_text()), ledger, _from_json)
    lines = tmp_path / "runs.jsonl"
    _export(ledger["repo"], str(lines))
    rows = [_strict(line) for line in lines.read_text().splitlines()]
    _check_nested(rows, ledger, _from_json)
    # the flat views too: metrics values and step values
    flat = tmp_path / "metrics.json"
    _export(ledger["repo"], str(flat), "--table", "metrics")
    values = {r["name"]: r["value"] for r in _strict(flat.read_text()) if r["run_id"] == ledger["a"]["id"]}
    assert values["loss"] == "NaN" and values["up"] == "Infinity" and values["down"] == "-Infinity"
    assert values["acc"] == 0.9
    steps = tmp_path / "steps.jsonl"
    _export(ledger["repo"], str(steps), "--table", "steps")
    assert [_from_json(r["value"]) for r in map(_strict, steps.read_text().splitlines()) if r["name"] == "gnorm"] == [
        math.inf
    ]
    # DuckDB reads the export back
    back = duckdb.sql(f"SELECT count(*) FROM read_json('{lines}', format = 'newline_delimited')").fetchall()
    assert back == [(2,)]


def test_csv_writes_four_flat_tables(ledger: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    _export(ledger["repo"], str(out))
    tables = {
        t: list(csv.DictReader((tmp_path / f"all.{t}.csv").open())) for t in ("runs", "params", "metrics", "steps")
    }
    assert {r["name"] for r in tables["runs"]} == {"a", "b"}
    a = ledger["a"]["id"]
    metrics = {(r["run_id"], r["name"]): r["value"] for r in tables["metrics"]}
    assert float(metrics[(a, "acc")]) == 0.9 and math.isnan(float(metrics[(a, "loss")]))
    assert float(metrics[(ledger["b"]["id"], "acc")]) == 0.8
    assert {(r["name"], r["value"]) for r in tables["params"]} == {("lr", "0.01"), ("model.depth", "5")}
    steps = [(int(r["step"]), float(r["value"])) for r in tables["steps"] if r["name"] == "loss"]
    assert steps == [(i, 1.0 / (i + 1)) for i in range(50)]


def test_table_where_force_and_errors(ledger: dict[str, Any], tmp_path: Path) -> None:
    repo = ledger["repo"]
    out = tmp_path / "m.parquet"
    _export(repo, str(out), "--table", "metrics", "--where", "name = 'b'")
    assert pq.read_table(out).to_pylist() == [
        {"run_id": ledger["b"]["id"], "file": "metrics.json", "name": "acc", "value": 0.8}
    ]
    exists = run_mlci(repo, "export", str(out), "--table", "metrics")
    assert_clean_exit(exists, 2)
    assert "--force" in exists.stderr
    _export(repo, str(out), "--table", "steps", "--force")
    assert pq.read_table(out).num_rows == 51
    unknown = run_mlci(repo, "export", str(tmp_path / "x.xlsx"))
    assert_clean_exit(unknown, 2)
    bad = run_mlci(repo, "export", str(tmp_path / "y.csv"), "--where", "no_such_column = 1")
    assert_clean_exit(bad, 2)
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind
