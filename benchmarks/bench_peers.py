"""Figure 4: mlci against its peers, side by side in one run.

MLflow `search_runs` (filter `metrics.acc > 0.9`, order by `metrics.acc DESC`) over sqlite
stores of 1,000 and 10,000 runs, each run logged through MLflow's own client API
(create_run + log_batch of 10 params and 10 metrics + set_terminated; built once, reused).
Timed in-process (a worker process kept alive; the first search excluded) and as a fresh
process; the top 20 and every match. mlci answers the same question over ledgers of the
same size: `LedgerCache.connect()` + SQL in-process, and `mlci runs` from a fresh process.

DVC `dvc exp show --json` over N experiments of one baseline commit (N = 100 and 1,000).
`dvc exp run` costs ~1.8 s per trivial experiment and `dvc exp save` ~2.5 s here, so only the
first few experiments are made with `dvc exp save`; the rest are written with
`git fast-import` in exactly the shape `dvc exp save` writes (a commit whose parent is the
baseline, whose tree is the saved experiment's tree with new params.yaml and metrics.json,
message `dvc: commit experiment <hash>`, under `refs/exps/<base[:2]>/<base[2:]>/<name>`).
Before timing, `dvc exp show --json` must list all N with their params and metrics.
Warm: DVC's experiment cache (.dvc/tmp/exps/cache) populated. Cold: that cache deleted, and a
fresh clone that fetched `refs/exps/*` (DVC's site cache is keyed by the clone's path, so a
new clone starts with nothing). mlci: the same N runs in its ledger; `mlci runs --json`
(every run, params and metrics) warm, with the cache deleted, and in a fresh clone that
fetched `refs/mlci/ledger`.

The fresh-clone listing (issue 19) is timed `--cold-rounds` times (default 5), DVC and mlci
alternated in each round (order shuffled per round); beside each median: the CPU time of the
process tree, the ratio of the medians and the median of the per-round ratios (DVC's run over
mlci's run of the same round), and the load average at the start and end of each size. mlci's
fresh clone has no cache: `mlci runs --json` renders the listing from the ledger's run records
without DuckDB (`ledger/query/listing.py` `listed_from_records`); `--limit 0` (same output,
never memoised) is the query, which builds the cache first: what every fresh clone paid before.

Usage: python benchmarks/bench_peers.py [--quick] [--skip-mlflow] [--skip-dvc] [--sizes 100,1000]
       [--cold-rounds 5] [--results NAME]
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

RUNS_TOP = ["runs", "--where", "metrics['acc'] > 0.9", "--sort", "-acc", "--limit", "20"]
RUNS_ALL = ["runs", "--where", "metrics['acc'] > 0.9", "--sort", "-acc", "--json"]
SQL_TOP = "SELECT * FROM runs WHERE metrics['acc'] > 0.9 ORDER BY metrics['acc'] DESC LIMIT 20"
SQL_ALL = "SELECT * FROM runs WHERE metrics['acc'] > 0.9 ORDER BY metrics['acc'] DESC"
DVC_TARGETS = {"warm_ratio_at_1000": 5.0, "cold_ratio_at_1000": 50.0}
DVC_CLONE = "dvc exp show --json, cold (fresh clone)"
MLCI_CLONE = "mlci runs --json, cold (fresh clone)"
MLCI_CLONE_QUERY = "mlci runs --json --limit 0 (the query: cache built), cold (fresh clone)"


# ------------------------------------------------------------------------------ MLflow
def mlflow_store(n: int, budget: float) -> tuple[Path, dict[str, Any]]:
    py = common.peer_python()
    assert py
    path = common.SCRATCH / f"mlflow-{n}"
    path.mkdir(parents=True, exist_ok=True)
    db = path / "mlflow.db"
    smaller = common.SCRATCH / "mlflow-1000" / "mlflow.db"
    if not db.exists() and n > 1000 and smaller.exists():
        shutil.copyfile(smaller, db)  # grow from the 1k store: the same API, fewer calls
    t0 = time.perf_counter()
    out = common.run([py, str(common.BENCH_DIR / "peer_mlflow.py"), "build", "--db", str(db), "--runs", str(n)], path)
    info = json.loads(out.strip().splitlines()[-1])
    info["wall_seconds"] = time.perf_counter() - t0
    if info["added"]:
        print(f"  built MLflow store of {n:,} runs: {info['added']} runs added in {info['seconds']:.0f} s", flush=True)
    return db, info


def mlci_connect_timer(path: Path, sql: str, seen: dict[str, int], key: str) -> Any:
    def timed() -> float:
        from mlci_tui.gitio import Repo
        from mlci_tui.ledger.cache import LedgerCache

        got: list[Any] = []

        def query() -> None:
            with LedgerCache(Repo.find(path)).connect() as con:
                got.extend(con.execute(sql).fetchall())

        elapsed = common.time_call(query)
        seen[key] = len(got)
        return elapsed

    return timed


def _mlflow_one(n: int, worker: common.MLflowWorker, py: str, quick: bool, deadline: common.Deadline) -> dict[str, Any]:
    db, info = mlflow_store(n, deadline.left())
    ledger = common.SCRATCH / f"ledger-{n}"
    common.build_ledger(ledger, n)
    seen: dict[str, int] = {}
    peer = [py, str(common.BENCH_DIR / "peer_mlflow.py"), "search-once", "--db", str(db)]
    repeats = 3 if (quick or n >= 10_000) else 7
    variants = {
        "MLflow search_runs top 20, in-process": worker.search_timer(db, all_matches=False, seen=seen),
        "MLflow search_runs all matches, in-process": worker.search_timer(db, all_matches=True, seen=seen),
        "MLflow search_runs top 20, fresh process": lambda: common.time_cmd(peer, db.parent, rss=True),
        "MLflow search_runs all matches, fresh process": lambda: common.time_cmd([*peer, "--all"], db.parent, rss=True),
        "mlci connect + query top 20, in-process": mlci_connect_timer(ledger, SQL_TOP, seen, "mlci top"),
        "mlci connect + query all matches, in-process": mlci_connect_timer(ledger, SQL_ALL, seen, "mlci all"),
        "mlci runs top 20, fresh process": lambda: common.time_cmd([common.MLCI, *RUNS_TOP], ledger, rss=True),
        "mlci runs --json all matches, fresh process": lambda: common.time_cmd(
            [common.MLCI, *RUNS_ALL], ledger, rss=True
        ),
    }
    samples = common.interleave(variants, repeats, deadline, warmup=1)
    stats = common.summarise(samples)
    pairs = {
        "top 20, in-process": (
            "MLflow search_runs top 20, in-process",
            "mlci connect + query top 20, in-process",
        ),
        "all matches, in-process": (
            "MLflow search_runs all matches, in-process",
            "mlci connect + query all matches, in-process",
        ),
        "top 20, fresh process": (
            "MLflow search_runs top 20, fresh process",
            "mlci runs top 20, fresh process",
        ),
        "all matches, fresh process": (
            "MLflow search_runs all matches, fresh process",
            "mlci runs --json all matches, fresh process",
        ),
    }
    speedups = {k: stats[a]["median"] / stats[b]["median"] for k, (a, b) in pairs.items()}
    common.print_table(f"MLflow {worker.version} vs mlci over {n:,} runs (filter acc > 0.9, sort by acc)", stats)
    for k, v in speedups.items():
        print(f"  MLflow time / mlci time, {k}: x{v:.1f}")
    return {"store": info, "stats": stats, "mlci_speedup": speedups, "rows": seen}


def bench_mlflow(sizes: list[int], quick: bool, deadline: common.Deadline) -> dict[str, Any]:
    py = common.peer_python()
    if py is None:
        return {"error": "MLflow is not installed here (pip install -e '.[bench]')"}
    results: dict[str, Any] = {}
    worker = common.MLflowWorker(common.fresh_dir("peers/mlflow-worker") / "log.db")
    if worker.error:
        return {"error": worker.error}
    try:
        for n in sizes:
            results[str(n)] = _mlflow_one(n, worker, py, quick, deadline)
    finally:
        worker.close()
    results["version"] = worker.version
    return results


# ------------------------------------------------------------------------------ DVC
def dvc_env() -> dict[str, str]:
    return common.env(DVC_NO_ANALYTICS="1")


def dvc(args: list[str], cwd: Path) -> str:
    tool = common.peer_tool("dvc")
    assert tool
    return common.run([tool, *args], cwd, env=dvc_env())


def exp_show(cwd: Path) -> list[dict[str, Any]]:
    return json.loads(dvc(["exp", "show", "--json"], cwd))


def count_exps(shown: list[dict[str, Any]]) -> tuple[int, list[str]]:
    names, errors = [], []
    for entry in shown:
        if entry.get("error"):
            errors.append(str(entry["error"]))
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                names.append(rev.get("name"))
                if rev.get("error"):
                    errors.append(str(rev["error"]))
    return len(names), errors


def build_dvc_repo(n: int, real: int) -> dict[str, Any]:
    """A git + DVC repository with `n` experiments on one baseline (the first `real` saved by DVC)."""
    import yaml

    path = common.SCRATCH / f"dvc-{n}"
    marker = path / ".mlci-bench-dvc.json"
    spec = {"n": n, "real": real, "v": 1}
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return json.loads(marker.read_text())
    if path.exists():
        shutil.rmtree(path)
    common.git_init(path)
    dvc(["init", "-q"], path)
    dvc(["config", "core.analytics", "false"], path)
    dvc(["config", "core.check_update", "false"], path)
    rng = random.Random(5)

    def write(i: int) -> tuple[str, str]:
        params = yaml.safe_dump(common.params_doc(i, rng), sort_keys=False)
        metrics = json.dumps(common.metrics_doc(rng), indent=2) + "\n"
        (path / "params.yaml").write_text(params)
        (path / "metrics.json").write_text(metrics)
        return params, metrics

    write(0)
    (path / "dvc.yaml").write_text("params:\n- params.yaml\nmetrics:\n- metrics.json\n")
    common.run(["git", "add", "-A"], path)
    common.run(["git", "commit", "-q", "-m", "baseline"], path)
    base = common.run(["git", "rev-parse", "HEAD"], path).strip()
    save_times = []
    for i in range(1, real + 1):
        write(i)
        save_times.append(common.time_cmd([common.peer_tool("dvc") or "dvc", "exp", "save", "-q"], path, env=dvc_env()))
    prefix = f"refs/exps/{base[:2]}/{base[2:]}/"
    refs = common.run(["git", "for-each-ref", "--format=%(refname)", prefix], path).split()
    template = common.run(["git", "rev-parse", refs[0]], path).strip()
    extra = []  # files `dvc exp save` put in the experiment's tree beside the baseline's
    for line in common.run(["git", "diff-tree", "-r", "--no-renames", base, template], path).splitlines():
        meta, file = line.split("\t", 1)
        if file not in ("params.yaml", "metrics.json"):
            _, mode, _, oid, _ = meta.lstrip(":").split()
            extra.append(f"M {mode} {oid} {file}\n")
    chunks = []
    now = int(time.time())
    for k, i in enumerate(range(real + 1, n + 1)):
        params, metrics = write(i)
        msg = f"dvc: commit experiment {hashlib.sha256(params.encode() + metrics.encode()).hexdigest()}"
        chunks.append(
            f"commit {prefix}bench-{i:05d}\nauthor bench <bench@localhost> {now + k} +0000\n"
            f"committer bench <bench@localhost> {now + k} +0000\ndata {len(msg)}\n{msg}\nfrom {base}\n"
            + "".join(extra)
            + f"M 100644 inline params.yaml\ndata {len(params.encode())}\n{params}\n"
            + f"M 100644 inline metrics.json\ndata {len(metrics.encode())}\n{metrics}\n\n"
        )
    common.run(["git", "checkout", "-q", "--", "params.yaml", "metrics.json"], path)
    if chunks:
        script = "".join(chunks) + "done\n"
        import subprocess

        subprocess.run(
            ["git", "fast-import", "--quiet", "--done"], cwd=path, input=script.encode(), check=True, env=common.env()
        )
    shown = exp_show(path)
    count, errors = count_exps(shown)
    if count != n or errors:
        raise RuntimeError(f"dvc exp show lists {count} experiments (expected {n}); errors: {errors[:3]}")
    info = {"spec": spec, "dvc_exp_save_seconds": save_times, "listed": count, "baseline": base}
    marker.write_text(json.dumps(info))
    return info


def fresh_clone(origin: Path, name: str, refspec: str) -> Path:
    clone = common.SCRATCH / "peers" / "clones" / name
    if clone.exists():
        shutil.rmtree(clone)
    clone.parent.mkdir(parents=True, exist_ok=True)
    common.run(["git", "clone", "-q", str(origin), str(clone)])
    common.run(["git", "fetch", "-q", "origin", refspec], clone)
    return clone


def _dvc_one(
    n: int, real: int, quick: bool, deadline: common.Deadline, version: str, cold_rounds: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    built = build_dvc_repo(n, real)
    print(f"  DVC repo of {n:,} experiments ready in {time.perf_counter() - t0:.0f} s", flush=True)
    dvc_repo = common.SCRATCH / f"dvc-{n}"
    ledger = common.SCRATCH / f"ledger-{n}"
    common.build_ledger(ledger, n)
    counter = {"i": 0}
    tool = common.peer_tool("dvc") or "dvc"

    def dvc_warm() -> float:
        return common.time_cmd([tool, "exp", "show", "--json"], dvc_repo, env=dvc_env(), rss=True)

    def dvc_cold_cache() -> float:
        shutil.rmtree(dvc_repo / ".dvc" / "tmp" / "exps" / "cache", ignore_errors=True)
        elapsed = common.time_cmd([tool, "exp", "show", "--json"], dvc_repo, env=dvc_env(), rss=True)
        return elapsed

    def dvc_cold_clone() -> float:
        counter["i"] += 1
        clone = fresh_clone(dvc_repo, f"dvc-{n}-{counter['i']}", "refs/exps/*:refs/exps/*")
        try:
            return common.time_cmd([tool, "exp", "show", "--json"], clone, env=dvc_env(), rss=True)
        finally:
            shutil.rmtree(clone, ignore_errors=True)

    def mlci_warm() -> float:
        return common.time_cmd([common.MLCI, "runs", "--json"], ledger, rss=True)

    def mlci_cold_cache() -> float:
        common.drop_cache(ledger)
        return common.time_cmd([common.MLCI, "runs", "--json"], ledger, rss=True)

    def mlci_cold_clone(*extra: str) -> Callable[[], float]:
        def timed() -> float:
            counter["i"] += 1
            clone = fresh_clone(ledger, f"mlci-{n}-{counter['i']}", "refs/mlci/ledger:refs/mlci/ledger")
            try:
                return common.time_cmd([common.MLCI, "runs", "--json", *extra], clone, rss=True)
            finally:
                shutil.rmtree(clone, ignore_errors=True)

        return timed

    listed = json.loads(common.run([common.MLCI, "runs", "--json"], ledger))
    if len(listed) != n:
        raise RuntimeError(f"mlci runs --json lists {len(listed)} runs, expected {n}")
    load_before = os.getloadavg()
    cold = common.interleave(
        {
            "dvc exp show --json, cold (exp cache deleted)": dvc_cold_cache,
            DVC_CLONE: dvc_cold_clone,
            "mlci runs --json, cold (cache deleted)": mlci_cold_cache,
            MLCI_CLONE: mlci_cold_clone(),
            MLCI_CLONE_QUERY: mlci_cold_clone("--limit", "0"),
        },
        cold_rounds,
        deadline,
        warmup=0,
    )
    dvc_warm()  # populate DVC's experiment cache again
    # and mlci's: with no cache `runs --json` lists from the records and trusts no memo, so a
    # table listing builds the cache (the warm-up round then writes the memo)
    common.run([common.MLCI, "runs", "--limit", "1"], ledger)
    warm = common.interleave(
        {"dvc exp show --json, warm": dvc_warm, "mlci runs --json, warm": mlci_warm},
        3 if quick else 5,
        deadline,
        warmup=1,
    )
    stats = common.summarise({**cold, **warm})
    ratios = {
        "warm: dvc / mlci": stats["dvc exp show --json, warm"]["median"] / stats["mlci runs --json, warm"]["median"],
        "cold fresh clone: dvc / mlci cold": stats[DVC_CLONE]["median"] / stats[MLCI_CLONE]["median"],
        "cold fresh clone, per-round median: dvc / mlci cold": statistics.median(
            d / m for d, m in zip(cold[DVC_CLONE], cold[MLCI_CLONE])
        ),
        "cold fresh clone, CPU: dvc / mlci cold": stats[DVC_CLONE]["cpu_median"] / stats[MLCI_CLONE]["cpu_median"],
        "cold fresh clone: dvc / mlci query (cache built)": stats[DVC_CLONE]["median"]
        / stats[MLCI_CLONE_QUERY]["median"],
        "cold fresh clone: mlci query / mlci records": stats[MLCI_CLONE_QUERY]["median"] / stats[MLCI_CLONE]["median"],
        "cold fresh clone dvc / mlci warm": stats[DVC_CLONE]["median"] / stats["mlci runs --json, warm"]["median"],
        "cold cache deleted: dvc / mlci cold": stats["dvc exp show --json, cold (exp cache deleted)"]["median"]
        / stats["mlci runs --json, cold (cache deleted)"]["median"],
    }
    common.print_table(f"{version}: dvc exp show --json vs mlci runs --json, {n:,} experiments", stats)
    for k, v in ratios.items():
        print(f"  {k}: x{v:.1f}")
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"  load average before {load['before']}, after {load['after']}")
    return {"repo": built, "stats": stats, "ratios": ratios, "rounds": cold, "load": load}


def bench_dvc(sizes: list[int], quick: bool, deadline: common.Deadline, cold_rounds: int = 5) -> dict[str, Any]:
    if common.peer_tool("dvc") is None:
        return {"error": "DVC is not installed here (pip install -e '.[bench]')"}
    results: dict[str, Any] = {"version": common.run([common.peer_tool("dvc") or "dvc", "--version"]).strip()}
    real = 3 if quick else 10
    for n in sizes:
        results[str(n)] = _dvc_one(n, min(real, n), quick, deadline, results["version"], cold_rounds)
    return results


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-dvc", action="store_true")
    parser.add_argument("--sizes", help="DVC experiment counts, comma-separated (default 100,1000; --quick 100)")
    parser.add_argument(
        "--cold-rounds", type=int, default=5, help="rounds of the cold listings (DVC and mlci alternated)"
    )
    parser.add_argument("--results", default="peers", help="results/NAME.json")
    args = parser.parse_args()
    deadline = common.Deadline(args.budget or (900 if args.quick else 2400))
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "machine": common.machine(),
        "quick": args.quick,
        "command": "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:]),
    }
    if not args.skip_dvc:
        sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([100] if args.quick else [100, 1000])
        out["dvc"] = bench_dvc(sizes, args.quick, deadline, args.cold_rounds)
        if "error" in out["dvc"]:
            print(f"DVC: {out['dvc']['error']}")
    if not args.skip_mlflow:
        out["mlflow"] = bench_mlflow([1000] if args.quick else [1000, 10_000], args.quick, deadline)
        if "error" in out["mlflow"]:
            print(f"MLflow: {out['mlflow']['error']}")
    checks = {}
    at1000 = out.get("dvc", {}).get("1000")
    if at1000:
        r = at1000["ratios"]
        checks["warm: at least 5x faster than a warm dvc exp show at 1,000"] = r["warm: dvc / mlci"] >= 5
        checks["cold: at least 50x faster than a cold dvc exp show (fresh clone) at 1,000"] = (
            r["cold fresh clone: dvc / mlci cold"] >= 50
        )
        print("\ntargets:")
        for name, ok in checks.items():
            print(f"  {'met   ' if ok else 'MISSED'} {name}")
    out["target_checks"] = checks
    out["elapsed_seconds"] = time.perf_counter() - t0
    common.write_results(args.results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
