"""The filter language: compiled to SQL with bound parameters, run against a real ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import make_lab, rid

from mlci_tui import config as config_mod
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query import runs_view
from mlci_tui.ledger.query.filter import FilterError, Names, compile_filter
from mlci_tui.ledger.query.runs_view import ViewSpec, load_pages, load_rows, load_view, sort_view

NAMES = Names(metrics={"acc", "loss", "status"}, params={"lr", "model", "train.seed"}, steps={"loss"})
AMBIGUOUS = Names(metrics={"acc"}, params={"acc"}, steps=set())
NO_CONFIG = config_mod.load_text(Path("."), "")  # no directions, no gate.baseline


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import git

    root = tmp_path_factory.mktemp("query") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    return make_lab(root)


def matching(root: Path, text: str) -> list[str]:
    """Short ids of the runs the filter keeps, oldest first."""
    repo = Repo.find(root)
    result = load_view(repo, ViewSpec(filter_text=text, sort_key="time", descending=False), NO_CONFIG)
    return [r[0] for r in result.ids.to_pylist()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "abcdef"),
        ("acc > 0.9", "cd"),
        ("acc > 0.7 and lr in (0.1, 0.01)", "abc"),
        ('model ~ "cnn.*"', "cdef"),
        ('model ~ "^cnn-s" and not (status = "failed")', "ce"),
        ("acc > 0.9 or loss > 1", "cde"),
        ("min(loss) < 0.25", "cd"),
        ("max(loss) > 1.2", "e"),
        ("last(loss) < 0.3", "cd"),
        ("loss@step=2 < 0.4", "cd"),
        ("loss@2 >= 0.6", "abe"),
        ("count(loss) = 5", "abcde"),
        ('kind = "experiment"', "def"),
        ('id = "cccc"', "c"),
        ('branch != "main"', "def"),
        ('status = "failed"', "f"),
        ("lr = 1e-2", "bc"),
        ("lr = 0.01 and epochs = 10", "c"),
        ("acc is null", "f"),
        ("loss is nan", "f"),
        ("loss is not nan and loss < 0.3", "cd"),
        ('model not in ("linear", "cnn-wide")', "cef"),
        ('time >= "2025-03-05"', "ef"),
        ("0.9 < acc", "cd"),
        ("sql: metrics['acc'] > 0.9", "cd"),
        (": params['model'] = 'linear'", "ab"),
        ('subject ~ "CNN"', "c"),
    ],
)
def test_filter_selects(lab: Path, text: str, expected: str) -> None:
    assert "".join(r[0] for r in matching(lab, text)) == expected


def test_values_are_bound_never_pasted() -> None:
    compiled = compile_filter("model = \"x'); DROP TABLE runs; --\" and lr in (0.1, 'a\\'b') and acc > 0.5", NAMES)
    assert "DROP" not in compiled.sql and "0.5" not in compiled.sql and "'a" not in compiled.sql
    assert "x'); DROP TABLE runs; --" in compiled.binds and 0.5 in compiled.binds
    assert compiled.sql.count("?") == len(compiled.binds)


def test_names_are_bound_too() -> None:
    weird = Names(metrics={"a'b\"c"}, params=set(), steps=set())
    compiled = compile_filter("`a'b\"c` > 1", weird)
    assert "a'b" not in compiled.sql
    assert compiled.binds == ["a'b\"c", "a'b\"c", 1.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acc >", "expected a name, a number or a quoted string at the end"),
        ("acc > 0.9 and", "at the end"),
        ("acx > 1", "unknown name 'acx'"),
        ("acc = 'high'", "is a number"),
        ("acc > 1 lr", "expected `and`, `or` or the end"),
        ('model ~ "("', "bad regular expression"),
        ("min(accuracy) < 1", "no step series"),
        ("acc", "expected a comparison"),
        ("loss@step=x", "expected a step number"),
        ("acc > 1 )", "expected `and`, `or` or the end"),
        ("lr in (0.1", "expected `,` or `)`"),
        ("acc ! 1", "unexpected character"),
        ("sql:", "raw SQL"),
        ("sql: 1=1; DROP TABLE x", "no `;`"),
    ],
)
def test_bad_filters_say_why(text: str, message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text, NAMES)
    assert message in str(info.value)


def test_ambiguous_names_need_a_kind() -> None:
    with pytest.raises(FilterError, match="both a metric and a param"):
        compile_filter("acc > 1", AMBIGUOUS)
    assert compile_filter("metric(acc) > 1", AMBIGUOUS).binds == ["acc", "acc", 1.0]
    assert compile_filter("param(acc) = 'x'", AMBIGUOUS).binds == ["acc", "x"]
    # a run field wins over a metric of the same name; metric() reaches the metric
    assert compile_filter("status = 'done'", NAMES).binds == ["done"]
    assert compile_filter("metric(status) > 1", NAMES).binds == ["status", "status", 1.0]
    # the last part of a dotted name is enough when it is unique
    assert compile_filter("seed = 7", NAMES).binds == ["train.seed", 7.0]


def test_a_filter_that_fails_in_duckdb_is_a_filter_error(lab: Path) -> None:
    with pytest.raises(FilterError, match="SQL: "):
        matching(lab, "sql: no_such_column > 1")


def test_directions_come_from_the_config(lab: Path) -> None:
    repo = Repo.find(lab)
    cfg = config_mod.load(lab)
    result = load_view(repo, ViewSpec(baseline=rid("a")), cfg)
    by_key = {c.key: c for c in result.columns}
    assert by_key["m:acc"].direction == "max" and by_key["d:loss"].direction == "min"
    assert [c.name for c in result.columns if c.kind == "param"] == ["epochs", "lr", "model"]
    assert result.baseline is not None and result.baseline.metrics["acc"] == 0.71


@pytest.fixture(scope="module")
def lab_plus(lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab and a run with no metrics and a text `lr`."""
    from tui_helpers import append_runs, copy_repo

    root = copy_repo(lab, tmp_path_factory.mktemp("plus") / "repo")
    append_runs(root, [dict(name="no-metrics", params={"lr": "high"}, time="2025-03-08T09:00:00.000000Z")])
    return root


