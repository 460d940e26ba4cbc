"""`mlci bisect`: change points from the ledger over 10,000 commits, and trainings against `git bisect run`.

1. A scratch repository of 10,000 first-parent commits (git fast-import), each with a run in
   the ledger (batch appends) whose `acc` is noise around 0.90 with a drop of 0.02 at commit
   7,000. `mlci bisect acc --json` runs as a fresh process (cache warm), median of
   `--repeats`; the detection alone over the 10,000 values is timed in process. Target: < 1 s.
2. Trainings: ranges of 16, 64 and 256 commits with runs only at the ends and the quality
   dropping at a chosen commit. `mlci bisect acc --good A --bad B` trains the commits its
   search needs (through the sweep machinery, counted by the training script);
   `git bisect start --first-parent B A` + `git bisect run` on the same range trains at
   each step it visits (counted the same way). Target: equal or fewer.

With `--with-gate`, bench_gate_noise.py's fresh `mlci gate` processes (100,000 examples)
are timed in the same interleaved rounds, so both goals are read at one load.

Usage: python benchmarks/bench_bisect.py [--quick] [--repeats N] [--with-gate] [--no-trainings]
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

COMMITS = 10_000
STEP_AT = 7_000
TRAIN = """\
import json, os
with open(os.environ['COUNT_FILE'], 'a') as out:
    out.write(open('n.txt').read().strip() + '\\n')
json.dump({'acc': float(open('quality.txt').read())}, open('metrics.json', 'w'))
"""


def fast_history(path: Path, count: int, files: Any) -> list[str]:
    """`count` commits on main through one git fast-import; `files(i)` -> {path: text} changed at commit i."""
    lines: list[bytes] = []
    for i in range(count):
        msg = f"commit {i}".encode()
        lines += [b"commit refs/heads/main", f"mark :{i + 1}".encode()]
        lines.append(f"committer bench <bench@localhost> {1_700_000_000 + i} +0000".encode())
        lines += [f"data {len(msg)}".encode(), msg]
        if i:
            lines.append(f"from :{i}".encode())
        for name, text in files(i).items():
            data = text.encode()
            lines += [f"M 100644 inline {name}".encode(), f"data {len(data)}".encode(), data]
        lines.append(b"")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=b"\n".join(lines) + b"\n", check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=path, check=True)
    out = subprocess.run(["git", "rev-list", "--reverse", "main"], cwd=path, capture_output=True, check=True)
    return out.stdout.decode().split()


def ledger_repo(quick: bool) -> tuple[Path, list[float]]:
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.cache import LedgerCache
    from mlci_tui.ledger.store import LedgerStore

    path = common.fresh_dir("bisect-ledger") / "repo"
    common.git_init(path)
    shas = fast_history(path, COMMITS, lambda i: {"n.txt": f"{i}\n"})
    rng = random.Random(16)
    values = [round(0.9 - (0.02 if i >= STEP_AT else 0.0) + rng.gauss(0, 0.003), 6) for i in range(COMMITS)]
    store = LedgerStore(Repo.find(path))
    batch = []
    for i, sha in enumerate(shas):
        rec = common.run_record(i, rng, commit=sha)
        rec["metrics"] = {"metrics.json": {"acc": values[i]}}
        batch.append(rec)
        if len(batch) == 5000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    (path / "mlci.yaml").write_text("metrics:\n  fields:\n    acc: {direction: max}\n")
    with LedgerCache(Repo.find(path)).connect():
        pass
    return path, values


def gate_variants() -> dict[str, Any]:
    """The gate benchmark's fresh-process variants (bench_gate_noise.py), to time in the same rounds."""
    import bench_gate_noise as gate

    path = gate.build_repo(100_000)
    return {f"mlci {name} (100,000 examples)": gate.timed_gate(path, v) for name, v in gate.VARIANTS.items()}


