"""The fast paths of the validation engine count exactly what the plain scan counts.

Parquet statistics settle null and range checks without a scan, and integer keys' exact
distinct counts use a bitmap over their range: on planted failures with known counts, a
Parquet file with statistics, the same file written without any, and the same data as CSV
must give the same exact failure counts and profile. Real files, a real DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from validate_helpers import git_env, init_repo

from mlci_tui.config import validate as validate_config
from mlci_tui.gitio import Repo
from mlci_tui.validate import engine
from mlci_tui.validate.results import DatasetResult
from mlci_tui.validate.run import Validator
from mlci_tui.validate.spec import build

ROWS = 3000
SCHEMA = """\
datasets:
  t:
    path: data/t.%(ext)s
    primary_key: [id]
    columns:
      id: {type: int64, nullable: false, unique: true}
      score: {type: float64, nullable: false, min: 0, max: 100}
      day: {type: date, min: "2020-01-01"}
      label: {type: string, allowed_values: ["a", "b"]}
      items: {type: int64, nullable: false, min: 0, max: 9}
"""
# planted in `score` (float) and `items` (int) alike: 4 nulls, 3 below the minimum, 2 above
# the maximum; 5 repeated ids, 1 day too early
NULL_SCORES, LOW, HIGH, REPEATS, EARLY = 4, 3, 2, 5, 1


def table(planted: bool) -> pa.Table:
    ids = [i * 7 - 5000 for i in range(ROWS)]  # negative and positive keys, sparse
    scores: list[float | None] = [float(i % 100) for i in range(ROWS)]
    items: list[int | None] = [i % 10 for i in range(ROWS)]
    days = ["2021-03-04"] * ROWS
    if planted:
        for i in range(NULL_SCORES):
            scores[10 + i] = items[20 + i] = None
        for i in range(LOW):
            scores[100 + i], items[120 + i] = -1.5, -1
        for i in range(HIGH):
            scores[200 + i], items[220 + i] = 100.5, 10
        for i in range(REPEATS):
            ids[300 + i] = ids[0]
        days[400] = "2019-12-31"
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "score": pa.array(scores, pa.float64()),
            "day": pa.array(days).cast(pa.date32()),
            "label": pa.array(["a" if i % 3 else "b" for i in range(ROWS)]),
            "items": pa.array(items, pa.int64()),
        }
    )


def write(path: Path, data: pa.Table, kind: str) -> None:
    if kind == "parquet":
        pq.write_table(data, path)  # statistics on: pyarrow's default
    elif kind == "parquet-no-statistics":
        pq.write_table(data, path, write_statistics=False)
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(data, path)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("validate-statistics")
    with git_env(tmp):
        repo = init_repo(tmp / "repo")
        (repo / "data").mkdir()
        yield repo


def run(root: Path, kind: str, planted: bool) -> DatasetResult:
    ext = "csv" if kind == "csv" else "parquet"
    write(root / "data" / f"t.{ext}", table(planted), kind)
    datasets = validate_config(yaml.safe_load(SCHEMA % {"ext": ext}), "mlci.yaml")["datasets"]
    v = Validator(Repo.find(root), datasets, record=False, use_cache=False)
    [result] = v.validate_all(v.select(["t"]))
    return result


def failures(result: DatasetResult) -> dict[tuple[str, str | None], int]:
    return {(c.check, c.column): c.failures for c in result.checks if c.check not in ("row_count", "type")}


KINDS = ("parquet", "parquet-no-statistics", "csv")


@pytest.mark.parametrize("kind", KINDS)
def test_exact_counts_of_planted_failures(root: Path, kind: str) -> None:
    got = failures(run(root, kind, planted=True))
    assert got[("nullable", "score")] == NULL_SCORES
    assert got[("min", "score")] == LOW
    assert got[("max", "score")] == HIGH
    assert got[("unique", "id")] == REPEATS
    assert got[("primary_key", None)] == REPEATS
    assert got[("min", "day")] == EARLY
    assert (got[("nullable", "items")], got[("min", "items")], got[("max", "items")]) == (NULL_SCORES, LOW, HIGH)
    assert got[("nullable", "id")] == 0
    assert got[("allowed_values", "label")] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_clean_data_passes_with_zero_failures(root: Path, kind: str) -> None:
    result = run(root, kind, planted=False)
    assert result.status == "pass", failures(result)
    assert set(failures(result).values()) == {0}


def test_every_input_gives_the_same_profile(root: Path) -> None:
    """The statistics-answered min/max/count and the bitmap distinct equal the scanned ones."""
    profiles: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        ext = "csv" if kind == "csv" else "parquet"
        write(root / "data" / f"t.{ext}", table(planted=True), kind)
        datasets = validate_config(yaml.safe_load(SCHEMA % {"ext": ext}), "mlci.yaml")["datasets"]
        v = Validator(Repo.find(root), datasets, record=False, use_cache=False)
        [result] = v.validate_all(v.select(["t"]))
        profile = v.profile_of(result.content_hash)
        assert profile is not None and profile["rows"] == ROWS
        profiles[kind] = {
            name: {k: col.get(k) for k in ("nulls", "min", "max", "distinct", "histogram")}
            for name, col in profile["columns"].items()
        }
    assert profiles["parquet"] == profiles["parquet-no-statistics"]
    # a CSV counts an allowed-value column's values one by one, Parquet with histogram(): alike
    label = {"kind": "categories", "values": {"a": ROWS - ROWS // 3, "b": ROWS // 3}, "other": 0}
    assert profiles["parquet"]["label"]["histogram"] == profiles["csv"]["label"]["histogram"] == label
    for kind in KINDS:
        assert profiles[kind]["id"]["distinct"] == ROWS - REPEATS, kind  # exact, from the unique check
        assert profiles[kind]["score"]["nulls"] == NULL_SCORES, kind
        assert (profiles[kind]["score"]["min"], profiles[kind]["score"]["max"]) == (-1.5, 100.5), kind


# ------------------------------------------------------------------ the engine's pieces directly
@pytest.fixture()
def con(tmp_path: Path) -> Iterator[Any]:
    c = engine.connect(tmp_path / "spill")
    yield c
    c.close()


def planned(con: Any, path: Path) -> engine.Plan:
    con.execute(f"CREATE OR REPLACE VIEW raw_data AS SELECT * FROM read_parquet({engine.lit(str(path))})")
    raw = validate_config(yaml.safe_load(SCHEMA % {"ext": "parquet"}), "mlci.yaml")["datasets"]["t"]
    return engine.plan(build("t", raw), engine.describe(con, "raw_data"), "parquet")


def test_statistics_settle_proven_checks_and_leave_the_rest(con: Any, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write(path, table(planted=True), "parquet")
    plan = planned(con, path)
    values, settled, answered = engine.statistics_pass(con, "raw_data", plan, profile=True)
    by_name = {(p.result.check, p.result.column): n for n, p in enumerate(plan.checks)}
    assert by_name[("nullable", "items")] not in settled  # nulls: counted by the scan
    assert by_name[("min", "items")] not in settled  # the statistics say a value is below 0
    assert by_name[("max", "items")] not in settled
    assert not {by_name[("min", "score")], by_name[("max", "score")]} & set(settled)
    assert values['min("items")'] == -1 and values['max("score")'] == 100.5 and values["count(*)"] == ROWS
    assert {'max("id")', 'min("day")'} <= answered

    write(path, table(planted=False), "parquet")
    plan = planned(con, path)
    _values, settled, _answered = engine.statistics_pass(con, "raw_data", plan, profile=True)
    assert settled[by_name[("min", "items")]] == 0 and settled[by_name[("max", "items")]] == 0
    assert settled[by_name[("min", "score")]] == 0 and settled[by_name[("max", "score")]] == 0
    assert settled[by_name[("min", "day")]] == 0 and settled[by_name[("nullable", "items")]] == 0
    assert settled[by_name[("nullable", "id")]] == 0  # no nulls: DuckDB's count(id) is count(*)


def test_no_statistics_means_nothing_is_settled(con: Any, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write(path, table(planted=True), "parquet-no-statistics")
    assert engine.statistics_pass(con, "raw_data", planned(con, path), profile=True) == ({}, {}, set())


def test_exact_distincts_bitmap_fallback_and_empty(con: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    con.execute("CREATE TABLE k AS SELECT (i % 997) * 1000003 - 7 AS v, NULL::BIGINT AS e FROM range(20000) t(i)")
    bounds = {"min(v)": -7, "max(v)": 996 * 1000003 - 7, "min(e)": None, "max(e)": None}
    got = engine.exact_distincts(con, "k", {"a": ("v", bounds), "b": ("e", bounds)})
    assert got == {"a": 997, "b": 0}
    monkeypatch.setattr(engine, "BITMAP_BITS", 64)  # the range no longer fits: count(DISTINCT)
    assert engine.exact_distincts(con, "k", {"a": ("v", bounds)}) == {"a": 997}
    wrong = {"min(v)": 0, "max(v)": 10}  # bounds that lie: DuckDB refuses the bitmap, counted anyway
    assert engine.exact_distincts(con, "k", {"a": ("v", wrong)}) == {"a": 997}


def test_a_csv_counts_values_outside_the_allowed_list_as_other(root: Path) -> None:
    data = table(planted=False)
    labels = data.column("label").to_pylist()
    labels[5:8] = ["zz", "zz", None]
    write(root / "data" / "t.csv", data.set_column(3, "label", pa.array(labels)), "csv")
    datasets = validate_config(yaml.safe_load(SCHEMA % {"ext": "csv"}), "mlci.yaml")["datasets"]
    v = Validator(Repo.find(root), datasets, record=False, use_cache=False)
    [result] = v.validate_all(v.select(["t"]))
    assert failures(result)[("allowed_values", "label")] == 2
    profile = v.profile_of(result.content_hash)
    assert profile is not None
    histogram = profile["columns"]["label"]["histogram"]
    assert histogram["other"] == 2 and sum(histogram["values"].values()) == ROWS - 3


@pytest.mark.parametrize(("bits", "passes"), [(None, 1), (64, 2)], ids=["window-fits", "outside-the-window"])
def test_a_csv_key_is_counted_exactly_in_the_one_pass_when_it_fits_the_window(
    root: Path, monkeypatch: pytest.MonkeyPatch, bits: int | None, passes: int
) -> None:
    """A CSV is parsed once for the checks and the profile: the key's bitmap is in the pass
    (it used to be a second parse); a key with values outside the window guessed from the
    first row (here: a window of 32 values) gets the second pass over its range, as exact."""
    if bits is not None:
        monkeypatch.setattr(engine, "BITMAP_BITS", bits)
        monkeypatch.setattr(engine, "THREADS", 2)
    queries: list[list[str]] = []
    aggregate = engine._aggregate

    def counted(con: Any, rel: str, parts: list[list[tuple[str, str]]]) -> dict[str, Any]:
        queries.extend([expr for _k, expr in part] for part in parts if part)  # each a parse of the file
        return aggregate(con, rel, parts)

    monkeypatch.setattr(engine, "_aggregate", counted)
    result = run(root, "csv", planted=True)
    got = failures(result)
    assert got[("unique", "id")] == REPEATS and got[("primary_key", None)] == REPEATS
    assert len(queries) == passes, queries
    assert any("bitstring_agg(CASE WHEN" in expr for expr in queries[0])
    profile = Validator(Repo.find(root), {}, record=False, use_cache=False).profile_of(result.content_hash)
    assert profile is not None and profile["columns"]["id"]["distinct"] == ROWS - REPEATS


def test_key_windows_around_the_first_value_within_the_type(con: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BITMAP_BITS", 1024)
    monkeypatch.setattr(engine, "THREADS", 2)  # a window of 512 values, from 128 below the first
    con.execute("CREATE TABLE w AS SELECT * FROM (VALUES (NULL, 5::UTINYINT, 9::BIGINT), (1, 2, 3)) t(a, b, c)")
    plan_ = engine.Plan(
        columns={
            n: engine.Column(n, t, None, engine.q(n)) for n, t in (("a", "INTEGER"), ("b", "UTINYINT"), ("c", "BIGINT"))
        },
        checks=[],
        profile_columns=[],
    )
    got = engine.key_windows(con, "w", {f"d({v})": engine.q(v) for v in "abc"}, plan_)
    assert sorted(got) == ["d(b)", "d(c)"]  # no first value for a: counted after the pass
    assert got["d(b)"][0] == 'bit_count(bitstring_agg(CASE WHEN "b" BETWEEN 0 AND 255 THEN "b" END, 0, 255))'
    assert got["d(c)"][1] == 'count_if(NOT ("c" BETWEEN -119 AND 392))'