def test_sorting_in_memory_orders_like_sql(lab_plus: Path) -> None:
    """A complete view (a small ledger) is sorted in memory with pyarrow (key `s` or a header
    click); a view of a large ledger, and a live refresh, sort with ORDER BY. Same order."""
    repo = Repo.find(lab_plus)
    base = load_view(repo, ViewSpec(baseline=rid("b")), NO_CONFIG)
    assert base.table is not None
    for column in base.columns:
        for descending in (False, True):
            spec = ViewSpec(baseline=rid("b"), sort_key=column.key, descending=descending)
            by_sql = load_view(repo, spec, NO_CONFIG).ids.to_pylist()
            in_memory = sort_view(base, column.key, descending)
            assert in_memory is not None
            assert in_memory.ids.to_pylist() == by_sql, (column.key, descending)
    assert sort_view(base, "m:no-such-metric", True) is None


def test_sorting_orders_numbers_then_nan_then_missing_and_pages_follow_the_order(
    lab_plus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a large ledger a view is the ordered run ids and pages of values read by id; the
    pages (and the rows export reads) follow the ORDER BY row by row."""
    monkeypatch.setattr(runs_view, "FULL_VIEW_RUNS", 0)
    repo = Repo.find(lab_plus)
    for column in load_view(repo, ViewSpec(baseline=rid("b")), NO_CONFIG).columns:
        for descending in (False, True):
            spec = ViewSpec(baseline=rid("b"), sort_key=column.key, descending=descending)
            result = load_view(repo, spec, NO_CONFIG)
            assert result.table is None
            ids = result.ids.to_pylist()
            assert [r[0] for r in result.pages[0]] == ids == [r[0] for r in load_rows(repo, result)]
            if column.kind != "metric":
                continue
            values = [r[column.source] for r in result.pages[0]]
            numbers = [v for v in values if v is not None and v == v]
            assert values[: len(numbers)] == sorted(numbers, reverse=descending), (column.key, values)
            rest = values[len(numbers) :]
            assert rest == sorted(rest, key=lambda v: v is None), (column.key, values)  # NaN, then none
    by_lr = load_view(repo, ViewSpec(sort_key="p:lr", descending=False), NO_CONFIG)
    lr = next(c for c in by_lr.columns if c.key == "p:lr")
    lrs = [r[lr.source] for r in by_lr.pages[0]]
    numbers = [float(v) for v in lrs[:-1]]
    assert lrs[-1] == "high" and numbers == sorted(numbers)  # numbers by value, then text


def test_pages_around_the_kept_run_are_read_with_the_view(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_view, "PAGE_ROWS", 2)
    monkeypatch.setattr(runs_view, "FULL_VIEW_RUNS", 0)
    repo = Repo.find(lab)
    ids = load_view(repo, ViewSpec(), NO_CONFIG).ids.to_pylist()
    result = load_view(repo, ViewSpec(), NO_CONFIG, keep=ids[5])
    assert sorted(result.pages) == [0, 1, 2]  # page 0 and pages 1-3 around row 5 (there is no page 3)
    assert [r[0] for n in sorted(result.pages) for r in result.pages[n]] == ids
    assert load_pages(repo, result, [2, 7]) == {2: result.pages[2]}
