"""The verdict on one commit of a bisect: the gate's statistics over its repeats.

A commit is *bad* only when its values are past the rule beyond noise, so a commit whose
repeats sit under a threshold by seed noise alone is not blamed. With `--bad-if "acc < 0.9"`
the test is a one-sample t test of the commit's mean against the threshold; with a good and a
bad end it is Welch's t (`stats.welch`, the gate's test) of the commit's values against the
good end's group. Either is one-sided at the confidence: bad when the lower confidence bound
of the move toward bad is above 0. A commit with one value (or a good side with one) is judged
by the point rule: its mean against the threshold (the ends' midpoint without `--bad-if`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlci_tui.bisect.search import BAD, GOOD
from mlci_tui.errors import CheckFailed
from mlci_tui.numbers import digits_to_tell_apart, number_text

DEFAULT_CONFIDENCE = 0.95
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
TESTS = {"welch": "Welch's t", "one-sample-t": "one-sample t", "point": "point rule"}


@dataclass(frozen=True)
class Judgement:
    """One commit judged: the verdict, the test, n, and the one-sided interval of its move toward bad."""

    verdict: str
    test: str  # welch, one-sample-t, point
    n: int  # the commit's values
    n_good: int  # the good side's values (Welch), else 0
    move: float  # toward bad: the mean past the threshold, or the drop from the good side's mean
    lower: float | None  # the move's lower confidence bound (None: the point rule)
    confidence: float

    def interval(self) -> str:
        """`move >= 0.0123 at 95%`, or what the point rule saw."""
        if self.lower is None:
            return f"move {number_text(self.move, 4)} (no interval: one value)"
        digits = digits_to_tell_apart([self.move, self.lower])
        return f"move >= {number_text(self.lower, digits)} at {number_text(self.confidence * 100, 4)}%"

    def label(self) -> str:
        """The test and its n: `Welch's t, n 5/5`."""
        n = f"n {self.n}/{self.n_good}" if self.test == "welch" else f"n {self.n}"
        return f"{TESTS[self.test]}, {n}"

    def doc(self) -> dict[str, Any]:
        """The verdict's test as the JSON result and the table carry it."""
        return {
            "test": self.test,
            "label": self.label(),
            "interval": self.interval(),
            "n": self.n,
            "n_good": self.n_good,
            "move": self.move,
            "lower": self.lower,
            "confidence": self.confidence,
            "decision": self.verdict,
        }


@dataclass(frozen=True)
class Rule:
    """Which way is bad (`op`), the point rule's threshold, and the good side's group when the
    verdict is Welch's t against it (no `--bad-if`)."""

    op: str
    threshold: float
    confidence: float = DEFAULT_CONFIDENCE
    good: tuple[float, ...] = ()

    @property
    def sign(self) -> float:
        """+1 when lower values are bad."""
        return 1.0 if self.op in ("<", "<=") else -1.0

    def judge(self, values: Sequence[float]) -> Judgement:
        n, mean = len(values), math.fsum(values) / len(values)
        if n > 1 and (len(self.good) > 1 or not self.good):
            from mlci_tui import stats

            if self.good:
                evidence = stats.welch(self.good, values, 0.0, sign=self.sign)
            else:
                evidence = stats.one_sample(values, self.threshold, sign=self.sign)
            lower = 2 * evidence.estimate - evidence.upper(self.confidence)  # the t interval is symmetric
            strict = self.op in ("<", ">") or bool(self.good)
            bad = lower > 0 if strict else lower >= 0
            test = "welch" if self.good else "one-sample-t"
            return Judgement(BAD if bad else GOOD, test, n, len(self.good), evidence.estimate, lower, self.confidence)
        move = self.sign * (self.threshold - mean)
        verdict = BAD if OPS[self.op](mean, self.threshold) else GOOD
        return Judgement(verdict, "point", n, len(self.good), move, None, self.confidence)

    def text(self, metric: str) -> str:
        level = f"{number_text(self.confidence * 100, 4)}%"
        if self.good:
            return (
                f"bad if {metric} moved {'down' if self.sign > 0 else 'up'} from the good end beyond noise "
                f"(Welch's t at {level}; one value a side: mean {self.op} {self.threshold:.6g})"
            )
        return f"bad if mean {metric} {self.op} {self.threshold:.6g} beyond noise (one-sample t at {level})"


def midpoint_rule(good: list[float], bad: list[float], confidence: float, *, repeats: bool) -> Rule:
    """Without --bad-if: bad when moved from the good end toward the bad end beyond noise (Welch's t,
    with repeats), else when nearer the bad end's mean than the good end's."""
    g, b = math.fsum(good) / len(good), math.fsum(bad) / len(bad)
    if g == b:
        raise CheckFailed(f"the good and bad ends have the same value ({g:.6g}): nothing to bisect")
    return Rule("<" if b < g else ">", (g + b) / 2, confidence, tuple(good) if repeats else ())


def point_notice(repeats: int) -> str:
    """What a bisect with one run a commit says about its verdicts."""
    if repeats > 1:
        return ""
    return (
        "bisect: one run a commit, so the point rule decides (a value past the threshold is bad, "
        "noise or not); --repeats K (2 or more) decides with a one-sided t test"
    )
