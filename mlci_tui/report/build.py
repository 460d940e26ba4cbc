"""The report model: the gate's verdict, metrics, params, data, DVC plots, history and step curves.

One function, `build_report`, reads everything a report shows from the ledger cache in a
single connection; the renderers (markdown, term, html) and `to_json` only format it. Names
and values stay raw here: each renderer escapes them for its own medium.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlci_tui import __version__
from mlci_tui.capture.readers import Limits
from mlci_tui.config import Config
from mlci_tui.gate import FAIL, PASS, SKIP, WARN, GateResult, RuleResult, gate_refs
from mlci_tui.gitio import Repo
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.ledger.query.compare import Change, diff_maps
from mlci_tui.ledger.query.names import candidates, map_keys
from mlci_tui.ledger.query.run import Run
from mlci_tui.ledger.query.series import commit_runs, first_parent_commits, step_rows
from mlci_tui.numbers import compared_change, difference
from mlci_tui.output import json_value
from mlci_tui.report import dvc_plots
from mlci_tui.report.dvc_plots import DvcPlots

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.validate.rowdiff import RowDiff

FOLD_AT = 20  # with more metrics than this, the key metrics are shown and the rest folded
UNKEYED_SHOWN = 10  # with no key metrics declared, this many (changed first) stay unfolded
HISTORY_COMMITS = 20  # `git rev-list --first-parent -n 20`
DATA_DIFFS = 3  # changed datasets diffed row by row in a report (each reads both versions)
CHART_LIMIT = 6  # charts in a report by default: DVC plots first, then history, then step curves
MAX_POINTS = 100  # points per drawn series (longer step curves are thinned, the last kept)


@dataclass
class MetricRow:
    name: str
    base: float | None
    head: float | None
    direction: str | None  # "max", "min" or None
    status: str  # up, down, same, new, removed, missing, nonfinite, only (no baseline run)
    rule: RuleResult | None = None
    key: bool = False

    @property
    def delta(self) -> float | None:
        """For JSON: the change, rounded past float noise."""
        d = difference(self.base, self.head)[0]
        return None if d is None else round(d, 12)

    @property
    def pct(self) -> float | None:
        p = difference(self.base, self.head)[1]
        return None if p is None else round(p, 2)

    @property
    def change(self) -> str:
        return compared_change(self.base, self.head)

    @property
    def better(self) -> bool | None:
        """Whether the change is an improvement for the metric's direction (None: no direction)."""
        if self.status not in ("up", "down") or self.direction is None:
            return None
        return (self.status == "up") == (self.direction == "max")

    @property
    def trend(self) -> str:
        """Arrow and words, emoji-free: `↑ better`, `↓ worse`, `↑`, `=`, `new`, `removed`."""
        if self.status in ("up", "down"):
            arrow = "↑" if self.status == "up" else "↓"
            better = self.better
            return arrow if better is None else f"{arrow} {'better' if better else 'worse'}"
        return {"same": "=", "new": "new", "removed": "removed", "missing": "missing"}.get(self.status, "")

    @property
    def gate_text(self) -> str:
        r = self.rule
        if r is None:
            return ""
        text = r.verdict + (f": {r.reason}" if r.reason else "")
        if r.limit and r.verdict in (FAIL, WARN):
            text += f" (limit {r.limit})"
        if r.interval:  # a rule with a confidence: its bound, level, test and n (Holm named), or why it fell back
            text += f"; {r.interval}"
        if r.base_spread or r.head_spread:
            groups = [
                f"{side} {g.text()}" for side, g in (("baseline", r.base_spread), ("candidate", r.head_spread)) if g
            ]
            text += "; " + ", ".join(groups)
        return text

    @property
    def changed(self) -> bool:
        return self.status not in ("same", "only")


@dataclass
class DataRow:
    path: str
    base: str | None
    head: str | None
    diff: RowDiff | None = None  # rows and columns changed since the baseline run's version
    diff_note: str | None = None  # why there is no row diff (a version not here, no key, ...)

    @property
    def status(self) -> str:
        if self.base is None:
            return "new"
        if self.head is None:
            return "removed"
        return "changed" if self.base != self.head else "same"


@dataclass
class HistoryPoint:
    commit: str
    run_id: str
    values: dict[str, float]
    is_head: bool = False
    is_base: bool = False


@dataclass
class StepSeries:
    name: str
    base: list[tuple[int, float]]
    head: list[tuple[int, float]]


