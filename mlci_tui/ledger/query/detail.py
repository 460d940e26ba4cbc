"""One run in full: fields, params, metrics with their step statistics, series, notes, stages, validations.

`mlci show` and the TUI's run screen both read it (`read_detail`), so they show the same run the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.rows import dict_rows, first_row, json_list
from mlci_tui.ledger.query.run import Run

if TYPE_CHECKING:
    import duckdb


@dataclass
class MetricRow:
    file: str
    name: str
    value: float | None
    steps: int = 0
    low: float | None = None
    low_step: int | None = None
    high: float | None = None
    high_step: int | None = None
    last_step: int | None = None


@dataclass
class SeriesStats:
    """One step series of a run, summed up: `mlci show`'s series table."""

    file: str
    name: str
    count: int
    low: float | None
    high: float | None
    last: float | None
    last_step: int | None


@dataclass
class RunDetail:
    run: Run
    params: list[tuple[str, str, str]]  # file, name, value
    metrics: list[MetricRow]
    series: dict[str, list[tuple[int, float]]]  # series name -> (step, value), by step
    series_stats: list[SeriesStats]  # one per (file, series), by file and name
    notes: list[tuple[str, Any, str]]  # note id, time, text
    stages: list[str]
    validations: list[Validation]

    @property
    def tags(self) -> list[str]:
        return self.run.tags

    @property
    def datasets(self) -> dict[str, Any]:
        return self.run.datasets

    @property
    def deps(self) -> dict[str, Any]:
        return self.run.deps

    @property
    def warnings(self) -> list[str]:
        return self.run.warnings

    def value_at(self, name: str, step: int) -> float | None:
        for s, v in self.series.get(name, []):
            if s == step:
                return v
        return None


def load_detail(repo: Repo, run_id: str) -> RunDetail | None:
    with open_cache(repo) as con:
        return read_detail(con, run_id)


def read_detail(
    con: duckdb.DuckDBPyConnection, run_id: str, *, points: bool = True, validations: bool = True
) -> RunDetail | None:
    """Everything about one run, or None when it is not in the ledger (redacted). Without
    `points` the series hold no values (their statistics stay), without `validations` none are read."""
    found = dict_rows(con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]))
    if not found:
        return None
    run = Run.from_row(found[0])
    params = [
        (f, n, v)
        for f, n, v in con.execute(
            "SELECT file, name, value FROM params WHERE run_id = ? ORDER BY name, file", [run_id]
        ).fetchall()
    ]
    stats = con.execute(
        """SELECT file, name, count(*), min(value), arg_min(step, value), max(value), arg_max(step, value),
                  max(step), arg_max(value, step)
           FROM steps WHERE run_id = ? GROUP BY file, name ORDER BY file, name""",
        [run_id],
    ).fetchall()
    by_name: dict[str, tuple[Any, ...]] = {}
    for _f, n, *r in stats:
        by_name.setdefault(n, tuple(r))
    metrics: list[MetricRow] = []
    for f, n, v in con.execute(
        "SELECT file, name, value FROM metrics WHERE run_id = ? ORDER BY name, file", [run_id]
    ).fetchall():
        row = MetricRow(f, n, v)
        st = by_name.get(n)
        if st:
            row.steps, row.low, row.low_step, row.high, row.high_step, row.last_step, _last = st
        metrics.append(row)
    series: dict[str, list[tuple[int, float]]] = {}
    rows = (
        con.execute("SELECT name, step, value FROM steps WHERE run_id = ? ORDER BY name, step", [run_id])
        if points
        else None
    )
    for n, step, v in rows.fetchall() if rows is not None else []:
        series.setdefault(n, []).append((step, v))
    notes = [
        (i, t, x)
        for i, t, x in con.execute(
            "SELECT id, time, text FROM notes WHERE run_id = ? ORDER BY time, id", [run_id]
        ).fetchall()
    ]
    stages = [
        r[0] for r in con.execute("SELECT stage FROM stages WHERE run_id = ? ORDER BY stage", [run_id]).fetchall()
    ]
    return RunDetail(
        run=run,
        params=params,
        metrics=metrics,
        series=series,
        series_stats=[SeriesStats(f, n, c, lo, hi, last, ls) for f, n, c, lo, _los, hi, _his, ls, last in stats],
        notes=notes,
        stages=stages,
        validations=_validations(con, run.datasets, run.commit) if validations else [],
    )


@dataclass
class Validation:
    """One `validation` event (mlci data validate, the hooks): what a dataset's content passed."""

    id: str
    time: Any
    dataset: str
    path: str
    content_hash: str
    rev: str
    status: str  # pass, warn, fail, error, unavailable
    rows: int | None
    error: str | None
    checks: list[dict[str, Any]]  # check, column, status, severity, failures, rows, params, message
    warnings: list[str]

    @property
    def problems(self) -> list[dict[str, Any]]:
        """The checks that did not pass (nor were skipped)."""
        return [c for c in self.checks if c.get("status") in ("fail", "warn")]


def digest_of(content_hash: str) -> str:
    """`blake3:ab12…` and `ab12…` name the same content."""
    head, sep, rest = content_hash.partition(":")
    return rest if sep and head and all(c.isalnum() or c in "_-" for c in head) else content_hash


VALIDATION_COLUMNS = "id, time, dataset, path, content_hash, rev, status, rows, error, checks, warnings"


def _validations(con: duckdb.DuckDBPyConnection, datasets: dict[str, Any], commit: str | None) -> list[Validation]:
    """Validations of the run's datasets (by content hash, wherever they ran) and those made
    at the run's commit, newest first. Over the `validations` view, or straight over the
    validation events in a cache that predates it."""
    hashes = sorted({digest_of(h) for h in datasets.values() if isinstance(h, str) and h})
    if not hashes and not commit:
        return []
    # runs record a bare digest, validations `algo:digest`: compare the digests
    where = "list_contains(?, regexp_replace(content_hash, '^[A-Za-z0-9_-]+:', '')) OR (? IS NOT NULL AND rev = ?)"
    binds: list[Any] = [hashes, commit, commit]
    has_view = first_row(con, "SELECT count(*) FROM duckdb_views() WHERE view_name = 'validations'")
    if has_view and has_view[0]:
        sql = f"SELECT {VALIDATION_COLUMNS} FROM validations WHERE {where} ORDER BY time DESC, id"
    else:
        sql = f"""SELECT {VALIDATION_COLUMNS} FROM (
                SELECT id, time, body->>'dataset' AS dataset, body->>'path' AS path,
                       body->>'content_hash' AS content_hash, body->>'rev' AS rev, body->>'status' AS status,
                       TRY_CAST(body->>'rows' AS BIGINT) AS rows, body->>'error' AS error,
                       body->'checks' AS checks, body->'warnings' AS warnings
                FROM events WHERE type = 'validation') WHERE {where} ORDER BY time DESC, id"""
    out = []
    for r in con.execute(sql, binds).fetchall():
        row = dict(zip(VALIDATION_COLUMNS.split(", "), r))
        out.append(
            Validation(
                id=str(row["id"]),
                time=row["time"],
                dataset=str(row["dataset"] or ""),
                path=str(row["path"] or ""),
                content_hash=str(row["content_hash"] or ""),
                rev=str(row["rev"] or ""),
                status=str(row["status"] or ""),
                rows=row["rows"],
                error=row["error"],
                checks=[c for c in json_list(row["checks"]) if isinstance(c, dict)],
                warnings=[str(w) for w in json_list(row["warnings"])],
            )
        )
    return out
