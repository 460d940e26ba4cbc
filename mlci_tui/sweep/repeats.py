"""Repeats in a sweep: each trial's params trained K times, seeds 0..K-1, one group of runs.

The count is the sweep's `repeats:` or `train.repeats.count`, the seed goes through
`train.repeats.seed_param` or `seed_env` (`Config.repeat_settings`, as CI's train step and
bisect read them), all fixed in the spec at create. The K runs of a trial share a commit of
their own: the trial's params written on top of the base commit (no seed), built in the
trial's worktree with fixed author and dates, so every attempt, clone and worker builds the
same commit. Each run's id derives from (`trial`, that commit, the repeat index) as
`record --repeat` does, and the runs are one group for `mlci runs --groups` and the gate
(ledger/query/groups.py: one commit, params equal but the seed). A trial run is never a run
of its base commit, so `gate HEAD` does not pick it. The commit is kept at
`refs/mlci/trials/<sweep id>/<number>`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from mlci_tui.errors import ConfigError
from mlci_tui.gitio import Repo, git

TRIAL_REFS = "refs/mlci/trials/"
SOURCE = "sweep-repeat"  # a repeat run's `source`; `sweep` names the one run whose id derives from its trial


def settings(cfg: Any, data: dict[str, Any], source: str) -> dict[str, Any]:
    """`repeats`, `seed_param`, `seed_env` for the spec: the sweep's `repeats:` else `train.repeats`,
    the seed as `train.repeats` names it; {} for one training per trial."""
    count, seed_param, seed_env = cfg.repeat_settings()
    count = int(data.get("repeats") or count)
    if count <= 1:
        return {}
    if not (seed_param or seed_env):
        raise ConfigError(
            f"{source}: repeats: {count} trainings per trial need a seed: set train.repeats.seed_param "
            "(a params name) or train.repeats.seed_env (an environment variable)"
        )
    if seed_param and seed_param in (data.get("params") or {}):
        raise ConfigError(f"{source}: params.{seed_param}: is the repeats' seed (train.repeats.seed_param)")
    if data.get("pruner"):
        raise ConfigError(
            f"{source}: pruner: not with repeats (each trial is {count} trainings); set repeats: 1 on the sweep to prune"
        )
    return {"repeats": count, "seed_param": seed_param, "seed_env": seed_env}


def count(spec: dict[str, Any]) -> int:
    return int(spec.get("repeats") or 1)


def trial_commit(repo: Repo, worktree: Path, sweep_id: str, number: int, base: str) -> tuple[str, str]:
    """(commit, tree) of the worktree as the trial's params left it, on top of `base`: the same
    bytes wherever it is built (author, committer and dates fixed), kept under a ref."""
    env = {"MLCI_NO_HOOKS": "1", "GIT_INDEX_FILE": str(worktree.with_name(worktree.name + ".index"))}
    hooks = ["-c", "core.hooksPath=/dev/null"]
    try:
        git([*hooks, "read-tree", base], worktree, env=env)
        git([*hooks, "add", "-A", "--", "."], worktree, env=env)
        tree = git(["write-tree"], worktree, env=env).stdout.decode().strip()
    finally:
        Path(env["GIT_INDEX_FILE"]).unlink(missing_ok=True)
    when = git(["show", "-s", "--format=%ct", base], worktree).stdout.decode().strip()
    ident = {
        "GIT_AUTHOR_NAME": "mlci",
        "GIT_AUTHOR_EMAIL": "mlci@localhost",
        "GIT_COMMITTER_NAME": "mlci",
        "GIT_COMMITTER_EMAIL": "mlci@localhost",
        "GIT_AUTHOR_DATE": f"@{when} +0000",
        "GIT_COMMITTER_DATE": f"@{when} +0000",
    }
    message = f"mlci sweep {sweep_id} trial {number}\n".encode()
    sha = git(["commit-tree", tree, "-p", base], worktree, input=message, env=ident).stdout.decode().strip()
    git(["update-ref", f"{TRIAL_REFS}{sweep_id}/{number}", sha], repo.root)
    return sha, tree


def clear_outputs(worktree: Path, patterns: list[str]) -> None:
    """Remove the metrics files the previous repeat wrote, so a repeat that writes none fails
    instead of being captured with its predecessor's values."""
    for pattern in patterns:
        for path in worktree.glob(pattern):
            if path.is_file() and not path.is_symlink():
                os.unlink(path)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """The group's mean (what the strategy is told) and sample standard deviation."""
    from mlci_tui.ledger.query.groups import spread

    mean, sd, _n = spread(values)
    return mean, (sd if math.isfinite(sd) else 0.0)
