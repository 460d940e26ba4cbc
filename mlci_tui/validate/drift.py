"""Comparison of two profiles: row count change, schema change, drift per column.

Drift reads only the two stored profiles, never the old data: numeric columns carry a
quantile sketch (21 edges at levels 0, 0.05, ..., 1), categorical ones their value counts.
- PSI (default): bins are the previous version's quantile edges; each version's share
  per bin comes from its own sketch (a piecewise-linear CDF). Flag above 0.2 by default.
- KS: the largest gap between the two CDFs. Flag above 0.1 by default.
- chi2: Cramér's V of the 2 x k table of category (or bin) counts. Flag above 0.1.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from mlci_tui.validate.results import CheckResult

DEFAULT_THRESHOLD = {"psi": 0.2, "ks": 0.1, "chi2": 0.1}
EPS = 1e-4


def cdf(levels: list[float], edges: list[float], x: float) -> float:
    """P(X <= x) from a quantile sketch (ties: the highest level at that value)."""
    if not edges or x < edges[0]:
        return 0.0
    if x >= edges[-1]:
        return 1.0
    i = bisect_right(edges, x) - 1
    lo, hi = edges[i], edges[i + 1]
    if hi <= lo:
        return levels[i + 1]
    return levels[i] + (x - lo) / (hi - lo) * (levels[i + 1] - levels[i])


def _shares(levels: list[float], edges: list[float], cuts: list[float]) -> list[float]:
    points = [0.0] + [cdf(levels, edges, c) for c in cuts] + [1.0]
    return [max(b - a, 0.0) for a, b in zip(points, points[1:])]


def psi(expected: list[float], actual: list[float]) -> float:
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, EPS), max(a, EPS)
        total += (a - e) * math.log(a / e)
    return total


def cramers_v(old: list[float], new: list[float], n_old: float, n_new: float) -> float:
    """Cramér's V of the 2 x k table whose rows are the two versions' counts."""
    table = [[o * n_old for o in old], [x * n_new for x in new]]
    total = n_old + n_new
    if total <= 0:
        return 0.0
    cols = [table[0][j] + table[1][j] for j in range(len(old))]
    rows = [n_old, n_new]
    chi2 = 0.0
    for i in range(2):
        for j, c in enumerate(cols):
            expected = rows[i] * c / total
            if expected > 0:
                chi2 += (table[i][j] - expected) ** 2 / expected
    return math.sqrt(chi2 / total) if total else 0.0


def column_drift(old: dict[str, Any], new: dict[str, Any], method: str) -> tuple[str, float] | None:
    """(method used, statistic), or None when the profiles hold nothing comparable."""
    ho, hn = old.get("histogram"), new.get("histogram")
    if not ho or not hn or ho.get("kind") != hn.get("kind"):
        return None
    n_old = max(0, int(old.get("rows", 0)))
    n_new = max(0, int(new.get("rows", 0)))
    if ho["kind"] == "quantiles":
        lv_o, ed_o = ho["levels"], [float(x) for x in ho["edges"]]
        lv_n, ed_n = hn["levels"], [float(x) for x in hn["edges"]]
        if method == "ks":
            points = sorted(set(ed_o + ed_n))
            return "ks", max((abs(cdf(lv_o, ed_o, x) - cdf(lv_n, ed_n, x)) for x in points), default=0.0)
        cuts = sorted(set(ed_o[1:-1]))
        expected, actual = _shares(lv_o, ed_o, cuts), _shares(lv_n, ed_n, cuts)
        if method == "chi2":
            return "chi2", cramers_v(expected, actual, n_old or 1, n_new or 1)
        return "psi", psi(expected, actual)
    # categories: shares of each value (the rest pooled as "other")
    keys = sorted(set(ho["values"]) | set(hn["values"]))

    def shares(h: dict[str, Any]) -> list[float]:
        counts = [float(h["values"].get(k, 0)) for k in keys] + [float(h.get("other", 0))]
        total = sum(counts) or 1.0
        return [c / total for c in counts]

    so, sn = shares(ho), shares(hn)
    if method == "psi":
        return "psi", psi(so, sn)
    return "chi2", cramers_v(so, sn, n_old or 1, n_new or 1)


@dataclass
class ProfileDiff:
    """Two profiles of a dataset compared (`mlci data diff`): schema changes, drift per shared column."""

    added: list[str]
    removed: list[str]
    retyped: dict[str, list[Any]]  # column -> [old type, new type]
    drift: list[dict[str, Any]]  # per column in both: nulls and mean [old, new], method, statistic, drifted
    threshold: float

    def schema(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "retyped": self.retyped}


def diff_profiles(old: dict[str, Any], new: dict[str, Any], method: str) -> ProfileDiff:
    """Compare two profiles column by column; a column drifts when `method`'s statistic passes
    its default threshold (`DEFAULT_THRESHOLD`)."""
    cols_a, cols_b = old["columns"], new["columns"]
    threshold = DEFAULT_THRESHOLD[method]
    drift: list[dict[str, Any]] = []
    for name in cols_b:
        if name not in cols_a:
            continue
        a, b = cols_a[name], cols_b[name]
        stat = column_drift({**a, "rows": old["rows"]}, {**b, "rows": new["rows"]}, method)
        drift.append(
            {
                "column": name,
                "nulls": [a.get("nulls"), b.get("nulls")],
                "mean": [a.get("mean"), b.get("mean")],
                "method": stat[0] if stat else None,
                "statistic": round(stat[1], 6) if stat else None,
                "drifted": bool(stat and stat[1] > threshold),
            }
        )
    return ProfileDiff(
        added=[c for c in cols_b if c not in cols_a],
        removed=[c for c in cols_a if c not in cols_b],
        retyped={
            c: [cols_a[c]["type"], cols_b[c]["type"]]
            for c in cols_b
            if c in cols_a and cols_a[c]["type"] != cols_b[c]["type"]
        },
        drift=drift,
        threshold=threshold,
    )


def compare(old: dict[str, Any], new: dict[str, Any], config: dict[str, Any], base_label: str) -> list[CheckResult]:
    out: list[CheckResult] = []
    rows_old, rows_new = int(old.get("rows", 0)), int(new.get("rows", 0))
    change = config.get("row_count_change")
    if change and change.get("max_pct") is not None:
        pct = abs(rows_new - rows_old) / rows_old * 100 if rows_old else (0.0 if rows_new == 0 else math.inf)
        r = CheckResult(
            "row_count_change", None, {"max_pct": change["max_pct"], "base": base_label}, change["severity"]
        )
        r.rows = rows_new
        r.message = (
            f"{rows_old:,} -> {rows_new:,} rows ({pct:+.1f}%)" if math.isfinite(pct) else f"0 -> {rows_new:,} rows"
        )
        if pct > change["max_pct"]:
            r.status, r.failures = ("fail" if change["severity"] == "error" else "warn"), 1
            r.hint = "a change this large needs a look; raise compare.row_count_change.max_pct if it is expected"
        out.append(r)
    severity = config.get("schema_change")
    if severity:
        co, cn = old.get("columns", {}), new.get("columns", {})
        added = [c for c in cn if c not in co]
        removed = [c for c in co if c not in cn]
        retyped = [
            f"{c} {co[c].get('type')}->{cn[c].get('type')}"
            for c in cn
            if c in co and co[c].get("type") != cn[c].get("type")
        ]
        r = CheckResult("schema_change", None, {"severity": severity, "base": base_label}, severity)
        r.rows = rows_new
        parts = [f"{k}: {', '.join(v)}" for k, v in (("added", added), ("removed", removed), ("retyped", retyped)) if v]
        if parts:
            r.status, r.failures = ("fail" if severity == "error" else "warn"), len(added) + len(removed) + len(retyped)
            r.message = "; ".join(parts)
            r.hint = "a schema change breaks consumers; set compare.schema_change: warn if it is intended"
        out.append(r)
    drift = config.get("drift")
    if drift:
        method = drift["method"]
        threshold = drift["threshold"] if drift.get("threshold") is not None else DEFAULT_THRESHOLD[method]
        for name in drift["columns"]:
            r = CheckResult(
                "drift", name, {"method": method, "threshold": threshold, "base": base_label}, drift["severity"]
            )
            r.rows = rows_new
            co, cn = old.get("columns", {}).get(name), new.get("columns", {}).get(name)
            if co is None or cn is None:
                r.status = "skip"
                r.message = (
                    f"column {name!r} is missing from the {'previous' if co is None else 'new'} version's profile"
                )
                out.append(r)
                continue
            stat = column_drift({**co, "rows": rows_old}, {**cn, "rows": rows_new}, method)
            if stat is None:
                r.status = "skip"
                r.message = "no histogram to compare (column type changed, or neither numeric nor categorical)"
                out.append(r)
                continue
            used, value = stat
            r.params["statistic"] = round(value, 6)
            if used != method:
                r.params["method_used"] = used
            r.message = f"{used} = {value:.4f} (threshold {threshold})"
            if value > threshold:
                r.status, r.failures = ("fail" if drift["severity"] == "error" else "warn"), 1
                r.hint = "the distribution moved since the previous version; check the source, or raise the threshold"
            out.append(r)
    return out
