"""Per-trial overhead of a sweep: mlci against DVC's experiment queue, in the same run.

One project, a trivial training command (`python train.py` writing metrics.json from
params.yaml), N trials over one param, one worker (-j 1), fresh copy of the project for
every round (copying is untimed):

  - the command alone, N times (what any tool must spend);
  - mlci: `mlci sweep create` + `mlci sweep start -j 1` (queue in the ledger, a git worktree
    per trial, params written, metrics captured into a trial run, worktree removed);
  - DVC: N × `dvc exp run --queue -S lr=...` + `dvc queue start -j 1`, waited for until
    every experiment ref exists (polled with `git for-each-ref`, 0.2 s), then the worker is
    stopped (untimed).

Per-trial overhead = (tool's wall time − N × command time) / N. mlci also runs 4N trials,
which splits its cost into a fixed part (create + start: interpreter, DuckDB cache) and a
marginal part per trial. Rounds are interleaved.

Usage: python benchmarks/bench_sweep.py [--quick] [--trials N] [--rounds R]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TRAIN = "import json, yaml\np = yaml.safe_load(open('params.yaml'))\njson.dump({'acc': p['lr'] * 2}, open('metrics.json', 'w'))\n"
DVC_YAML = "stages:\n  train:\n    cmd: python train.py\n    params:\n      - lr\n    metrics:\n      - metrics.json:\n          cache: false\n"


def template(trials: int, dvc: str | None) -> tuple[Path, Path | None]:
    base = common.fresh_dir("sweep")
    mlci_t = common.git_init(base / "mlci-template")
    values = ", ".join(str(v) for v in range(1, trials + 1))
    many = ", ".join(str(v) for v in range(1, 4 * trials + 1))
    (mlci_t / "train.py").write_text(TRAIN)
    (mlci_t / "params.yaml").write_text("lr: 0  # learning rate\n")
    (mlci_t / ".gitignore").write_text("metrics.json\n")
    (mlci_t / "mlci.yaml").write_text(
        f"train:\n  command: python train.py\nsweeps:\n  s:\n    params:\n      lr: [{values}]\n    metric: acc\n"
        f"  s4:\n    params:\n      lr: [{many}]\n    metric: acc\n"
    )
    common.run(["git", "add", "-A"], mlci_t)
    common.run(["git", "commit", "-q", "-m", "init"], mlci_t)
    dvc_t = None
    if dvc:
        dvc_t = common.git_init(base / "dvc-template")
        common.run([dvc, "init", "-q"], dvc_t, env=dvc_env(dvc))
        (dvc_t / "train.py").write_text(TRAIN)
        (dvc_t / "params.yaml").write_text("lr: 0  # learning rate\n")
        (dvc_t / ".gitignore").write_text("metrics.json\n")
        (dvc_t / "dvc.yaml").write_text(DVC_YAML)
        common.run(["git", "add", "-A"], dvc_t)
        common.run(["git", "commit", "-q", "-m", "init"], dvc_t)
    return mlci_t, dvc_t


def dvc_env(dvc: str) -> dict[str, str]:
    # DVC's queue worker runs `dvc` from PATH
    env = common.env()
    env["PATH"] = f"{Path(dvc).parent}{os.pathsep}{env['PATH']}"
    return env


def copy(src: Path, name: str) -> Path:
    dst = src.parent / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


class Rounds:
    def __init__(self, mlci_t: Path, dvc_t: Path | None, dvc: str | None, trials: int) -> None:
        self.mlci_t, self.dvc_t, self.dvc, self.trials = mlci_t, dvc_t, dvc, trials
        self.n = 0

    def command(self) -> float:
        work = copy(self.mlci_t, "cmd")
        t0 = time.perf_counter()
        for _ in range(self.trials):
            subprocess.run([common.PYTHON, "train.py"], cwd=work, env=common.env(), check=True)
        return time.perf_counter() - t0

    def mlci(self, name: str = "s", count: int | None = None) -> float:
        count = count or self.trials
        work = copy(self.mlci_t, "mlci")
        t0 = time.perf_counter()
        common.run([common.MLCI, "sweep", "create", name], work)
        common.run([common.MLCI, "sweep", "start", name, "-j", "1"], work)
        elapsed = time.perf_counter() - t0
        out = common.run([common.MLCI, "sweep", "status", name, "--csv"], work)
        done = out.count(",done,")
        if done != count:
            raise RuntimeError(f"mlci: {done} of {count} trials done:\n{out}")
        return elapsed

    def mlci_many(self) -> float:
        return self.mlci("s4", 4 * self.trials)

    def dvc_queue(self) -> float:
        assert self.dvc and self.dvc_t
        work = copy(self.dvc_t, "dvc")
        env = dvc_env(self.dvc)
        t0 = time.perf_counter()
        for v in range(1, self.trials + 1):
            common.run([self.dvc, "exp", "run", "--queue", "-q", "-S", f"lr={v}"], work, env=env)
        common.run([self.dvc, "queue", "start", "-j", "1", "-q"], work, env=env)
        deadline = time.monotonic() + 120 * self.trials
        while time.monotonic() < deadline:
            refs = common.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], work).split()
            if len([r for r in refs if not r.endswith(("/celery", "/exec")) and "/exps/" in r]) >= self.trials:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("dvc queue did not finish")
        elapsed = time.perf_counter() - t0
        subprocess.run([self.dvc, "queue", "stop", "--kill", "-q"], cwd=work, env=env, check=False)
        subprocess.run([self.dvc, "queue", "stop", "-q"], cwd=work, env=env, check=False)
        return elapsed


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    trials = args.trials or (3 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    dvc = common.peer_tool("dvc")
    mlci_t, dvc_t = template(trials, dvc)
    r = Rounds(mlci_t, dvc_t, dvc, trials)
    variants = {"command alone": r.command, "mlci sweep": r.mlci, f"mlci sweep, {4 * trials} trials": r.mlci_many}
    if dvc:
        variants["dvc exp run --queue + queue start"] = r.dvc_queue
    samples = common.interleave(variants, rounds, warmup=1 if not args.quick else 0)
    stats = common.summarise(samples, baseline="command alone")
    common.print_table(f"{trials} trials, -j 1, total wall time", stats)
    cmd = stats["command alone"]["median"]
    overhead: dict[str, Any] = {}
    for name, s in stats.items():
        if name in ("mlci sweep", "dvc exp run --queue + queue start") and s.get("n"):
            overhead[name] = (s["median"] - cmd) / trials
    many = stats.get(f"mlci sweep, {4 * trials} trials", {})
    if many.get("n") and stats["mlci sweep"].get("n"):
        # what one more trial costs once the sweep runs: create and start paid once
        overhead["mlci sweep, marginal trial"] = (many["median"] - stats["mlci sweep"]["median"]) / (
            3 * trials
        ) - cmd / trials
        overhead["mlci sweep, fixed (create + start)"] = stats["mlci sweep"]["median"] - trials * (
            cmd / trials + overhead["mlci sweep, marginal trial"]
        )
    print(f"\n## per-trial overhead at {trials} trials: (median total − command alone) / trials")
    for name, value in overhead.items():
        print(f"  {name:<36} {common.fmt_s(value)}")
    mlci_o = overhead.get("mlci sweep")
    dvc_o = overhead.get("dvc exp run --queue + queue start")
    if mlci_o and dvc_o:
        print(f"  DVC / mlci: x{dvc_o / mlci_o:.1f}")
    common.write_results(
        "sweep",
        {
            "quick": args.quick,
            "machine": common.machine(),
            "trials": trials,
            "rounds": rounds,
            "stats": stats,
            "per_trial_overhead_s": overhead,
            "dvc_over_mlci": (dvc_o / mlci_o) if (mlci_o and dvc_o) else None,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
