"""MLflow side of the benchmarks; runs in the peers' interpreter (see README.md), prints JSON.

Not a benchmark entry point of its own: bench_capture.py and bench_peers.py call it.

  worker --db DB                     one operation (log a run, or search a store) per stdin line
  build  --db DB --runs N            a sqlite store holding N runs (10 params, 10 metrics each)
  search-once --db DB [--all]        one search (for timing a fresh process from outside)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
import warnings
from typing import Any

import common  # stdlib only: the peers' interpreter imports it from this folder

FILTER = "metrics.acc > 0.9"
ORDER = ["metrics.acc DESC"]
EXPERIMENT = "bench"


def _quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")


def _uri(db: str) -> str:
    return f"sqlite:///{os.path.abspath(db)}"


def _params(i: int, rng: random.Random) -> dict[str, object]:
    """The same ten params mlci's ledgers get (common.params_doc), as MLflow's dotted keys."""
    return {
        f"{group}.{key}": value for group, values in common.params_doc(i, rng).items() for key, value in values.items()
    }


def _log_one(mlflow: Any, i: int, rng: random.Random, batched: bool) -> float:
    params, metrics = _params(i, rng), common.metrics_doc(rng)
    t = time.perf_counter()
    with mlflow.start_run():
        if batched:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
        else:
            for k, v in params.items():
                mlflow.log_param(k, v)
            for k, v in metrics.items():
                mlflow.log_metric(k, v)
    return time.perf_counter() - t


def cmd_worker(args: argparse.Namespace) -> dict[str, object]:
    """One operation per stdin line (JSON), its seconds on stdout: lets a benchmark interleave
    MLflow with mlci in one run. {"op": "log", "batched": true} logs one run into --db;
    {"op": "search", "db": PATH, "all": false} runs one search_runs on that store."""
    import mlflow

    mlflow.set_tracking_uri(_uri(args.db))
    mlflow.set_experiment(EXPERIMENT)
    rng = random.Random(3)
    print(json.dumps({"ready": True, "version": mlflow.__version__}), flush=True)
    for i, line in enumerate(sys.stdin):
        try:
            req = json.loads(line)
        except ValueError:
            break
        c0 = time.process_time()
        if req.get("op") == "log":
            mlflow.set_tracking_uri(_uri(args.db))
            out = {"seconds": _log_one(mlflow, i, rng, bool(req.get("batched")))}
        elif req.get("op") == "search":
            t = time.perf_counter()
            rows = _search(req["db"], bool(req.get("all")))
            out = {"seconds": time.perf_counter() - t, "rows": rows}
        else:
            break
        out["cpu"] = time.process_time() - c0
        print(json.dumps(out), flush=True)
    return {"done": True}


def cmd_build(args: argparse.Namespace) -> dict[str, object]:
    """N runs through MLflow's own client API (create_run + log_batch + set_terminated)."""
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(_uri(args.db))
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT)
    have = len(client.search_runs([exp_id], max_results=50000))
    rng = random.Random(have)
    t0 = time.perf_counter()
    for i in range(have, args.runs):
        run = client.create_run(exp_id, run_name=f"run-{i}")
        ts = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in common.metrics_doc(rng).items()],
            params=[Param(k, str(v)) for k, v in _params(i, rng).items()],
        )
        client.set_terminated(run.info.run_id)
    return {"version": mlflow.__version__, "added": max(0, args.runs - have), "seconds": time.perf_counter() - t0}


def _search(db: str, all_matches: bool) -> int:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(_uri(db))
    client = MlflowClient()
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    if all_matches:
        # every match, paged the way mlflow.search_runs pages (list output: no pandas needed)
        return len(mlflow.search_runs([exp_id], filter_string=FILTER, order_by=ORDER, output_format="list"))
    return len(client.search_runs([exp_id], filter_string=FILTER, order_by=ORDER, max_results=20))


def cmd_search_once(args: argparse.Namespace) -> dict[str, object]:
    return {"rows": _search(args.db, args.all)}


def main() -> int:
    _quiet()
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=("worker", "build", "search-once"))
    parser.add_argument("--db", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args()
    action = {"worker": cmd_worker, "build": cmd_build, "search-once": cmd_search_once}[args.action]
    out = action(args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
