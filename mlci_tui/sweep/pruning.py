"""Pruning: a trial that writes step metrics is stopped when it falls behind the others.

While the command runs, the runner calls `Watcher.check` every half second. It reads the
series of the sweep's metric from the trial's worktree in dvclive's layout
(`**/plots/metrics/<metric>.tsv`, read by the capture's own TSV reader), keeps it in
`.git/mlci/queue/<sweep id>/<trial id>.steps` (the evidence later trials are judged
against), and asks Optuna's pruner (`pruner: median` or `hyperband`) whether to stop,
given the curves of the trials that finished before. Optuna is imported only here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from mlci_tui.errors import ConfigError, InputError
from mlci_tui.gitio import Repo
from mlci_tui.sweep import queue

PRUNERS = ("median", "hyperband")
DEFAULT_STARTUP = 2  # finished trials needed before the median pruner stops anyone


def steps_path(repo: Repo, sweep_id: str, tid: str) -> Path:
    return queue.queue_dir(repo, sweep_id) / f"{tid}.steps"


def read_series(worktree: Path, metric: str) -> dict[int, float]:
    """The metric's steps in the worktree's dvclive series ({} when it wrote none yet, or a partial row)."""
    from mlci_tui.capture.readers import Limits, read_table_metrics

    name = metric.rpartition(":")[2]
    rel = name.replace(".", "/") + ".tsv"
    for path in sorted(worktree.glob(f"**/plots/metrics/{rel}")):
        try:
            read = read_table_metrics(path.name, path.read_bytes(), Limits(), series_name=name.rsplit(".", 1)[-1])
        except (OSError, InputError):
            return {}  # being written: read again at the next check
        return {s.step: float(s.value) for s in read.steps}
    return {}


def finished_curves(repo: Repo, sweep_id: str, skip: str) -> list[dict[int, float]]:
    """The curves of this sweep's trials that ended done (`final`), this machine's evidence."""
    out = []
    for path in sorted(queue.queue_dir(repo, sweep_id).glob("*.steps")):
        if path.name == f"{skip}.steps":
            continue
        data = queue.read_lease_data(path) or {}
        if data.get("final") and isinstance(data.get("steps"), dict):
            out.append({int(k): float(v) for k, v in data["steps"].items()})
    return out


def save(path: Path, steps: dict[int, float], *, final: bool = False) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"steps": {str(k): v for k, v in steps.items()}, "final": final}))
    os.replace(tmp, path)


def make_pruner(spec: dict[str, Any]) -> Any:
    import optuna

    kind = spec.get("pruner")
    if kind == "median":
        startup = int(spec.get("prune_after") or DEFAULT_STARTUP)
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise ConfigError(f"pruner {kind!r}: one of {', '.join(PRUNERS)}")


class Watcher:
    """One running trial's pruning check; `last` is the newest (step, value) seen."""

    def __init__(self, repo: Repo, sweep_id: str, tid: str, spec: dict[str, Any], worktree: Path) -> None:
        self.repo, self.sweep_id, self.tid, self.spec, self.worktree = repo, sweep_id, tid, spec, worktree
        self.path = steps_path(repo, sweep_id, tid)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.steps: dict[int, float] = {}
        self.last: tuple[int, float] | None = None

    def check(self) -> str | None:
        """'pruned' when Optuna's pruner says this trial falls behind, else None."""
        steps = read_series(self.worktree, str(self.spec.get("metric") or ""))
        if not steps or steps == self.steps:
            return None
        self.steps = steps
        self.last = max(steps.items())
        save(self.path, steps)
        return "pruned" if self.should_prune() else None

    def should_prune(self) -> bool:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction: Literal["maximize", "minimize"] = (
            "maximize" if self.spec.get("direction", "max") == "max" else "minimize"
        )
        study = optuna.create_study(direction=direction, pruner=make_pruner(self.spec), study_name=self.sweep_id)
        for curve in finished_curves(self.repo, self.sweep_id, self.tid):
            if curve:
                study.add_trial(
                    optuna.trial.create_trial(
                        value=curve[max(curve)],
                        intermediate_values=curve,
                        state=optuna.trial.TrialState.COMPLETE,
                        params={},
                        distributions={},
                    )
                )
        trial = study.ask()
        for step, value in sorted(self.steps.items()):
            trial.report(value, step)
        return bool(trial.should_prune())

    def finish(self, done: bool) -> None:
        """Keep a done trial's curve as evidence for the next ones (final); drop the rest."""
        if done and self.steps:
            save(self.path, self.steps, final=True)
        elif not done:
            self.path.unlink(missing_ok=True)
