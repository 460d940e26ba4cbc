"""The gate: a candidate run against the baseline, rule by rule, with one verdict.

Rules come from `gate.rules` in mlci.yaml. A rule fails on an absolute floor or ceiling,
on a regression beyond its allowed amount (absolute or % of the baseline; a rule with a
direction and no allowance allows none), or on a missing metric when `required`.

A rule with a `confidence` knows noise: each side expands to its group of repeats
(`ledger/query/groups.py`), or the per-example results pair the two (`per_example.py`), and
the rule passes when the upper confidence bound of the regression is below the allowance
(`stats.py`); rules at one confidence level share Holm's correction. With one run a side
and no per-example results it falls back to the point rule, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlci_tui.config import Config
from mlci_tui.errors import ConfigError, InputError, MlciError
from mlci_tui.gitio import Repo
from mlci_tui.ledger import events
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.baseline import DEFAULT_STAGE, resolve_baseline
from mlci_tui.ledger.query.compare import data_mismatch
from mlci_tui.ledger.query.groups import Group, group_of
from mlci_tui.ledger.query.run import Run, load_run
from mlci_tui.ledger.resolve import Resolved, resolve_run
from mlci_tui.numbers import MAX_DIGITS, compared_change, digits_to_tell_apart, number_text
from mlci_tui.output import Spread

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.per_example import Paired
    from mlci_tui.stats import Evidence

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
TEST_NAMES = {
    "welch": "Welch's t",
    "bootstrap": "bootstrap",
    "paired-bootstrap": "paired bootstrap",
    "paired-normal": "paired normal approximation",
}


@dataclass
class NoiseTest:
    """A rule's one-sided non-inferiority test: the evidence, and the level its bound is drawn at
    (the rule's confidence, raised by Holm's correction when several rules share that level)."""

    evidence: Evidence
    confidence: float
    level: float
    holm: int = 1  # how many rules share Holm's correction at this confidence (1: none)
    stopped_by: str | None = None  # Holm's procedure stopped at this rule before reaching this one
    mcnemar_p: float | None = None  # per-example 0/1 scores: McNemar's exact two-sided p-value

    @property
    def upper(self) -> float:
        return self.evidence.upper(self.level)

    @property
    def passed(self) -> bool:
        return self.stopped_by is None and self.upper < self.evidence.margin

    def doc(self) -> dict[str, Any]:
        """The test as the gate's JSON and the report carry it."""
        e = self.evidence
        return {
            "test": e.test,
            "confidence": self.confidence,
            "level": self.level,
            "correction": "holm" if self.holm > 1 else None,
            "rules_corrected": self.holm,
            "n_base": e.n_base,
            "n_head": e.n_head,
            "regression": e.estimate,
            "upper": self.upper,
            "margin": e.margin,
            "p": e.p,
            "mcnemar_p": self.mcnemar_p,
            "decision": PASS if self.passed else FAIL,
            "stopped_by": self.stopped_by,
        }

    def text(self, direction: str) -> str:
        """One line: `drop <= 0.012 at 97.5% (Welch's t, n 5/5, Holm over 2 rules)`."""
        e = self.evidence
        word = "drop" if direction == "max" else "rise"
        digits = digits_to_tell_apart([self.upper, e.margin])
        n = f"n {e.n_base}" if e.test.startswith("paired") else f"n {e.n_base}/{e.n_head}"
        extra = [TEST_NAMES.get(e.test, e.test), n]
        if self.holm > 1:
            extra.append(f"Holm over {self.holm} rules")
        if self.mcnemar_p is not None:
            extra.append(f"McNemar p {number_text(self.mcnemar_p, 3)}")
        level = number_text(self.level * 100, 4)
        return f"{word} <= {number_text(self.upper, digits)} at {level}% ({', '.join(extra)})"


