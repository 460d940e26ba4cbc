"""A bisect that trains: the loop of probes and its state in `.git/mlci/bisect/` (the verdict on a
commit is `verdict.py`'s).

Everything a bisect knows about a commit is in the ledger (its runs, and its probe sweep's
trials), so the state file holds only what was asked (`Options`) and the probes so far, for
`--resume` and for the report; resuming re-reads the ledger and goes on where it stopped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.bisect import probe, search
from mlci_tui.bisect.verdict import DEFAULT_CONFIDENCE, TESTS, Judgement, Rule, midpoint_rule, point_notice
from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.held import open_cache
from mlci_tui.ledger.query.changepoints import commit_values, range_commits
from mlci_tui.sweep import queue
from mlci_tui.sweep.events import Sweep

BAD_IF = re.compile(r"\s*(?P<name>\S+?)\s*(?P<op><=|>=|<|>)\s*(?P<value>[-+0-9.eE]+|nan|inf)\s*$")

Train = Callable[[queue.QueueState, Sweep], None]  # runs a probe sweep's queued trials to the end (an executor)
Progress = Callable[[str], None]


@dataclass
class Options:
    """What was asked: kept in the state file, so `--resume` asks nothing again."""

    metric: str
    rev: str = "HEAD"
    range: str | None = None
    good: str | None = None
    bad: str | None = None
    bad_if: str | None = None
    repeats: int = 1
    seed_param: str | None = None
    seed_env: str | None = None
    executor: str = "local"
    scheduler: str | None = None
    confidence: float = DEFAULT_CONFIDENCE  # the one-sided level of a verdict on repeats

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Options:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Probe:
    """A commit this bisect trained, or an end it judged: its values and the verdict's test."""

    commit: str
    verdict: str
    values: list[float]
    trained: int  # trainings this bisect ran for it
    test: dict[str, Any] | None = None  # Judgement.doc(): test, n, the move's lower bound, confidence
    unused: list[str] = field(default_factory=list)  # repeats that gave no value, and why (n below K)


@dataclass
class Outcome:
    path: list[str]
    result: search.Result
    probes: list[Probe] = field(default_factory=list)
    threshold: str = ""

    @property
    def trainings(self) -> int:
        return sum(p.trained for p in self.probes)


# ------------------------------------------------------------------ state file
def state_path(repo: Repo) -> Path:
    return repo.state_dir / "bisect" / "state.json"


def save_state(repo: Repo, options: Options, probes: list[Probe], result: search.Result | None) -> None:
    """Written whole by rename: a killed bisect leaves the previous state, never half of one."""
    path = state_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "options": asdict(options),
        "probes": [asdict(p) for p in probes],
        "result": asdict(result) if result else None,
        "time": records.now_iso(),
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_options(repo: Repo) -> Options:
    path = state_path(repo)
    try:
        data = json.loads(path.read_text())
        return Options.from_json(data["options"])
    except FileNotFoundError:
        raise InputError("no bisect to resume (start one: mlci bisect METRIC --good REV --bad REV)") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a bisect state file (start the bisect again)") from None


# ------------------------------------------------------------------ the verdict
def parse_bad_if(text: str, metric: str) -> tuple[str, float]:
    """`acc < 0.9` -> ("<", 0.9); the name must be the bisected metric."""
    match = BAD_IF.match(text)
    if not match:
        raise InputError(f'--bad-if {text!r}: expected METRIC < | <= | > | >= NUMBER, e.g. "{metric} < 0.9"')
    if match["name"] != metric:
        raise InputError(f"--bad-if {text!r}: names {match['name']!r}, not the bisected metric {metric!r}")
    try:
        return match["op"], float(match["value"])
    except ValueError:
        raise InputError(f"--bad-if {text!r}: {match['value']!r} is not a number") from None


