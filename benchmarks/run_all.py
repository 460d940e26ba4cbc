"""Run every benchmark, then write docs/benchmarks.md from the results.

    python benchmarks/run_all.py            # full: 1k/10k/100k runs, 100/1,000 DVC experiments
    python benchmarks/run_all.py --quick    # a few minutes: smaller sizes, fewer repeats
    python benchmarks/run_all.py --only hooks,queries
    python benchmarks/run_all.py --setup-peers   # first install DVC and MLflow in their own venv

Each script has its own time budget and stops repeating when it runs out (the number of
samples is in every table); this script gives each a hard timeout on top. Generated repos,
ledgers, stores and the peers' venv live in $MLCI_BENCH_DIR (default /tmp/mlci-bench).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name: (script, budget in seconds for --quick, for a full run)
SCRIPTS = {
    "hooks": ("bench_hooks.py", 150, 420),
    "capture": ("bench_capture.py", 300, 900),
    "queries": ("bench_queries.py", 400, 1500),
    "peers": ("bench_peers.py", 900, 2700),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--setup-peers", action="store_true", help="first install the `bench` extra (DVC, MLflow) into the peers' venv"
    )
    args = parser.parse_args()
    if args.setup_peers:
        sys.path.insert(0, str(HERE))
        import common

        common.setup_peers()
    names = args.only.split(",") if args.only else list(SCRIPTS)
    failed = []
    for name in names:
        script, quick_budget, full_budget = SCRIPTS[name]
        budget = quick_budget if args.quick else full_budget
        argv = [sys.executable, str(HERE / script), "--budget", str(budget)] + (["--quick"] if args.quick else [])
        print(f"\n===== {name}: {' '.join(argv[1:])}", flush=True)
        t0 = time.monotonic()
        try:
            # the budget bounds the repeats; building ledgers and stores the first time comes on top
            proc = subprocess.run(argv, timeout=budget * 2 + 600, check=False)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        print(f"===== {name}: exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if not args.no_report and not args.quick:  # --quick results stay in the scratch folder
        subprocess.run([sys.executable, str(HERE / "report.py")], check=False)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