@dataclass
class RuleResult:
    metric: str
    base: float | None  # a group's mean when the side has repeats
    head: float | None
    limit: str
    verdict: str
    reason: str = ""
    test: NoiseTest | None = None  # a rule with a confidence that had the runs or examples for it
    notice: str = ""  # why a rule with a confidence fell back to the point rule
    base_spread: Spread | None = None  # the side's group, when it has more than one value
    head_spread: Spread | None = None
    direction: str | None = None

    @property
    def change(self) -> str:
        return compared_change(self.base, self.head)

    @property
    def interval(self) -> str:
        """The test's bound and level, or why there is none (empty for a rule without a confidence)."""
        if self.test is not None and self.direction:
            return self.test.text(self.direction)
        return self.notice

    def row(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.base_spread or self.base,
            "candidate": self.head_spread or self.head,
            "change": self.change,
            "limit": self.limit,
            "interval": self.interval,
            "verdict": self.verdict + (f": {self.reason}" if self.reason else ""),
        }

    def doc(self) -> dict[str, Any]:
        """The rule in the gate's JSON: values, the test (interval, n, decision) or the fallback notice."""
        return self.row() | {
            "baseline": self.base,
            "candidate": self.head,
            "baseline_group": self.base_spread.doc() if self.base_spread else None,
            "candidate_group": self.head_spread.doc() if self.head_spread else None,
            "verdict": self.verdict,
            "reason": self.reason,
            "test": self.test.doc() if self.test else None,
            "notice": self.notice or None,
        }


