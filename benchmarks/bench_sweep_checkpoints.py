"""Issue 20: what checkpoints uploaded while a trial runs cost.

1. One snapshot: `trial_files.store_checkpoint` of a folder (hash, copy into the data cache,
   upload to a file:// data remote, name it the trial's latest) against a bare copy of the
   same folder to the same disk (`shutil.copytree`, the floor of any upload), interleaved.
2. Per trial: `mlci sweep start -j 1` of trivial trials in a repository with a data remote,
   this checkout against an older one given by `--old DIR` (a `git archive` of an earlier
   commit's `mlci_tui/`), interleaved; wall and the CPU of the process tree.
3. Repeats (issue 16): 4 trials x `repeats: 3` against 12 plain trials (the same 12
   trainings), `-j 1`, interleaved.

Prints JSON. Usage: python benchmarks/bench_sweep_checkpoints.py --old /tmp/old [--mb 256]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "import json\njson.dump({'acc': 0.5}, open('metrics.json', 'w'))\n"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def project(root: Path, store: Path, trials: int) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    lrs = ", ".join(str(i) for i in range(trials))
    (root / "train.py").write_text(TRAIN)
    (root / "params.yaml").write_text("lr: 0.5\n")
    (root / ".gitignore").write_text("metrics.json\n")
    (root / "mlci.yaml").write_text(
        "train:\n  command: python train.py\n"
        f"sweeps:\n  s:\n    params:\n      lr: [{lrs}]\n    push: false\n"
        f"data:\n  remotes:\n    store: {{url: 'file://{store}'}}\n"
    )
    git(root, "add", "-A")
    git(root, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "p", "--no-verify")


def snapshot(work: Path, mb: int, rounds: int) -> dict[str, object]:
    from mlci_tui.gitio import Repo
    from mlci_tui.sweep.trial_files import store_checkpoint

    store = work / "store"
    repo_dir = work / "snap"
    project(repo_dir, store, 1)
    folder = repo_dir / ".git" / "mlci" / "checkpoints" / "t"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"part-{i}.bin").write_bytes(os.urandom(mb * 1024 * 1024 // 4))
    repo = Repo.find(repo_dir)
    out: dict[str, list[tuple[float, float]]] = {"copytree": [], "store_checkpoint": []}
    for n in range(rounds + 1):
        for name in ("copytree", "store_checkpoint"):
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(repo_dir / ".mlci" / "cache", ignore_errors=True)
            shutil.rmtree(work / "copy", ignore_errors=True)
            wall, cpu = time.perf_counter(), time.process_time()
            if name == "copytree":
                shutil.copytree(folder, work / "copy")
            else:
                link, _added = store_checkpoint(repo, folder, "t" * 26)
                assert "checkpoint" in link and "checkpoint_error" not in link, link
            if n:  # the first round warms the page cache and the imports
                out[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {k: {"wall": [w for w, _ in v], "cpu": [c for _, c in v]} for k, v in out.items()} | {"mb": mb}


def per_trial(work: Path, old: Path, trials: int, rounds: int) -> dict[str, object]:
    out: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    for n in range(rounds + 1):
        for name, path in (("old", old), ("new", ROOT)):
            root = work / f"trial-{name}-{n}"
            project(root, work / f"store-{name}-{n}", trials)
            env = {**os.environ, "PYTHONPATH": str(path), "MLCI_NO_HOOKS": "1"}
            subprocess.run(
                [sys.executable, "-m", "mlci_tui", "sweep", "create", "s"],
                cwd=root,
                env=env,
                check=True,
                capture_output=True,
            )
            wall, cpu = time.perf_counter(), children_cpu()
            subprocess.run(
                [sys.executable, "-m", "mlci_tui", "sweep", "start", "s", "-j", "1"],
                cwd=root,
                env=env,
                check=True,
                capture_output=True,
            )
            if n:
                out[name].append((time.perf_counter() - wall, children_cpu() - cpu))
    return {k: {"wall": [w for w, _ in v], "cpu": [c for _, c in v]} for k, v in out.items()} | {"trials": trials}


def repeats_cost(work: Path, rounds: int) -> dict[str, object]:
    out: dict[str, list[tuple[float, float]]] = {"12 trials": [], "4 trials x 3 repeats": []}
    for n in range(rounds + 1):
        for name in out:
            root = work / f"rep-{n}-{name.split()[0]}"
            project(root, work / "rep-store", 12 if name == "12 trials" else 4)
            if name != "12 trials":
                text = (
                    (root / "mlci.yaml").read_text().replace("    push: false\n", "    push: false\n    repeats: 3\n")
                )
                text = text.replace(
                    "  command: python train.py\n", "  command: python train.py\n  repeats: {seed_param: seed}\n"
                )
                (root / "mlci.yaml").write_text(text)
                git(root, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qam", "r", "--no-verify")
            env = {**os.environ, "MLCI_NO_HOOKS": "1"}
            mlci = [sys.executable, "-m", "mlci_tui", "sweep"]
            subprocess.run([*mlci, "create", "s"], cwd=root, env=env, check=True, capture_output=True)
            wall, cpu = time.perf_counter(), children_cpu()
            subprocess.run([*mlci, "start", "s", "-j", "1"], cwd=root, env=env, check=True, capture_output=True)
            if n:
                out[name].append((time.perf_counter() - wall, children_cpu() - cpu))
    return {k: {"wall": [w for w, _ in v], "cpu": [c for _, c in v]} for k, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, required=True, help="a directory holding an older mlci_tui/")
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("snapshot", "per_trial", "repeats"), help="one part only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlci-bench-ckpt-") as tmp:
        work = Path(tmp)
        parts = {
            "snapshot": lambda: snapshot(work, args.mb, args.rounds),
            "per_trial": lambda: per_trial(work, args.old, args.trials, args.rounds),
            "repeats": lambda: repeats_cost(work, args.rounds),
        }
        result: dict[str, object] = {"load_before": os.getloadavg()}
        for part, measure in parts.items():
            if args.only in (None, part):
                result[part] = measure()
        result["load_after"] = os.getloadavg()
    for part in parts:
        for runs in result.get(part, {}).values():  # type: ignore[attr-defined]
            if isinstance(runs, dict):
                runs["median_wall"] = statistics.median(runs["wall"])
                runs["median_cpu"] = statistics.median(runs["cpu"])
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