@dataclass
class Report:
    gate: GateResult
    metrics: list[MetricRow]  # shown: key metrics first (failing rules first), or all when few
    folded: list[MetricRow]  # the rest, folded away when there are many
    params: list[Change]  # params that changed
    params_total: int
    datasets: list[DataRow]  # datasets that changed, appeared or went
    datasets_total: int
    history: list[HistoryPoint] = field(default_factory=list)  # oldest first
    history_names: list[str] = field(default_factory=list)  # metrics charted over the history
    steps: list[StepSeries] = field(default_factory=list)
    plots: DvcPlots = field(default_factory=DvcPlots)  # what dvc.yaml declares, drawn as DVC defines it
    version: str = __version__

    @property
    def base(self) -> Run | None:
        return self.gate.base

    @property
    def head(self) -> Run:
        return self.gate.head

    @property
    def verdict(self) -> str:
        return self.gate.verdict

    @property
    def metric_count(self) -> int:
        return len(self.metrics) + len(self.folded)

    def rule_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.gate.rules:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        return counts

    def summary(self) -> str:
        """The verdict line's words after the verdict itself, plain text (renderers escape it)."""
        counts = self.rule_counts()
        parts = [f"{counts[v]} {v}" for v in (FAIL, WARN, PASS, SKIP) if counts.get(v)]
        rules = f"{len(self.gate.rules)} gate rule{'s' if len(self.gate.rules) != 1 else ''}"
        text = rules + (f" ({', '.join(parts)})" if parts else "")
        if self.base is None:
            text += "; no baseline to compare with"
        return text

    def params_note(self) -> str | None:
        """Why the Params section has no table, one sentence every format prints the same way."""
        if self.base is None:
            return f"No baseline: the candidate's {self.params_total} params are not compared."
        if not self.params:
            return f"No param changed ({self.params_total} compared)."
        return None

    def datasets_note(self) -> str | None:
        """Why the Data section has no table, one sentence every format prints the same way."""
        if self.datasets_total == 0:
            return "No datasets recorded for these runs."
        if self.base is None:
            return f"No baseline: the candidate's {self.datasets_total} datasets are not compared."
        if not self.datasets:
            return f"No dataset changed ({self.datasets_total} compared)."
        return None

    def history_series(self, name: str) -> list[tuple[str, float]]:
        """(commit, value) points of one metric along the history, finite values only."""
        out = []
        for p in self.history:
            v = p.values.get(name)
            if v is not None and math.isfinite(v):
                out.append((p.commit, v))
        return out


def run_phrase(
    run: dict[str, object], verb: str, *, code: Callable[[str], str], message: Callable[[object], str]
) -> str:
    """`candidate: run R, commit C, found by stage: subject`, the one wording of every format;
    `code` quotes ids and `message` escapes and cuts the subject as the format needs."""
    if not run:
        return f"{verb}: none"
    text = f"{verb}: run {code(str(run['run_id'])[:8])}"
    if run.get("commit"):
        text += f", commit {code(str(run['commit'])[:8])}"
    if run.get("resolved_by") not in (None, "id", "commit"):
        text += f", found by {code(str(run['resolved_by']))}"
    if run.get("message"):
        text += f": {message(run['message'])}"
    return text


def run_label(run: Run | None) -> dict[str, Any]:
    if run is None:
        return {}
    message = (run.message or "").strip().splitlines()
    return {
        "run_id": run.run_id,
        "commit": run.commit,
        "branch": run.branch,
        "kind": run.kind,
        "message": message[0] if message else "",
        "resolved_by": run.how,
    }


def _rule_direction(cfg: Config, name: str, rule: dict[str, Any]) -> str | None:
    direction = rule.get("direction") or _config_direction(cfg, name)
    if direction is None and (rule.get("max_drop") is not None or rule.get("max_drop_pct") is not None):
        direction = "max"
    if direction is None and (rule.get("max_rise") is not None or rule.get("max_rise_pct") is not None):
        direction = "min"
    return direction


def _config_direction(cfg: Config, name: str) -> str | None:
    direction = cfg.direction(name)
    if direction is None and ":" in name:
        direction = cfg.direction(name.rsplit(":", 1)[1])
    return direction


def _status(base_run: Run | None, base: float | None, head: float | None) -> str:
    if base_run is None:
        return "only"
    if base is None and head is None:
        return "missing"
    if base is None:
        return "new"
    if head is None:
        return "removed"
    if not (math.isfinite(base) and math.isfinite(head)):
        same = base == head or (math.isnan(base) and math.isnan(head))
        return "same" if same else "nonfinite"
    if head > base:
        return "up"
    if head < base:
        return "down"
    return "same"


def _key_of(run: Run | None, name: str) -> str | None:
    """The map key a plain metric name stands for in a run (itself, or its one `file:name`)."""
    if run is None:
        return None
    found = candidates(run.metrics, name)
    return found[0] if len(found) == 1 else None


