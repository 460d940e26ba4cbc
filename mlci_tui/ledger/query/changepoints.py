"""Where a metric changed along first-parent history: the series from the ledger, and
change-point detection over it (binary segmentation with a noise estimate from the series).

The method (docs/bisect.md): the noise is the robust standard deviation of successive
differences (median absolute deviation / 0.6745 / sqrt 2), which steps hardly move. Binary
segmentation splits a segment where the two sides' means differ most in standard errors
(z = |mean after - mean before| / (sigma * sqrt(1/n_before + 1/n_after))), and keeps the
split while its Bonferroni-corrected two-sided p-value over the segment's possible split
positions is below `1 - min_confidence`. Each kept change point's confidence is then
recomputed against its neighbouring segments. Pure Python over prefix sums: O(n log n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.series import commit_runs, first_parent_commits

if TYPE_CHECKING:
    import duckdb

DEFAULT_CONFIDENCE = 0.99
MAD_EFFICIENCY = 0.37
MAX_COMMITS = 1_000_000


@dataclass(frozen=True)
class Point:
    """One commit of the history that has a value: its position among all the range's commits."""

    pos: int  # index in the range's first-parent list, oldest first
    commit: str
    run_id: str
    value: float


@dataclass(frozen=True)
class ChangePoint:
    before: Point  # the last point of the segment before the change
    after: Point  # the first point after it
    mean_before: float
    mean_after: float
    z: float
    confidence: float

    @property
    def step(self) -> float:
        return self.mean_after - self.mean_before

    @property
    def relative(self) -> float | None:
        return self.step / abs(self.mean_before) if self.mean_before else None

    @property
    def gap(self) -> int:
        """Commits between `before` and `after` that have no value (what training can narrow)."""
        return self.after.pos - self.before.pos - 1


def range_commits(repo: Repo, rev: str = "HEAD", range_: str | None = None) -> list[str]:
    """The first-parent commits of `rev` (or of the range `A..B`), oldest first."""
    spec = range_ or rev
    proc = repo.run("rev-list", "--first-parent", f"--max-count={MAX_COMMITS}", spec, "--", check=False)
    if proc.returncode != 0:
        raise InputError(f"{'--range' if range_ else '--rev'} {spec}: not a commit or range of this repository")
    return proc.stdout.decode().split()[::-1]


def metric_points(con: duckdb.DuckDBPyConnection, commits: Sequence[str], metric: str) -> list[Point]:
    """The metric's value at each commit that has a run standing for it (oldest first)."""
    runs = commit_runs(con, commits)
    out: list[Point] = []
    for pos, sha in enumerate(commits):
        found = runs.get(sha)
        value = found[1].get(metric) if found else None
        if found is not None and value is not None and math.isfinite(value):
            out.append(Point(pos, sha, found[0], float(value)))
    return out


def commit_changes(repo: Repo, metric: str, limit: int = 200) -> tuple[list[Point], list[ChangePoint]]:
    """The metric along HEAD's first-parent history (the TUI's commit plot) and its change points."""
    commits = first_parent_commits(repo, "HEAD", limit)[::-1]
    with open_cache(repo) as con:
        points = metric_points(con, commits, metric)
    return points, change_points(points)


def commit_values(con: duckdb.DuckDBPyConnection, commits: Sequence[str], metric: str) -> dict[str, list[float]]:
    """Each commit's values of the metric: its done `bisect` runs (the repeats a bisect trained)
    when it has any, else the one run that stands for it."""
    rows = con.execute(
        "SELECT commit, metrics[?] FROM runs WHERE kind = 'bisect' AND status = 'done' "
        "AND commit IN (SELECT unnest(?::VARCHAR[])) ORDER BY commit, run_id",
        [metric, list(commits)],
    ).fetchall()
    out: dict[str, list[float]] = {}
    for sha, value in rows:
        if value is not None and math.isfinite(value):
            out.setdefault(str(sha), []).append(float(value))
    rest = [c for c in commits if c not in out]
    for point in metric_points(con, rest, metric) if rest else []:
        out[point.commit] = [point.value]
    return out


