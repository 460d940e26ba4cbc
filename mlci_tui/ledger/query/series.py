"""Series for plots and charts: a metric along the steps of runs, along the commits of history, against a param.

The TUI's plot screen and the reports' charts read them here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.filter import compile_filter
from mlci_tui.ledger.query.runs_view import LedgerInfo
from mlci_tui.ledger.resolve import COMMIT_RUN_ORDER

if TYPE_CHECKING:
    import duckdb


def first_parent_commits(repo: Repo, start: str, limit: int) -> list[str]:
    """`git rev-list --first-parent`: newest first; [] when `start` is not a commit."""
    proc = repo.run("rev-list", "--first-parent", f"--max-count={limit}", start, "--", check=False)
    return proc.stdout.decode().split() if proc.returncode == 0 else []


def commit_runs(con: duckdb.DuckDBPyConnection, commits: Sequence[str]) -> dict[str, tuple[str, dict[str, float]]]:
    """For each commit that has a run: the run that stands for it, and its metrics."""
    rows = con.execute(
        f"""SELECT commit, run_id, metrics FROM runs WHERE commit IN (SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY commit ORDER BY {COMMIT_RUN_ORDER}) = 1""",
        [list(commits)],
    ).fetchall()
    return {c: (rid, dict(m or {})) for c, rid, m in rows}


def step_rows(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[tuple[str, str, str, int, float]]:
    """(run_id, file, name, step, value) of the runs' step series, by file, name and step."""
    return [
        (str(r), str(f), str(n), int(s), float(v))
        for r, f, n, s, v in con.execute(
            "SELECT run_id, file, name, step, value FROM steps WHERE run_id IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY file, name, step",
            [list(run_ids)],
        ).fetchall()
    ]


@dataclass
class Series:
    run_id: str
    label: str
    x: list[float]
    y: list[float]
    ticks: list[str] = field(default_factory=list)


def load_step_series(repo: Repo, run_ids: Sequence[str], metric: str) -> list[Series]:
    with open_cache(repo) as con:
        labels = dict(
            con.execute(
                "SELECT run_id, coalesce(name, split_part(message, chr(10), 1)) FROM runs WHERE list_contains(?, run_id)",
                [list(run_ids)],
            ).fetchall()
        )
        rows = con.execute(
            """SELECT run_id, step, value FROM steps WHERE list_contains(?, run_id) AND name = ?
               AND value IS NOT NULL AND isfinite(value) ORDER BY run_id, step""",
            [list(run_ids), metric],
        ).fetchall()
    out: dict[str, Series] = {}
    for rid, step, value in rows:
        s = out.setdefault(rid, Series(rid, labels.get(rid) or "", [], []))
        s.x.append(float(step))
        s.y.append(float(value))
    return [out[r] for r in run_ids if r in out]


def series_coverage(repo: Repo, run_ids: Sequence[str]) -> dict[str, int]:
    """For each step series name: how many of the runs have it."""
    with open_cache(repo) as con:
        rows = con.execute(
            "SELECT name, count(DISTINCT run_id) FROM steps WHERE list_contains(?, run_id) GROUP BY name",
            [list(run_ids)],
        ).fetchall()
    return {str(n): int(c) for n, c in rows}


def load_commit_series(repo: Repo, metric: str, limit: int = 200) -> Series | None:
    """The metric along the first-parent history of HEAD (oldest first)."""
    shas = first_parent_commits(repo, "HEAD", limit)
    with open_cache(repo) as con:
        if shas:
            runs = commit_runs(con, shas)
            ordered = [(sha, runs[sha][1].get(metric)) for sha in reversed(shas) if sha in runs]
        else:
            ordered = [
                (c, v)
                for c, v in con.execute(
                    """SELECT commit, metrics[?] FROM runs WHERE kind = 'commit' AND metrics[?] IS NOT NULL
                       ORDER BY coalesce(started, time) LIMIT ?""",
                    [metric, metric, limit],
                ).fetchall()
            ]
    points = [(str(c), float(v)) for c, v in ordered if v is not None and math.isfinite(v)]
    if not points:
        return None
    return Series(
        "", metric, [float(i) for i in range(len(points))], [v for _, v in points], [c[:7] for c, _ in points]
    )


def load_scatter(repo: Repo, param: str, metric: str, filter_text: str, info: LedgerInfo) -> Series:
    compiled = compile_filter(filter_text, info.names)
    where = f"AND {compiled.sql}" if compiled.sql else ""
    with open_cache(repo) as con:
        rows = con.execute(
            f"""SELECT TRY_CAST(params[?] AS DOUBLE) AS x, metrics[?] AS y FROM {compiled.source()}
                WHERE x IS NOT NULL AND y IS NOT NULL AND isfinite(y) AND isfinite(x) {where}""",
            [param, metric, *compiled.join_binds, *compiled.binds],
        ).fetchall()
    return Series("", f"{metric} by {param}", [float(x) for x, _ in rows], [float(y) for _, y in rows])
