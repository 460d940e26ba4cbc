"""The gate's statistics: one-sided non-inferiority tests on a regression, and Holm's correction.

Every test works on the *regression* r (baseline minus candidate for a metric to maximise,
the reverse to minimise) and a margin (the rule's allowance): H0 r >= margin against
H1 r < margin. A rule passes when the upper confidence bound of r is below the margin; `p`
is the one-sided p-value, which orders rules for Holm's step-down. Welch's t, the normal
approximation and McNemar are exact formulas (the t distribution through the regularised
incomplete beta function, no scipy); the bootstraps are vectorised in numpy with a fixed
seed, so `mlci gate` in CI and the report give the same numbers. numpy is the `stats`
extra, imported only when a rule asks for a confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import MlciError

if TYPE_CHECKING:
    import numpy.typing as npt

RESAMPLES = 2000  # bootstrap resamples
SEED = 20240616  # fixed: one answer for the same data, in CI and in the report
NORMAL_FROM = 10_000  # examples from which the paired interval is the normal approximation by default
_CHUNK_CELLS = 1_000_000  # resampled indices drawn at once (8 MB)


def numpy() -> Any:
    """numpy, or an error naming the extra that brings it."""
    try:
        import numpy as np
    except ImportError:
        raise MlciError("a gate rule with a confidence needs numpy: pip install 'mlci-tui[stats]'") from None
    return np


@dataclass(frozen=True)
class Evidence:
    """What one test knows about a regression: its estimate and either a standard error (with the
    t distribution's degrees of freedom; infinite for the normal) or bootstrap draws. The bound is
    drawn at any level from it, so Holm's adjusted levels need no second resampling."""

    test: str  # welch, bootstrap, paired-bootstrap, paired-normal
    estimate: float  # the regression's point estimate (baseline minus candidate, for max)
    margin: float  # the allowance: H0 regression >= margin
    n_base: int
    n_head: int
    se: float = 0.0
    df: float = math.inf
    draws: npt.NDArray[Any] | None = None

    @property
    def p(self) -> float:
        """The one-sided p-value of H0 regression >= margin."""
        if self.draws is not None:
            return float((self.draws >= self.margin).mean())
        if self.se <= 0:
            return 0.0 if self.estimate < self.margin else 1.0
        z = (self.estimate - self.margin) / self.se
        return NormalDist().cdf(z) if math.isinf(self.df) else t_cdf(z, self.df)

    def upper(self, level: float) -> float:
        """The upper confidence bound of the regression at `level`."""
        if self.draws is not None:
            return float(numpy().quantile(self.draws, level))
        if self.se <= 0:
            return self.estimate
        q = NormalDist().inv_cdf(level) if math.isinf(self.df) else t_ppf(level, self.df)
        return self.estimate + q * self.se


# ---------------------------------------------------------------- distributions


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function (df may be fractional: Welch)."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The quantile of Student's t, by bisection on `t_cdf` (monotone; 100 halvings reach float precision)."""
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > q:
        lo *= 2
    while t_cdf(hi, df) < q:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# ---------------------------------------------------------------- tests


def one_sample(values: Sequence[float], reference: float, *, sign: float) -> Evidence:
    """A one-sample t of a group of repeats against a fixed value (bisect's `--bad-if` threshold);
    `sign` as for `welch`: the estimate is how far the mean is past `reference` on the bad side."""
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1))
    return Evidence("one-sample-t", sign * (reference - mean), 0.0, 0, n, se=sd / math.sqrt(n), df=n - 1)


def welch(base: Sequence[float], head: Sequence[float], margin: float, *, sign: float) -> Evidence:
    """Welch's t over two groups of repeats; `sign` is +1 when higher is better (r = base - head), -1 otherwise."""
    nb, nh = len(base), len(head)
    mb, mh = math.fsum(base) / nb, math.fsum(head) / nh
    vb = math.fsum((x - mb) ** 2 for x in base) / (nb - 1)
    vh = math.fsum((x - mh) ** 2 for x in head) / (nh - 1)
    se2 = vb / nb + vh / nh
    df = se2**2 / ((vb / nb) ** 2 / (nb - 1) + (vh / nh) ** 2 / (nh - 1)) if se2 > 0 else math.inf
    return Evidence("welch", sign * (mb - mh), margin, nb, nh, se=math.sqrt(se2), df=df)