@dataclass
class GateResult:
    base: Run | None
    head: Run
    rules: list[RuleResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # reasons outside the rules (stale, no baseline)

    @property
    def passed(self) -> bool:
        return not self.failures and all(r.verdict != FAIL for r in self.rules)

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "fail"
        return "pass" if self.base is not None else "no baseline"

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _limit(value: float) -> str:
    """A limit from mlci.yaml, as the user wrote it (all its digits)."""
    return number_text(float(value), MAX_DIGITS)


def _limit_text(rule: dict[str, Any], direction: str | None) -> str:
    parts = []
    if rule.get("min") is not None:
        parts.append(f">= {_limit(rule['min'])}")
    if rule.get("max") is not None:
        parts.append(f"<= {_limit(rule['max'])}")
    if direction == "max":
        if rule.get("max_drop") is not None:
            parts.append(f"drop <= {_limit(rule['max_drop'])}")
        if rule.get("max_drop_pct") is not None:
            parts.append(f"drop <= {_limit(rule['max_drop_pct'])}%")
    if direction == "min":
        if rule.get("max_rise") is not None:
            parts.append(f"rise <= {_limit(rule['max_rise'])}")
        if rule.get("max_rise_pct") is not None:
            parts.append(f"rise <= {_limit(rule['max_rise_pct'])}%")
    if direction and _relative(rule) and not any(p.startswith(("drop", "rise")) for p in parts):
        parts.append("no drop" if direction == "max" else "no rise")
    if rule.get("required"):
        parts.append("required")
    return ", ".join(parts)


def _relative(rule: dict[str, Any]) -> bool:
    """A rule compares with the baseline when it names a direction or an allowance."""
    keys = ("direction", "max_drop", "max_drop_pct", "max_rise", "max_rise_pct")
    return any(rule.get(k) is not None for k in keys)


@dataclass
class Sides:
    """What rules with a confidence compare: each side's group of repeats, and the per-example
    scores of both sides when they have them (for the rule `paired_metric`)."""

    base: Group | None
    head: Group
    paired: Paired | None = None
    paired_metric: str | None = None
    paired_notice: str = ""  # why the per-example results could not be paired
    paired_method: str = "auto"  # gate.per_example.test


def _spread(group: Group | None, name: str) -> Spread | None:
    found = group.summary(name) if group else None
    return Spread(*found) if found else None


def check_rule(
    name: str, rule: dict[str, Any], cfg: Config, base: Run | None, head: Run, sides: Sides | None = None
) -> RuleResult:
    direction = rule.get("direction") or cfg.direction(name)
    if direction is None and (rule.get("max_drop") is not None or rule.get("max_drop_pct") is not None):
        direction = "max"
    if direction is None and (rule.get("max_rise") is not None or rule.get("max_rise_pct") is not None):
        direction = "min"
    c = head.metric(name)
    b = base.metric(name) if base else None
    limit = _limit_text(rule, direction)
    result = RuleResult(name, b, c, limit, PASS, direction=direction)
    if c is None:
        result.verdict, result.reason = (FAIL, "missing") if rule.get("required") else (SKIP, "missing")
        return result
    if math.isnan(c):
        result.verdict, result.reason = FAIL, "NaN"
        return result
    noisy = rule.get("confidence") is not None and sides is not None
    if noisy and sides is not None:  # each side stands for its group of repeats
        result.head_spread, result.base_spread = _spread(sides.head, name), _spread(sides.base, name)
        if result.head_spread:
            c = result.head = result.head_spread.mean
        if result.base_spread:
            b = result.base = result.base_spread.mean
    if rule.get("min") is not None and c < rule["min"]:
        result.verdict, result.reason = FAIL, f"below {_limit(rule['min'])}"
        return result
    if rule.get("max") is not None and c > rule["max"]:
        result.verdict, result.reason = FAIL, f"above {_limit(rule['max'])}"
        return result
    if not (_relative(rule) and direction):
        return result
    if base is None:
        result.reason = "no baseline"
        return result
    if b is None or not math.isfinite(b):
        result.verdict, result.reason = (WARN, "baseline has no value") if b is None else (WARN, "baseline not finite")
        return result
    if noisy and sides is not None:
        result.test, result.notice = _noise_test(name, rule, direction, b, sides)
        if result.test is not None:
            return result  # decided by `decide_tests`, with the other rules at its level
    worse = (b - c) if direction == "max" else (c - b)
    allowed = _allowance(rule, direction, b)
    if worse > allowed and not math.isclose(worse, allowed, rel_tol=1e-9, abs_tol=1e-12):
        word = "dropped" if direction == "max" else "rose"
        result.verdict, result.reason = FAIL, f"{word} by {number_text(abs(worse), digits_to_tell_apart([b, c]))}"
    return result


def _allowance(rule: dict[str, Any], direction: str, base_value: float) -> float:
    """The regression a rule allows: the smaller of its absolute and % allowances (none given: 0)."""
    allowances = []
    abs_key, pct_key = ("max_drop", "max_drop_pct") if direction == "max" else ("max_rise", "max_rise_pct")
    if rule.get(abs_key) is not None:
        allowances.append(float(rule[abs_key]))
    if rule.get(pct_key) is not None:
        allowances.append(abs(base_value) * float(rule[pct_key]) / 100)
    return min(allowances) if allowances else 0.0


def _noise_test(
    name: str, rule: dict[str, Any], direction: str, base_value: float, sides: Sides
) -> tuple[NoiseTest | None, str]:
    """The rule's test from per-example results, else from repeats; None and why when neither is there."""
    from mlci_tui import stats

    sign = 1.0 if direction == "max" else -1.0
    confidence = float(rule["confidence"])
    paired = sides.paired if sides.paired_metric == name else None
    if paired is not None:
        np = stats.numpy()
        margin = _allowance(rule, direction, float(np.mean(paired.base)))
        evidence = stats.paired(sign * (paired.base - paired.head), margin, method=sides.paired_method)
        mcnemar_p = None
        if paired.binary:
            base_only = int(np.count_nonzero((paired.base == 1) & (paired.head == 0)))
            head_only = int(np.count_nonzero((paired.base == 0) & (paired.head == 1)))
            mcnemar_p = stats.mcnemar(base_only, head_only)
        return NoiseTest(evidence, confidence, confidence, mcnemar_p=mcnemar_p), ""
    base_values = sides.base.values(name) if sides.base else []
    head_values = sides.head.values(name)
    margin = _allowance(rule, direction, base_value)
    if len(base_values) >= 2 and len(head_values) >= 2:
        test = stats.bootstrap if rule.get("test") == "bootstrap" else stats.welch
        return NoiseTest(test(base_values, head_values, margin, sign=sign), confidence, confidence), ""
    why = f"{len(base_values)} baseline and {len(head_values)} candidate run(s): the point rule"
    why += " (a confidence needs two runs a side, or per-example results)"
    if sides.paired_metric == name and sides.paired_notice:
        why += f"; {sides.paired_notice}"
    return None, why


def decide_tests(results: list[RuleResult]) -> None:
    """The verdict of every rule that has a test: rules at one confidence level share Holm's
    correction (the smallest p first, each bound drawn at 1 - alpha / (m - rank); the first that
    fails stops the procedure, and the rules after it fail with it)."""
    from mlci_tui.stats import holm_levels

    by_level: dict[float, list[RuleResult]] = {}
    for r in results:
        if r.test is not None:
            by_level.setdefault(r.test.confidence, []).append(r)
    for confidence, ruled in by_level.items():
        stopped: str | None = None
        tests = [r.test for r in ruled if r.test is not None]
        for i, level in holm_levels([t.evidence.p for t in tests], confidence):
            r, test = ruled[i], tests[i]
            test.level, test.holm, test.stopped_by = level, len(tests), stopped
            if test.passed:
                r.verdict, r.reason = PASS, ""
                continue
            r.verdict = FAIL
            if stopped is None:
                r.reason = "the bound is above the allowance"  # the bound and level: `interval`
                stopped = r.metric
            else:
                r.reason = "Holm's correction stopped at an earlier rule"


def evaluate(cfg: Config, base: Run | None, head: Run, sides: Sides | None = None) -> GateResult:
    gate_cfg = cfg.section("gate")
    result = GateResult(base, head)
    for name, rule in sorted(gate_cfg["rules"].items()):
        result.rules.append(check_rule(name, rule, cfg, base, head, sides))
    decide_tests(result.rules)
    if not gate_cfg["rules"]:
        result.warnings.append("no gate.rules in mlci.yaml: nothing to check")
    if base is None and gate_cfg["require_baseline"]:
        result.failures.append("no baseline, and gate.require_baseline is true")
    if head.stale:
        message = "the candidate is stale: its train.deps changed but its metrics did not (retrain?)"
        (result.failures if gate_cfg["stale"] == "fail" else result.warnings).append(message)
    if base is not None:
        mismatch = data_mismatch(cfg, base, head)
        if mismatch:
            result.warnings.append("baseline and candidate were evaluated on different data: " + ", ".join(mismatch))
    result.rules.sort(key=lambda r: (r.verdict != FAIL, r.verdict != WARN, r.metric))
    return result


def noise_sides(repo: Repo, con: duckdb.DuckDBPyConnection, cfg: Config, base: Run | None, head: Run) -> Sides | None:
    """Each side's group and the paired per-example scores, when a rule has a confidence (else None:
    nothing more is read, and the gate stays the point rule)."""
    gate_cfg = cfg.section("gate")
    confident = sorted(n for n, r in gate_cfg["rules"].items() if r.get("confidence") is not None)
    if not confident:
        return None
    seed = cfg.section("train")["repeats"]["seed_param"]
    sides = Sides(group_of(con, base, seed) if base else None, group_of(con, head, seed))
    spec = gate_cfg["per_example"]
    if spec is None or base is None:
        return sides
    metric = spec["metric"]
    if metric is None and len(confident) != 1:
        raise ConfigError(
            "gate.per_example.metric: name the rule the per-example results decide "
            f"(rules with a confidence: {', '.join(confident) or 'none'})"
        )
    metric = metric or confident[0]
    if metric not in confident:
        raise ConfigError(f"gate.per_example.metric: gate.rules.{metric} has no confidence")
    from mlci_tui import stats
    from mlci_tui.per_example import Missing, read_paired

    stats.numpy()  # the error naming the extra, before DuckDB asks for numpy
    sides.paired_metric, sides.paired_method = metric, spec["test"]
    try:
        sides.paired = read_paired(repo, spec, base.commit, head.commit)
    except Missing as exc:
        sides.paired_notice = f"per-example results not paired: {exc}"
    return sides


def gate_refs(
    repo: Repo, con: duckdb.DuckDBPyConnection, cfg: Config, base_ref: str | None, head_ref: str
) -> GateResult:
    """Resolve the candidate and the baseline (docs/contracts.md: gate baselines), load both, evaluate; how each
    reference was resolved (an ancestor's run, a rewritten commit's) comes first in warnings."""
    head_res = resolve_run(repo, con, head_ref)
    notices = [head_res.notice] if head_res.notice else []
    head = load_run(con, head_res)
    base_res = resolve_baseline(repo, con, cfg, base_ref)
    if base_res and base_res.notice:
        notices.append(base_res.notice)
    if base_res is not None and base_res.how == "stage" and cfg.section("gate")["require_signed_promotions"]:
        stage = base_ref or cfg.section("gate")["baseline"] or DEFAULT_STAGE
        base_res = signed_stage_run(con, cfg, stage, notices)
    base = load_run(con, base_res) if base_res else None
    result = evaluate(cfg, base, head, noise_sides(repo, con, cfg, base, head))
    result.warnings[:0] = notices
    return result


def signed_stage_run(con: duckdb.DuckDBPyConnection, cfg: Config, stage: str, notices: list[str]) -> Resolved:
    """The run of the newest promotion to `stage` whose signature verifies against
    `ledger.trust.allowed_signers` (gate.require_signed_promotions); each newer one that does
    not is named in `notices`. None verifies: exit 2, since the config demands what is missing."""
    from mlci_tui.ledger import records, signing

    trust = cfg.section("ledger")["trust"]
    allowed, allowed_path = trust["allowed_signers"], signing.allowed_signers(cfg.root, trust)
    if allowed_path is None:
        raise ConfigError("gate.require_signed_promotions is true but ledger.trust.allowed_signers is not set")
    rows = con.execute(
        "SELECT id, body FROM events WHERE type = 'promote' AND json_extract_string(body, '$.stage') = ? "
        "ORDER BY time DESC, id DESC",
        [stage],
    ).fetchall()
    for event_id, body in rows:
        promotion = records.loads(body)
        why = signing.verify(promotion, allowed_path)
        if why is None:
            return Resolved(str(promotion.get("target")), "stage")
        notices.append(
            f"promotion {event_id[:8]} of run {str(promotion.get('target'))[:8]} to {stage} skipped: {why}"
            " (gate.require_signed_promotions)"
        )
    raise MlciError(
        f"no promotion to {stage!r} has a signature that verifies against {allowed}; "
        "gate.require_signed_promotions demands one (`mlci promote RUN --sign`)"
    )


def run_gate(repo: Repo, cfg: Config, base_ref: str | None, head_ref: str) -> GateResult:
    """`gate_refs` in a connection of its own: `mlci gate` and the pre-push gate."""
    with open_cache(repo) as con:
        return gate_refs(repo, con, cfg, base_ref, head_ref)


# ---------------------------------------------------------------- promotion: what passed the gate moves on


@dataclass(frozen=True)
class Promotion:
    """A promote event ready to append, and the model hash it records (None: no model file found)."""

    event: dict[str, Any]
    model_hash: str | None


def model_hash(repo: Repo, model: str, commit: str | None) -> str | None:
    """The model file's BLAKE3: from the run's commit, else the working tree (a regular file, not a link).

    A promotion names the model it deploys by content, not only by a path that later commits
    may change.
    """
    import blake3  # lazy: only a promotion hashes; the gate (also on the pre-push hook) does not

    data: bytes | None = None
    if commit:
        proc = repo.run("cat-file", "blob", f"{commit}:{model}", check=False)
        if proc.returncode == 0:
            data = proc.stdout
    if data is None and (repo.root / model).is_file() and not (repo.root / model).is_symlink():
        data = (repo.root / model).read_bytes()
    return f"blake3:{blake3.blake3(data).hexdigest()}" if data is not None else None


def promotion(repo: Repo, cfg: Config, run: Run, stage: str, *, sign: bool = False) -> Promotion:
    """The event promoting `run` to `stage`: `cfg.model` and its hash, and who promotes (git's author ident);
    signed when `sign` or when `ledger.trust.signing_key` is set.

    One place for what `mlci promote` and the scheduled CI promotion record, so the two agree.
    """
    hashed = model_hash(repo, cfg.model, run.commit) if cfg.model else None
    author = repo.text("var", "GIT_AUTHOR_IDENT", check=False).rsplit(">", 1)[0] + ">"
    event = events.promote(run.run_id, stage, model=cfg.model, model_hash=hashed, by=author if author != ">" else None)
    trust = cfg.section("ledger")["trust"]
    if sign or trust["signing_key"]:
        from mlci_tui.ledger import signing

        key = trust["signing_key"] or repo.text("config", "user.signingkey", check=False).strip()
        if not key:
            raise InputError("promote --sign: set ledger.trust.signing_key (or git's user.signingkey) to an SSH key")
        principal = signing.principal_of(repo, trust["principal"])
        if not principal:
            raise InputError("promote --sign: set ledger.trust.principal (or git's user.email)")
        event = signing.sign(event, signing.key_path(cfg.root, key), principal)
    return Promotion(event, hashed)
