"""`mlci bisect METRIC` from the ledger alone: the change points of the metric along first-parent
history, each with what changed between its two commits (params, datasets, files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.changepoints import (
    DEFAULT_CONFIDENCE,
    ChangePoint,
    change_points,
    metric_points,
    range_commits,
    run_fields,
)
from mlci_tui.ledger.query.compare import diff_maps


@dataclass
class Found:
    """The change points (largest step first) and how many commits of the range had a value."""

    points: list[ChangePoint]
    commits: int
    with_values: int
    rows: list[dict[str, Any]]


def regression(cp: ChangePoint, direction: str | None) -> bool | None:
    """A step for the worse by the metric's direction (None: no direction known)."""
    if direction is None:
        return None
    return cp.step < 0 if direction == "max" else cp.step > 0


def find_changes(
    repo: Repo,
    metric: str,
    *,
    rev: str = "HEAD",
    range_: str | None = None,
    direction: str | None = None,
    min_confidence: float = DEFAULT_CONFIDENCE,
) -> Found:
    commits = range_commits(repo, rev, range_)
    with open_cache(repo) as con:
        points = metric_points(con, commits, metric)
        found = change_points(points, min_confidence)
        fields = run_fields(con, [r for cp in found for r in (cp.before.run_id, cp.after.run_id)])
    rows = [_row(repo, n, cp, direction, fields) for n, cp in enumerate(found, 1)]
    return Found(found, len(commits), len(points), rows)


def _row(
    repo: Repo, rank: int, cp: ChangePoint, direction: str | None, fields: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    before, after = fields.get(cp.before.run_id, {}), fields.get(cp.after.run_id, {})
    params = diff_maps(before.get("params", {}), after.get("params", {}), changed_only=True)
    datasets = diff_maps(before.get("datasets", {}), after.get("datasets", {}), changed_only=True)
    files = diff_stat(repo, cp.before.commit, cp.after.commit)
    return {
        "rank": rank,
        "before": cp.before.commit,
        "after": cp.after.commit,
        "before_value": cp.mean_before,
        "after_value": cp.mean_after,
        "step": cp.step,
        "step_pct": cp.relative * 100 if cp.relative is not None else None,
        "confidence": cp.confidence,
        "regression": regression(cp, direction),
        "untested": cp.gap,
        "params": {c.name: [c.base, c.head] for c in params},
        "datasets": {c.name: [c.base, c.head] for c in datasets},
        "files": files,
    }


def diff_stat(repo: Repo, before: str, after: str) -> list[str]:
    """`git diff --stat` between two commits, one line per file and the summary last."""
    proc = repo.run("diff", "--stat=200", "--no-color", before, after, "--", check=False)
    return [line.strip() for line in proc.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