def run_fields(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """params and datasets of some runs (what changed between two commits)."""
    rows = con.execute(
        "SELECT run_id, params, datasets FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]
    ).fetchall()
    return {str(r): {"params": dict(p or {}), "datasets": _json_map(d)} for r, p, d in rows}


def _json_map(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        import json

        value = json.loads(value or "{}")
    return dict(value or {})


# ------------------------------------------------------------------ detection
def noise_sigma(values: Sequence[float]) -> float:
    """The noise's standard deviation, from successive differences (robust to a few steps)."""
    diffs = sorted(abs(b - a) for a, b in zip(values, values[1:]))
    if not diffs:
        return 0.0
    mid = len(diffs) // 2
    mad = diffs[mid] if len(diffs) % 2 else (diffs[mid - 1] + diffs[mid]) / 2
    sigma = mad / 0.6745 / math.sqrt(2)
    if sigma == 0.0:  # more than half the differences are 0 (coarse values): the plain estimate
        sigma = math.sqrt(sum(d * d for d in diffs) / len(diffs) / 2)
    return sigma


def _p_two_sided(t: float, df: float) -> float:
    """Student's t two-sided tail, through a normal approximation (z = t (1 - 1/4df) / sqrt(1 + t^2/2df))."""
    if not math.isfinite(t):
        return 0.0
    z = t * (1 - 1 / (4 * df)) / math.sqrt(1 + t * t / (2 * df))
    return math.erfc(z / math.sqrt(2))


def _df(n: int) -> float:
    """Degrees of freedom of the noise estimate: the median of differences is ~37% efficient."""
    return max(1.0, MAD_EFFICIENCY * (n - 1))


def _z(prefix: list[float], a: int, k: int, b: int, sigma: float) -> float:
    """How many standard errors the means of [a, k) and [k, b) differ."""
    n1, n2 = k - a, b - k
    diff = (prefix[b] - prefix[k]) / n2 - (prefix[k] - prefix[a]) / n1
    if sigma == 0.0:
        return math.inf if diff else 0.0
    return abs(diff) / (sigma * math.sqrt(1 / n1 + 1 / n2))


def _best_split(prefix: list[float], a: int, b: int, sigma: float) -> tuple[int, float]:
    best_k, best_score = -1, -1.0
    total = prefix[b] - prefix[a]
    n = b - a
    for k in range(a + 1, b):
        n1 = k - a
        left = prefix[k] - prefix[a]
        # (mean difference)^2 * n1 * n2 / n, the squared z up to sigma: no sqrt in the loop
        d = (total - left) / (n - n1) - left / n1
        score = d * d * n1 * (n - n1) / n
        if score > best_score:
            best_k, best_score = k, score
    return best_k, best_score


def detect(values: Sequence[float], min_confidence: float = DEFAULT_CONFIDENCE) -> list[tuple[int, float, float]]:
    """(index of the first value after the change, z, confidence) for each change point, in order."""
    n = len(values)
    if n < 3:
        return []
    sigma = noise_sigma(values)
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    alpha = 1.0 - min_confidence
    df = _df(n)
    cuts: list[int] = []
    todo = [(0, n)]
    while todo:
        a, b = todo.pop()
        if b - a < 2:
            continue
        k, _score = _best_split(prefix, a, b, sigma)
        if k < 0:
            continue
        if _p_two_sided(_z(prefix, a, k, b, sigma), df) * (b - a - 1) >= alpha:
            continue
        cuts.append(k)
        todo += [(a, k), (k, b)]
    # confidence of each cut against its neighbouring segments; drop the weak, until none is
    while True:
        cuts.sort()
        bounds = [0, *cuts, n]
        scored = []
        for i, k in enumerate(cuts):
            a, b = bounds[i], bounds[i + 2]
            z = _z(prefix, a, k, b, sigma)
            scored.append((k, z, 1.0 - min(1.0, _p_two_sided(z, df) * (b - a - 1))))
        weak = [s for s in scored if s[2] < min_confidence]
        if not weak:
            return scored
        cuts.remove(min(weak, key=lambda s: s[2])[0])


def change_points(points: Sequence[Point], min_confidence: float = DEFAULT_CONFIDENCE) -> list[ChangePoint]:
    """The change points of a series, largest step first."""
    values = [p.value for p in points]
    found = detect(values, min_confidence)
    bounds = [0, *(k for k, _z, _c in found), len(values)]
    out = []
    for i, (k, z, confidence) in enumerate(found):
        before, after = values[bounds[i] : k], values[k : bounds[i + 2]]
        out.append(
            ChangePoint(points[k - 1], points[k], sum(before) / len(before), sum(after) / len(after), z, confidence)
        )
    return sorted(out, key=lambda c: (-abs(c.step), c.after.pos))
