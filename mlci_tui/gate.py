"""The gate: a candidate run against the baseline, rule by rule, with one verdict.

Rules come from `gate.rules` in mlci.yaml. A rule fails on an absolute floor or ceiling,
on a regression beyond its allowed amount (absolute or % of the baseline; a rule with a
direction and no allowance allows none), or on a missing metric when `required`.
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
from mlci_tui.ledger.query.run import Run, load_run
from mlci_tui.ledger.resolve import Resolved, resolve_run
from mlci_tui.numbers import MAX_DIGITS, compared_change, digits_to_tell_apart, number_text

if TYPE_CHECKING:
    import duckdb

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"


@dataclass
class RuleResult:
    metric: str
    base: float | None
    head: float | None
    limit: str
    verdict: str
    reason: str = ""

    @property
    def change(self) -> str:
        return compared_change(self.base, self.head)

    def row(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.base,
            "candidate": self.head,
            "change": self.change,
            "limit": self.limit,
            "verdict": self.verdict + (f": {self.reason}" if self.reason else ""),
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


def check_rule(name: str, rule: dict[str, Any], cfg: Config, base: Run | None, head: Run) -> RuleResult:
    direction = rule.get("direction") or cfg.direction(name)
    if direction is None and (rule.get("max_drop") is not None or rule.get("max_drop_pct") is not None):
        direction = "max"
    if direction is None and (rule.get("max_rise") is not None or rule.get("max_rise_pct") is not None):
        direction = "min"
    c = head.metric(name)
    b = base.metric(name) if base else None
    limit = _limit_text(rule, direction)
    result = RuleResult(name, b, c, limit, PASS)
    if c is None:
        result.verdict, result.reason = (FAIL, "missing") if rule.get("required") else (SKIP, "missing")
        return result
    if math.isnan(c):
        result.verdict, result.reason = FAIL, "NaN"
        return result
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
    worse = (b - c) if direction == "max" else (c - b)
    allowances = []
    abs_key, pct_key = ("max_drop", "max_drop_pct") if direction == "max" else ("max_rise", "max_rise_pct")
    if rule.get(abs_key) is not None:
        allowances.append(float(rule[abs_key]))
    if rule.get(pct_key) is not None:
        allowances.append(abs(b) * float(rule[pct_key]) / 100)
    allowed = min(allowances) if allowances else 0.0
    if worse > allowed and not math.isclose(worse, allowed, rel_tol=1e-9, abs_tol=1e-12):
        word = "dropped" if direction == "max" else "rose"
        result.verdict, result.reason = FAIL, f"{word} by {number_text(abs(worse), digits_to_tell_apart([b, c]))}"
    return result


def evaluate(cfg: Config, base: Run | None, head: Run) -> GateResult:
    gate_cfg = cfg.section("gate")
    result = GateResult(base, head)
    for name, rule in sorted(gate_cfg["rules"].items()):
        result.rules.append(check_rule(name, rule, cfg, base, head))
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
    result = evaluate(cfg, base, head)
    result.warnings[:0] = notices
    return result


def signed_stage_run(con: duckdb.DuckDBPyConnection, cfg: Config, stage: str, notices: list[str]) -> Resolved:
    """The run of the newest promotion to `stage` whose signature verifies against
    `ledger.trust.allowed_signers` (gate.require_signed_promotions); each newer one that does
    not is named in `notices`. None verifies: exit 2, since the config demands what is missing."""
    from mlci_tui.ledger import records, signing

    allowed = cfg.section("ledger")["trust"]["allowed_signers"]
    if not allowed:
        raise ConfigError("gate.require_signed_promotions is true but ledger.trust.allowed_signers is not set")
    allowed_path = signing.key_path(cfg.root, allowed)
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
        principal = trust["principal"] or author.rsplit("<", 1)[-1].rstrip(">")
        if not principal:
            raise InputError("promote --sign: set ledger.trust.principal (or git's user.email)")
        event = signing.sign(event, signing.key_path(cfg.root, key), principal)
    return Promotion(event, hashed)