def metric_rows(cfg: Config, gate: GateResult) -> tuple[list[MetricRow], list[MetricRow]]:
    """(shown, folded): failing rules first, then other rules, declared metrics, the rest."""
    base, head = gate.base, gate.head
    rules_cfg = cfg.section("gate")["rules"]
    rows: list[MetricRow] = []
    used: set[str] = set()
    for r in gate.rules:
        key = _key_of(head, r.metric) or _key_of(base, r.metric) or r.metric
        used.add(key)
        direction = _rule_direction(cfg, r.metric, rules_cfg.get(r.metric, {}))
        rows.append(MetricRow(key, r.base, r.head, direction, _status(base, r.base, r.head), r, key=True))
    for name in cfg.section("metrics")["fields"]:
        found = _key_of(head, name) or _key_of(base, name)
        if found is None or found in used:
            continue
        key = found
        used.add(key)
        b, h = (base.metrics.get(key) if base else None), head.metrics.get(key)
        rows.append(MetricRow(key, b, h, _config_direction(cfg, key), _status(base, b, h), key=True))
    rest = []
    for key in sorted((set(head.metrics) | set(base.metrics if base else ())) - used):
        b, h = (base.metrics.get(key) if base else None), head.metrics.get(key)
        rest.append(MetricRow(key, b, h, _config_direction(cfg, key), _status(base, b, h)))
    rest.sort(key=lambda m: (not m.changed, m.name))
    if len(rows) + len(rest) <= FOLD_AT:
        return rows + rest, []
    if not rows:
        return rest[:UNKEYED_SHOWN], rest[UNKEYED_SHOWN:]
    return rows, rest


def _history(
    repo: Repo, con: duckdb.DuckDBPyConnection, head: Run, base: Run | None, names: list[str], limit: int
) -> list[HistoryPoint]:
    commits = first_parent_commits(repo, head.commit or "HEAD", limit)
    if not commits or not names:
        return []
    by_commit = commit_runs(con, commits)
    if head.commit in by_commit:
        by_commit[head.commit] = (head.run_id, head.metrics)
    points = []
    for sha in reversed(commits):
        if sha not in by_commit:
            continue
        run_id, metrics = by_commit[sha]
        values = {n: metrics[n] for n in names if metrics.get(n) is not None}
        points.append(
            HistoryPoint(
                sha, run_id, values, is_head=run_id == head.run_id, is_base=base is not None and run_id == base.run_id
            )
        )
    return points


def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    finite = [(s, v) for s, v in points if math.isfinite(v)]
    if len(finite) <= MAX_POINTS:
        return finite
    last = len(finite) - 1
    picks = sorted({round(i * last / (MAX_POINTS - 1)) for i in range(MAX_POINTS)})
    return [finite[i] for i in picks]


def _steps(
    con: duckdb.DuckDBPyConnection, head: Run, base: Run | None, key_names: list[str], plotted: set[str]
) -> list[StepSeries]:
    """Step series of the key metrics, baseline against candidate; a DVC plot's file is drawn
    as its plot, not again by step (a ROC curve is not a series of steps)."""
    ids = [head.run_id] + ([base.run_id] if base else [])
    per_file: dict[str, dict[str, dict[str, list[tuple[int, float]]]]] = {}
    for run_id, file, name, step, value in step_rows(con, ids):
        if file in plotted:
            continue
        side = "head" if run_id == head.run_id else "base"
        per_file.setdefault(file, {}).setdefault(name, {"head": [], "base": []})[side].append((step, value))
    labelled: dict[str, dict[str, list[tuple[int, float]]]] = map_keys(per_file)
    keys = set(key_names)
    chosen = [n for n in labelled if n in keys or n.rsplit(":", 1)[-1] in keys]
    if not chosen:
        chosen = sorted(labelled)
    out = []
    for name in chosen[:CHART_LIMIT]:
        sides = labelled[name]
        out.append(StepSeries(name, _thin(sides["base"]), _thin(sides["head"])))
    return out


