"""The search of `mlci bisect`, git-bisect style, over a first-parent path: no I/O here.

The path runs oldest to newest; `verdicts` holds what is known of its commits (good, bad,
skip). The culprit is the first bad commit after the last good one. Known verdicts narrow
the interval first, so a commit the ledger already judged is never trained; then the
untested commit nearest the middle is probed, and a skipped commit (it failed to train)
makes the search take the next nearest, as `git bisect skip` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

GOOD, BAD, SKIP = "good", "bad", "skip"


@dataclass(frozen=True)
class Interval:
    lo: int  # index of the last good commit
    hi: int  # index of the first bad commit after it


@dataclass
class Result:
    culprit: str | None  # the first bad commit, when the skips leave no doubt
    candidates: list[str] = field(default_factory=list)  # the culprit is one of these (skips in the way)
    good: str | None = None  # the last good commit before it
    skipped: list[str] = field(default_factory=list)  # commits that failed to train, anywhere in the path


def narrow(path: Sequence[str], verdicts: Mapping[str, str], lo: int, hi: int) -> Interval:
    """The tightest (good, bad) pair the known verdicts give inside [lo, hi]."""
    for i in range(lo + 1, hi):
        if verdicts.get(path[i]) == BAD:
            hi = i
            break
    for i in range(hi - 1, lo, -1):
        if verdicts.get(path[i]) == GOOD:
            lo = i
            break
    return Interval(lo, hi)


def next_probe(path: Sequence[str], verdicts: Mapping[str, str], interval: Interval) -> str | None:
    """The commit to train next: the untested one nearest the middle; None when the search is over."""
    lo, hi = interval.lo, interval.hi
    open_ = [i for i in range(lo + 1, hi) if path[i] not in verdicts]
    if not open_:
        return None
    middle = (lo + hi) / 2
    return path[min(open_, key=lambda i: (abs(i - middle), i))]


def result(path: Sequence[str], verdicts: Mapping[str, str], interval: Interval) -> Result:
    """What the search found once `next_probe` has nothing left to train."""
    inside = path[interval.lo + 1 : interval.hi + 1]
    skipped_inside = [c for c in inside if verdicts.get(c) == SKIP]
    skipped = [c for c in path if verdicts.get(c) == SKIP]
    good = path[interval.lo]
    if skipped_inside:
        return Result(None, [*skipped_inside, path[interval.hi]], good, skipped)
    return Result(path[interval.hi], [path[interval.hi]], good, skipped)
