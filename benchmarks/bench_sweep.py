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

`--scale` measures what issue 20 asks instead: per-trial overhead at -j 2 on the local
executor and on Dask (a scheduler and two workers as separate processes, started once,
untimed) against a bare loop running the same commands two at a time; and the time
until 30 CI-style trial jobs started at once (each a depth-1 clone running `mlci sweep
work`) plus the collect job have every result in a bare upstream's ledger.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dask_cluster(workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler and `workers` single-threaded workers, each its own process (as on real machines)."""
    dask = str(Path(common.PYTHON).with_name("dask"))
    port = _free_port()
    env = common.env(DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen([dask, "scheduler", "--port", str(port), "--no-dashboard"], **quiet)]  # type: ignore[call-overload]
    address = f"tcp://127.0.0.1:{port}"
    time.sleep(3)
    for _ in range(workers):
        procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"], **quiet))  # type: ignore[call-overload]
    time.sleep(4)
    return address, procs


def scale(trials: int, rounds: int) -> int:
    mlci_t, _ = template(trials, None)
    address, cluster = dask_cluster(2)

    def bare() -> float:
        work = copy(mlci_t, "cmd")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _i: subprocess.run([common.PYTHON, "train.py"], cwd=work, check=True), range(trials)))
        return time.perf_counter() - t0

    def sweep(*extra: str) -> float:
        work = copy(mlci_t, "mlci")
        t0 = time.perf_counter()
        common.run([common.MLCI, "sweep", "create", "s"], work)
        common.run([common.MLCI, "sweep", "start", "s", "-j", "2", *extra], work)
        elapsed = time.perf_counter() - t0
        done = common.run([common.MLCI, "sweep", "status", "s", "--csv"], work).count(",done,")
        if done != trials:
            raise RuntimeError(f"{done} of {trials} trials done")
        return elapsed

    try:
        variants = {
            "command alone, 2 at a time": bare,
            "mlci local -j 2": sweep,
            "mlci dask -j 2 (scheduler + 2 workers)": lambda: sweep("--executor", "dask", "--scheduler", address),
        }
        samples = common.interleave(variants, rounds, warmup=1)
    finally:
        for proc in reversed(cluster):
            proc.terminate()
            proc.wait()
    stats = common.summarise(samples, baseline="command alone, 2 at a time")
    common.print_table(f"{trials} trials, 2 at a time, total wall time", stats)
    cmd = stats["command alone, 2 at a time"]["median"]
    overhead = {k: (v["median"] - cmd) / trials for k, v in stats.items() if k.startswith("mlci")}
    print(f"\n## per-trial overhead at {trials} trials, -j 2: (median total - bare loop) / trials")
    for name, value in overhead.items():
        print(f"  {name:<42} {common.fmt_s(value)}")
    contention = ci_contention(30)
    print(f"\n## 30 concurrent CI trial jobs: every result in the upstream ledger after {contention['seconds']:.1f} s")
    print(
        f"  landed by the job's own ledger push: {contention['direct']}, folded by collect: {contention['collected']}"
    )
    common.write_results(
        "sweep_scale",
        {
            "machine": common.machine(),
            "trials": trials,
            "rounds": rounds,
            "stats": stats,
            "per_trial_overhead_s": overhead,
            "ci_30_jobs": contention,
        },
    )
    return 0


def ci_contention(jobs: int) -> dict[str, Any]:
    """`jobs` trial jobs at once, each a depth-1 clone of a bare upstream (clones untimed), then collect."""
    base = common.fresh_dir("sweep-ci")
    upstream = base / "upstream.git"
    common.run(["git", "init", "-q", "--bare", "-b", "main", str(upstream)], base)
    dev = base / "dev"
    common.run(["git", "clone", "-q", str(upstream), str(dev)], base)
    (dev / "train.py").write_text(TRAIN)
    (dev / "params.yaml").write_text("lr: 0\n")
    (dev / ".gitignore").write_text("metrics.json\n")
    (dev / "mlci.yaml").write_text(
        f"train:\n  command: python train.py\nsweeps:\n  ci:\n    params:\n      lr: {{range: [1, {jobs + 1}, 1]}}\n    metric: acc\n"
    )
    common.run(["git", "add", "-A"], dev)
    common.run(["git", "commit", "-q", "-m", "init"], dev)
    common.run(["git", "push", "-q", "origin", "main"], dev)
    common.run([common.MLCI, "sweep", "create", "ci"], dev)
    common.run([common.MLCI, "ledger", "push"], dev)
    import json

    trials = [j["trial"] for j in json.loads(common.run([common.MLCI, "sweep", "matrix", "ci"], dev))["include"]]
    clones = []
    for i in range(len(trials)):
        clone = base / f"job-{i}"
        common.run(["git", "clone", "-q", "--depth", "1", f"file://{upstream}", str(clone)], base)
        clones.append(clone)
    env = common.env(MLCI_NO_HOOKS="1")
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [common.MLCI, "sweep", "work", "--trial", tid],
            cwd=c,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for c, tid in zip(clones, trials)
    ]
    codes = [p.wait() for p in procs]
    incoming = common.run(["git", "for-each-ref", "--format=%(refname)", "refs/mlci/incoming/"], upstream).split()
    collector = base / "collect"
    common.run(["git", "clone", "-q", "--depth", "1", f"file://{upstream}", str(collector)], base)
    common.run([common.MLCI, "sweep", "collect", "ci"], collector, env=env)
    seconds = time.perf_counter() - t0
    common.run([common.MLCI, "ledger", "pull"], dev)
    done = common.run([common.MLCI, "sweep", "status", "ci", "--csv"], dev).count(",done,")
    if done != jobs or any(codes):
        raise RuntimeError(f"{done} of {jobs} done, exit codes {codes}")
    return {"jobs": jobs, "seconds": seconds, "direct": jobs - len(incoming), "collected": len(incoming)}


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--scale", action="store_true", help="issue 20: -j 2 local and Dask, 30 CI jobs")
    args = parser.parse_args()
    if args.scale:
        return scale(args.trials or (6 if args.quick else 20), args.rounds or (1 if args.quick else 3))
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