def build_report(
    repo: Repo,
    cfg: Config,
    base_ref: str | None,
    head_ref: str,
    *,
    history: int = HISTORY_COMMITS,
    notices: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Everything a report shows, read in one connection to the ledger cache (DVC plots from
    git objects at the two commits); `env` (default this process's) names the code host."""
    cache = LedgerCache(repo)
    with cache.connect() as con:
        if notices is not None:
            notices.extend(cache.notices)
        gate = gate_refs(repo, con, cfg, base_ref, head_ref)
        head, base = gate.head, gate.base
        plots = dvc_plots.read_plots(
            repo,
            Limits.from_config(cfg.limits),
            head.commit,
            base.commit if base else None,
            wanted=cfg.data.get("report", {}).get("plots"),
            rules=[r.metric for r in gate.rules],
            limit=CHART_LIMIT,
            env=os.environ if env is None else env,
        )
        shown, folded = metric_rows(cfg, gate)
        declared = [m.name for m in shown if m.key]
        chart_names = (declared or [m.name for m in shown])[:CHART_LIMIT]
        points = _history(repo, con, head, base, chart_names, history)
        steps = _steps(con, head, base, declared, plots.files)
    params = diff_maps(base.params, head.params, changed_only=True) if base else []
    data_changes = diff_maps(base.datasets, head.datasets, changed_only=True) if base else []
    report = Report(
        gate=gate,
        metrics=shown,
        folded=folded,
        params=params,
        params_total=len(set(head.params) | set(base.params if base else ())),
        datasets=[DataRow(c.name, c.base, c.head) for c in data_changes],
        datasets_total=len(set(head.datasets) | set(base.datasets if base else ())),
        history=points,
        plots=plots,
    )
    if base is not None:
        _row_diffs(repo, cfg, base, head, report.datasets)
    budget = max(0, CHART_LIMIT - len(plots.charts))  # one budget for every chart of the report
    report.history_names = [n for n in chart_names if len(report.history_series(n)) >= 2][:budget]
    report.steps = steps[: max(0, budget - len(report.history_names))]
    return report


def _row_diffs(repo: Repo, cfg: Config, base: Run, head: Run, rows: list[DataRow]) -> None:
    """The row diff of each changed dataset (the first DATA_DIFFS), the baseline run's commit
    against the candidate's; a version that cannot be read leaves a note, never an error."""
    from pathlib import PurePosixPath

    from mlci_tui.errors import MlciError
    from mlci_tui.validate import rowdiff
    from mlci_tui.validate.spec import build, load_specs

    changed = [d for d in rows if d.status == "changed"]
    if not changed:
        return
    try:
        specs = {s.path: s for s in load_specs(cfg.data.get("datasets")).values()}
    except MlciError as exc:
        specs, problem = {}, str(exc)
    else:
        problem = ""
    for n, d in enumerate(changed):
        if n >= DATA_DIFFS:
            d.diff_note = f"row diff not shown: the report diffs the first {DATA_DIFFS} changed datasets"
        elif problem or not base.commit or not head.commit:
            d.diff_note = "row diff skipped: " + (problem or "a run without a commit")
        else:
            try:
                spec = specs.get(d.path) or build(PurePosixPath(d.path).stem, {"path": d.path})
                d.diff = rowdiff.diff_versions(
                    repo, spec, base.commit, head.commit, labels=("baseline version", "candidate version")
                )
            except MlciError as exc:
                d.diff_note = f"row diff skipped: {exc}"


def to_json(report: Report) -> dict[str, Any]:
    """The whole report for machines (NaN and infinities as strings, like every mlci --json)."""

    def metric(m: MetricRow) -> dict[str, Any]:
        return {
            "name": m.name,
            "baseline": m.base,
            "candidate": m.head,
            "change": m.delta,
            "change_pct": m.pct,
            "status": m.status,
            "direction": m.direction,
            "better": m.better,
            "key": m.key,
            "gate": None
            if m.rule is None
            else {
                "verdict": m.rule.verdict,
                "reason": m.rule.reason,
                "limit": m.rule.limit,
                # as `mlci gate --json` writes them (RuleResult.doc): CI and the report show one thing
                "test": m.rule.test.doc() if m.rule.test else None,
                "notice": m.rule.notice or None,
                "baseline_group": m.rule.base_spread.doc() if m.rule.base_spread else None,
                "candidate_group": m.rule.head_spread.doc() if m.rule.head_spread else None,
            },
        }

    doc = {
        "verdict": report.verdict,
        "summary": report.summary(),
        "base": run_label(report.base) or None,
        "head": run_label(report.head),
        "warnings": report.gate.warnings,
        "failures": report.gate.failures,
        "metrics": [metric(m) for m in report.metrics],
        "folded_metrics": [metric(m) for m in report.folded],
        "params": [{"name": c.name, "baseline": c.base, "candidate": c.head} for c in report.params],
        "datasets": [
            {
                "path": d.path,
                "baseline": d.base,
                "candidate": d.head,
                "status": d.status,
                "diff": None if d.diff is None else d.diff.to_dict(),
                "diff_note": d.diff_note,
            }
            for d in report.datasets
        ],
        "history": [
            {"commit": p.commit, "run_id": p.run_id, "metrics": p.values, "head": p.is_head, "base": p.is_base}
            for p in report.history
        ],
        "steps": [
            {"name": s.name, "baseline": [list(p) for p in s.base], "candidate": [list(p) for p in s.head]}
            for s in report.steps
        ],
        "plots": [dvc_plots.to_json(c) for c in report.plots.charts],
        "plot_notes": report.plots.notes,
        "mlci_version": report.version,
    }
    return json_value(doc)