# ------------------------------------------------------------------ the loop
class Bisect:
    """One bisect over a path: what the ledger knows, and training what it does not."""

    def __init__(self, repo: Repo, options: Options, train: Train, progress: Progress) -> None:
        self.repo, self.options, self.train, self.progress = repo, options, train, progress
        self.head = config_mod.load(repo.root)
        self.training = probe.Training(
            options.metric,
            self.head.direction(options.metric) or "max",
            options.repeats,
            options.seed_param,
            options.seed_env,
        )
        self.path = self.build_path()
        self.state = queue.QueueState(repo)
        self.values: dict[str, list[float]] = {}
        self.probes: list[Probe] = []
        self.rule: Rule | None = None

    def build_path(self) -> list[str]:
        """Oldest first: the good end (when named), then the first-parent commits up to the bad end."""
        o = self.options
        if o.good or o.bad:
            good = self._commit(o.good, "--good") if o.good else None
            bad = self._commit(o.bad or o.rev, "--bad")
            path = range_commits(self.repo, range_=f"{good}..{bad}") if good else range_commits(self.repo, bad)
            return ([good] if good else []) + path
        if o.range:
            start = o.range.split("..", 1)[0]
            path = range_commits(self.repo, range_=o.range)
            return ([self._commit(start, "--range")] if start else []) + path
        return range_commits(self.repo, o.rev)

    def _commit(self, rev: str, what: str) -> str:
        sha = self.repo.commit_of(rev)
        if sha is None:
            raise InputError(f"{what} {rev}: not a commit of this repository")
        return sha

    def refresh_values(self) -> None:
        with open_cache(self.repo) as con:
            self.values = commit_values(con, self.path, self.options.metric)

    def enough(self, commit: str) -> bool:
        """Whether the commit's values are all a verdict gets: one is enough without repeats; with
        them, two or more, or a probe trained as often as asked (some repeats may have failed)."""
        values = self.values.get(commit)
        if not values:
            return False
        if self.options.repeats < 2 or len(values) > 1:
            return True
        sweep = self.state.sweeps.get(probe.probe_sweep_id(commit))
        settled = probe.probe_state(sweep) in (probe.DONE, probe.FAILED)
        return sweep is not None and settled and len(sweep.trials) >= self.options.repeats

    def judge(self, commit: str) -> Judgement:
        assert self.rule is not None
        return self.rule.judge(self.values[commit])

    def verdicts(self) -> dict[str, str]:
        """What is known of the path: a verdict where the values are enough, skip where a probe failed."""
        out: dict[str, str] = {}
        for commit in self.path:
            if self.enough(commit):
                out[commit] = self.judge(commit).verdict
            elif commit not in self.values:
                sweep = self.state.sweeps.get(probe.probe_sweep_id(commit))
                if probe.probe_state(sweep) == probe.FAILED:
                    out[commit] = search.SKIP
        return out

    def ensure(self, commit: str) -> list[float] | None:
        """The commit's values, training it first when the ledger has too few (none, or one when
        repeats are asked for); None when it has none and failed to train."""
        if self.enough(commit):
            return self.values[commit]
        sweep = self.state.sweeps.get(probe.probe_sweep_id(commit))
        if probe.probe_state(sweep) == probe.FAILED:
            return self.values.get(commit)
        sweep = probe.queue_probe(self.repo, self.state, commit, self.training, self.head)
        before = _finished(sweep)
        self.progress(f"bisect: training {commit[:10]} ({self.path.index(commit) + 1} of {len(self.path)})")
        self.train(self.state, sweep)
        self.state.refresh()
        sweep = self.state.sweeps[sweep.sweep_id]
        self.refresh_values()
        trained = _finished(sweep) - before
        values = self.values.get(commit)
        unused = _unused(sweep)
        self.probes.append(Probe(commit, search.SKIP, values or [], trained))
        said = "failed to train: skipped"
        if values:
            said = f"{_mean(values):.6g} (n {len(values)})"
            if unused:
                said += f"; {len(unused)} repeat(s) gave no value: {'; '.join(unused)}"
            if self.rule is not None:
                judged = self.rule.judge(values)
                said += f": {judged.verdict} ({TESTS[judged.test]}, {judged.interval()})"
        self.progress(f"bisect: {commit[:10]} {said}")
        return values

    def judged_probes(self) -> list[Probe]:
        """Every probe and end (and, at the end, the last good and first bad commit), in path
        order, with its verdict and test under the rule."""
        for p in self.probes:
            if p.values and self.rule is not None:
                judged = self.rule.judge(p.values)
                p.verdict, p.test = judged.verdict, judged.doc()
            sweep = self.state.sweeps.get(probe.probe_sweep_id(p.commit))
            p.unused = _unused(sweep) if sweep is not None else []  # trained now or by an earlier bisect
        order = {c: i for i, c in enumerate(self.path)}
        return sorted(self.probes, key=lambda p: order.get(p.commit, -1))

    def run(self) -> Outcome:
        if len(self.path) < 2:
            raise InputError("the range holds fewer than two commits: nothing to bisect")
        self.refresh_values()
        o = self.options
        hi = len(self.path) - 1
        lo = 0
        if o.bad_if:
            self.rule = Rule(*parse_bad_if(o.bad_if, o.metric), o.confidence)
            if not o.good and not o.range:  # the newest commit the ledger knows good, else the oldest
                known = [i for i in range(hi) if self.path[i] in self.values]
                good = [i for i in known if self.judge(self.path[i]).verdict == search.GOOD]
                lo = good[-1] if good else 0
        notice = point_notice(o.repeats)
        if notice:
            self.progress(notice)
        for end, name in ((lo, "good"), (hi, "bad")):
            if self.ensure(self.path[end]) is None:
                raise CheckFailed(f"the {name} end {self.path[end][:10]} failed to train: choose another")
        if self.rule is None:
            good_values, bad_values = self.values[self.path[lo]], self.values[self.path[hi]]
            self.rule = midpoint_rule(good_values, bad_values, o.confidence, repeats=o.repeats > 1)
        for end, name in ((lo, search.GOOD), (hi, search.BAD)):
            commit = self.path[end]
            if commit not in {p.commit for p in self.probes}:
                self.probes.append(Probe(commit, name, self.values[commit], 0))
            got = self.judge(commit)
            if got.verdict != name:
                raise CheckFailed(
                    f"the {name} end {commit[:10]} is {got.verdict} by the rule "
                    f"({self.rule.text(o.metric)}; its {o.metric} is {_mean(self.values[commit]):.6g}, "
                    f"n {got.n}, {TESTS[got.test]}: {got.interval()})"
                )
        while True:
            verdicts = self.verdicts()
            interval = search.narrow(self.path, verdicts, lo, hi)
            nxt = search.next_probe(self.path, verdicts, interval)
            if nxt is None:
                found = search.result(self.path, verdicts, interval)
                listed = {p.commit for p in self.probes}
                for decided in (found.good, found.culprit):  # the verdicts that decided, trained now or not
                    if decided and decided not in listed and decided in self.values:
                        self.probes.append(Probe(decided, verdicts.get(decided, ""), self.values[decided], 0))
                probes = self.judged_probes()
                save_state(self.repo, o, probes, found)
                return Outcome(self.path, found, probes, self.rule.text(o.metric))
            save_state(self.repo, o, self.judged_probes(), None)
            self.ensure(nxt)


def _unused(sweep: Sweep) -> list[str]:
    """The probe's finished trials that gave no value, each with its reason: why n is below
    the repeats asked for (a failed training, a run without the metric)."""
    out = []
    for trial in sweep.ordered():
        if trial.state == "failed" or (trial.state == "done" and trial.value is None):
            why = trial.reason or (f"exit {trial.exit_code}" if trial.exit_code is not None else trial.state)
            out.append(f"trial {trial.number}: {why}")
    return out


def _finished(sweep: Sweep) -> int:
    return sum(1 for t in sweep.trials.values() if t.state in ("done", "failed"))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