def bench_ledger(repeats: int, quick: bool, with_gate: bool = False) -> dict[str, Any]:
    from mlci_tui.ledger.query.changepoints import detect

    path, values = ledger_repo(quick)
    argv = [common.MLCI, "bisect", "acc", "--json"]
    found = json.loads(subprocess.run(argv, cwd=path, capture_output=True, check=True, text=True).stdout)
    assert found and found[0]["rank"] == 1, found
    variants: dict[str, Any] = {
        "mlci bisect acc (10,000 commits, fresh process)": lambda: common.time_cmd(argv, path),
        "python -c pass": lambda: common.time_cmd([common.PYTHON, "-c", "pass"], path),
        "detection alone (in process)": lambda: common.time_call(lambda: detect(values)),
    }
    if with_gate:  # one run, the bisect and the gate alternated: the same load for both
        variants.update(gate_variants())
    samples = common.interleave(variants, repeats)
    rows = common.summarise(samples, baseline="python -c pass")
    common.print_table("bisect from the ledger, 10,000 commits", rows)
    after = subprocess.run(["git", "rev-list", "--reverse", "HEAD"], cwd=path, capture_output=True, text=True)
    shas = after.stdout.split()
    return {
        "timings": rows,
        "change_points": [{k: r[k] for k in ("after", "step", "confidence")} for r in found],
        "found_at_step": found[0]["after"] == shas[STEP_AT],
    }


def train_repo(n: int, culprit: int) -> Path:
    path = common.fresh_dir(f"bisect-train-{n}-{culprit}") / "repo"
    common.git_init(path)
    config = f"train:\n  command: {json.dumps(common.PYTHON + ' train.py')}\n"

    def files(i: int) -> dict[str, str]:
        out = {"n.txt": f"{i}\n"}
        if i == 0:
            out.update(
                {"mlci.yaml": config, "train.py": TRAIN, "quality.txt": "0.95\n", "metrics.json": '{"acc": 0.95}'}
            )
        if i == culprit:
            out["quality.txt"] = "0.8\n"
        if i == n - 1:
            out["metrics.json"] = '{"acc": 0.8}'
        return out

    shas = fast_history(path, n, files)
    common.run([common.MLCI, "capture", shas[0], shas[-1]], path)
    return path


def count(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def bench_trainings(quick: bool) -> list[dict[str, Any]]:
    cases = [(16, 5), (64, 41)] if quick else [(16, 5), (16, 14), (64, 1), (64, 41), (256, 100), (256, 255)]
    rows = []
    for n, culprit in cases:
        path = train_repo(n, culprit)
        shas = common.run(["git", "rev-list", "--reverse", "HEAD"], path).split()
        mlci_count = path.parent / "mlci-count.txt"
        t0 = time.perf_counter()
        out = common.run(
            [common.MLCI, "bisect", "acc", "--good", shas[0], "--bad", shas[-1], "--json"],
            path,
            env=common.env(COUNT_FILE=str(mlci_count)),
        )
        mlci_s = time.perf_counter() - t0
        result = json.loads(out)
        git_count = path.parent / "git-count.txt"
        judge = path.parent / "judge.sh"
        judge.write_text(
            f"#!/bin/sh\nCOUNT_FILE={git_count} {common.PYTHON} train.py || exit 125\n"
            f"{common.PYTHON} -c \"import json,sys; sys.exit(json.load(open('metrics.json'))['acc'] < 0.9)\"\n"
        )
        judge.chmod(0o755)
        common.run(["git", "bisect", "start", "--first-parent", shas[-1], shas[0]], path)
        t0 = time.perf_counter()
        said = common.run(["git", "bisect", "run", str(judge)], path)
        git_s = time.perf_counter() - t0
        common.run(["git", "checkout", "-q", "--", "."], path)  # the last training's metrics.json (scratch repo)
        common.run(["git", "bisect", "reset"], path)
        row = {
            "commits": n,
            "culprit": culprit,
            "mlci_trainings": count(mlci_count),
            "mlci_reported": result["trainings"],
            "git_bisect_trainings": count(git_count),
            "mlci_found": result["culprit"] == shas[culprit],
            "git_found": f"{shas[culprit]} is the first bad commit" in said,
            "mlci_seconds": round(mlci_s, 2),
            "git_seconds": round(git_s, 2),
        }
        print(row)
        rows.append(row)
    return rows


def main() -> None:
    parser = common.base_args(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--with-gate", action="store_true", help="time bench_gate_noise.py's gate variants in the same rounds"
    )
    parser.add_argument("--no-trainings", action="store_true", help="the ledger part only")
    parser.add_argument("--no-ledger", action="store_true", help="the trainings part only")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    data: dict[str, Any] = {"machine": common.machine(), "quick": args.quick, "load_before": list(os.getloadavg())}
    if not args.no_ledger:
        data["ledger"] = bench_ledger(repeats, args.quick, args.with_gate)
    data["load_after"] = list(os.getloadavg())
    if not args.no_trainings:
        data["trainings"] = bench_trainings(args.quick)
    data["cpu_pressure"] = common.cpu_pressure()
    common.write_results("bisect", data)


if __name__ == "__main__":
    main()