def bootstrap(
    base: Sequence[float], head: Sequence[float], margin: float, *, sign: float, resamples: int = RESAMPLES
) -> Evidence:
    """The percentile bootstrap of the difference of two groups' means (each group resampled on its own)."""
    np = numpy()
    rng = np.random.default_rng(SEED)
    b, h = np.asarray(base, dtype=float), np.asarray(head, dtype=float)
    means_b = b[rng.integers(0, len(b), (resamples, len(b)))].mean(axis=1)
    means_h = h[rng.integers(0, len(h), (resamples, len(h)))].mean(axis=1)
    estimate = sign * (float(b.mean()) - float(h.mean()))
    return Evidence("bootstrap", estimate, margin, len(b), len(h), draws=sign * (means_b - means_h))


def paired(
    regressions: npt.NDArray[Any], margin: float, *, method: str = "auto", resamples: int = RESAMPLES
) -> Evidence:
    """The paired test over examples: `regressions[i]` is example i's regression (base score minus
    candidate score, for max). `method`: normal, bootstrap, or auto (normal from NORMAL_FROM examples)."""
    np = numpy()
    d = np.asarray(regressions, dtype=float)
    n = len(d)
    estimate = float(d.mean())
    if method == "auto":
        method = "normal" if n >= NORMAL_FROM else "bootstrap"
    if method == "normal":
        se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        return Evidence("paired-normal", estimate, margin, n, n, se=se)
    return Evidence("paired-bootstrap", estimate, margin, n, n, draws=resampled_means(d, resamples))


def resampled_means(d: npt.NDArray[Any], resamples: int = RESAMPLES) -> npt.NDArray[Any]:
    """The means of `resamples` bootstrap resamples of `d`, vectorised.

    Few distinct values (a 0/1 score gives at most three regressions): each resample is a
    multinomial draw of how often each value comes, O(resamples) instead of
    O(resamples x n), and the same distribution. Otherwise indices are drawn in chunks.
    """
    np = numpy()
    rng = np.random.default_rng(SEED)
    n = len(d)
    values, counts = np.unique(d, return_counts=True)
    if len(values) <= 64:
        draws = rng.multinomial(n, counts / n, size=resamples)
        return np.asarray(draws @ values / n)
    out = np.empty(resamples)
    step = max(1, _CHUNK_CELLS // n)
    # gathered from float32 (half the memory traffic: ~35% less time at 100,000 examples), summed in
    # float64; the rounding (1e-7 of a value) is far below the resampling's own error
    narrow = d.astype(np.float32)
    for start in range(0, resamples, step):  # chunks of about a million indices: they stay in cache
        rows = min(step, resamples - start)
        picked = np.take(narrow, rng.integers(0, n, rows * n)).reshape(rows, n)
        out[start : start + rows] = np.add.reduce(picked, axis=1, dtype=np.float64) / n
    return out


def mcnemar(base_only: int, head_only: int) -> float:
    """McNemar's exact two-sided p-value: `base_only` examples right only in the baseline, `head_only`
    only in the candidate; under H0 each discordant example is a fair coin."""
    n = base_only + head_only
    if n == 0:
        return 1.0
    k = min(base_only, head_only)
    np = numpy()
    j = np.arange(1, k + 1, dtype=float)
    log_choose = np.concatenate(([0.0], np.cumsum(np.log(n - j + 1) - np.log(j))))  # log C(n, 0..k)
    log_terms = log_choose - n * math.log(2)
    top = float(log_terms.max())
    return min(1.0, 2 * math.exp(top) * float(np.exp(log_terms - top).sum()))


def holm_levels(pvalues: Sequence[float], confidence: float) -> list[tuple[int, float]]:
    """Holm's step-down at one confidence level: the tests in the order they are judged (smallest p
    first), each with the confidence its bound is drawn at, 1 - alpha / (m - rank). The first that
    fails stops the procedure: the tests after it fail too, whatever their own bounds."""
    alpha = 1 - confidence
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: (pvalues[i], i))
    return [(i, 1 - alpha / (m - rank)) for rank, i in enumerate(order)]
