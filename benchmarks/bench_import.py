"""Import benchmarks: a 1,000-commit DVC history, 1,000 DVC experiments, a 10,000-run MLflow store.

Compared in the same run with what the peer tool needs to list the same data:
- `mlci import dvc` over a linear 1,000-commit history vs `dvc exp show -A --json`
  (every commit's params and metrics, DVC's own listing of them);
- `mlci import dvc --exps` over 1,000 experiments (bench_peers.py's dvc-1000 repository)
  vs `dvc exp show --json`;
- `mlci import mlflow mlflow.db` over 10,000 runs (bench_peers.py's store, built by MLflow's
  client) vs MLflow `search_runs` of every run from a fresh process.
Each mlci sample starts from an empty ledger and no cache (the import itself writes the
ledger); both sides are fresh processes.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import common

SEARCH_ALL = r"""
import logging, sys, warnings
logging.disable(logging.WARNING); warnings.filterwarnings("ignore")
import mlflow
mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
print(len(runs))
"""


def build_history(n: int) -> Path:
    """A linear history of `n` commits, each changing params.yaml and metrics.json (fast-import)."""
    import yaml

    path = common.SCRATCH / f"dvc-history-{n}"
    marker = path / ".mlci-bench-history.json"
    if marker.exists() and json.loads(marker.read_text()).get("n") == n:
        return path
    if path.exists():
        shutil.rmtree(path)
    common.git_init(path)
    rng = random.Random(11)
    chunks = []
    files = {
        ".dvc/config": "[core]\n    analytics = false\n",
        "dvc.yaml": "params:\n- params.yaml\nmetrics:\n- metrics.json\n",
    }
    for i in range(n):
        params = yaml.safe_dump(common.params_doc(i, rng), sort_keys=False)
        metrics = json.dumps(common.metrics_doc(rng), indent=2) + "\n"
        body = {"params.yaml": params, "metrics.json": metrics, **(files if i == 0 else {})}
        msg = f"train {i}"
        chunks.append(
            f"commit refs/heads/main\ncommitter bench <bench@localhost> {1_700_000_000 + i} +0000\n"
            f"data {len(msg)}\n{msg}\n"
            + "".join(f"M 100644 inline {name}\ndata {len(text.encode())}\n{text}\n" for name, text in body.items())
            + "\n"
        )
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=path, input="".join(chunks).encode(), check=True, env=common.env()
    )
    common.run(["git", "checkout", "-q", "-f", "main"], path)
    marker.write_text(json.dumps({"n": n}))
    return path


def reset_ledger(path: Path) -> None:
    subprocess.run(["git", "update-ref", "-d", "refs/mlci/ledger"], cwd=path, check=False, env=common.env())
    shutil.rmtree(path / ".git" / "mlci", ignore_errors=True)


def mlci_timer(path: Path, args: list[str]) -> Any:
    def timed() -> float:
        reset_ledger(path)
        return common.time_cmd([common.MLCI, *args], path, rss=True)

    return timed


def count_runs(path: Path) -> int:
    out = common.run([common.MLCI, "sql", "SELECT count(*) AS n FROM runs", "--json"], path)
    return int(json.loads(out)[0]["n"])


def bench(repeats: int, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    dvc = common.peer_tool("dvc")
    py = common.peer_python()
    n_hist = 200 if quick else 1000
    hist = build_history(n_hist)
    variants = {f"mlci import dvc ({n_hist} commits)": mlci_timer(hist, ["import", "dvc"])}
    if dvc:
        variants[f"dvc exp show -A --json ({n_hist} commits)"] = lambda: common.time_cmd(
            [dvc, "exp", "show", "-A", "--json"], hist, rss=True, env=common.env(DVC_NO_ANALYTICS="1")
        )
    samples = common.interleave(variants, repeats, warmup=0)
    results["dvc_history"] = common.summarise(samples, baseline=next(iter(variants)))
    results["dvc_history_runs_imported"] = count_runs(hist)
    common.print_table(f"DVC history, {n_hist} commits", results["dvc_history"])

    exps = common.SCRATCH / "dvc-1000"
    if exps.exists() and not quick:
        variants = {"mlci import dvc --exps (1000 exps)": mlci_timer(exps, ["import", "dvc", "--exps"])}
        if dvc:
            variants["dvc exp show --json (1000 exps)"] = lambda: common.time_cmd(
                [dvc, "exp", "show", "--json"], exps, rss=True, env=common.env(DVC_NO_ANALYTICS="1")
            )
        samples = common.interleave(variants, repeats, warmup=0)
        results["dvc_exps"] = common.summarise(samples, baseline=next(iter(variants)))
        results["dvc_exps_runs_imported"] = count_runs(exps)
        common.print_table("DVC experiments, 1000", results["dvc_exps"])

    n_ml = 1000 if quick else 10000
    db = common.SCRATCH / f"mlflow-{n_ml}" / "mlflow.db"
    if db.exists():
        target = common.fresh_dir(f"import-mlflow-{n_ml}")
        common.git_init(target)
        variants = {f"mlci import mlflow ({n_ml} runs)": mlci_timer(target, ["import", "mlflow", str(db)])}
        if py:
            variants[f"mlflow search_runs, all ({n_ml} runs)"] = lambda: common.time_cmd(
                [py, "-c", SEARCH_ALL, str(db)], target, rss=True
            )
        samples = common.interleave(variants, repeats, warmup=0)
        results["mlflow"] = common.summarise(samples, baseline=next(iter(variants)))
        results["mlflow_runs_imported"] = count_runs(target)
        common.print_table(f"MLflow sqlite store, {n_ml} runs", results["mlflow"])
    else:
        print(f"no MLflow store at {db}: run bench_peers.py first (it builds it with MLflow's client)")
    return results


def main() -> int:
    parser = common.base_args(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per variant (default 3)")
    args = parser.parse_args()
    repeats = args.repeats
    quick = bool(getattr(args, "quick", False))
    results = {"machine": common.machine(), "repeats": repeats, "results": bench(repeats, quick)}
    path = common.write_results("import", results)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
