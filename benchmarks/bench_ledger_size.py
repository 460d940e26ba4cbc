"""The ledger's size on disk after compaction, per run: what a clone fetching it receives.

For each size, a copy of the bench ledger (`common.build_ledger`, 10 params and 10 metrics a
run) is compacted by this code; then an empty repository fetches `refs/mlci/ledger` from it
(what a teammate's clone or a CI job receives), and the compacting clone itself is measured
after `git gc --prune=now` (what it holds once git has pruned the history compaction dropped).
The same fetch of the uncompacted ledger is the baseline. Sizes are bytes per run.

    python3 benchmarks/bench_ledger_size.py --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import common

REF = "refs/mlci/ledger"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, text=True).stdout


def fetched_bytes(source: Path, scratch: Path) -> dict[str, int]:
    """What an empty repository holds after fetching the ledger ref from `source`."""
    if scratch.exists():
        shutil.rmtree(scratch)
    _git(scratch.parent, "init", "-q", "--bare", "--template=", str(scratch))  # no sample hooks
    _git(scratch, "fetch", "-q", str(source), f"{REF}:{REF}")
    objects = _git(scratch, "count-objects", "-v")
    fields = dict(line.split(": ", 1) for line in objects.splitlines())
    out = {
        "object_bytes": (int(fields["size-pack"]) + int(fields["size"])) * 1024,  # packed or loose
        "git_dir_bytes": common._du(scratch),
        "commits": int(_git(scratch, "rev-list", "--count", REF).strip()),
    }
    shutil.rmtree(scratch)
    return out


def tree_bytes(repo: Path, prefix: str) -> int:
    out = _git(repo, "ls-tree", "-r", "-l", REF, "--", prefix)
    return sum(int(line.split()[3]) for line in out.splitlines())


def measure(n: int) -> dict[str, Any]:
    source = common.SCRATCH / f"scale-{n}"
    common.build_ledger(source, n)
    work = source.with_name(f"{source.name}-size")
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work, symlinks=True)
    common.drop_cache(work)
    found: dict[str, Any] = {"runs": n, "load_before": round(os.getloadavg()[0], 1)}
    before = fetched_bytes(work, work.with_name(f"{work.name}-fetch"))
    t0, c0 = time.perf_counter(), common._cpu(resource.RUSAGE_CHILDREN)
    common.run([common.MLCI, "ledger", "compact"], work)
    found["compact_wall_s"] = round(time.perf_counter() - t0, 1)
    found["compact_cpu_s"] = round(common._cpu(resource.RUSAGE_CHILDREN) - c0, 1)
    after = fetched_bytes(work, work.with_name(f"{work.name}-fetch"))
    common.run(["git", "gc", "-q", "--prune=now"], work)
    found["uncompacted_fetch_bytes_per_run"] = round(before["object_bytes"] / n)
    found["fetch_bytes_per_run"] = round(after["object_bytes"] / n)
    found["fetch_git_dir_bytes_per_run"] = round(after["git_dir_bytes"] / n)
    found["fetch_commits"] = after["commits"]
    found["compacting_clone_after_gc_bytes_per_run"] = round(common._du(work / ".git") / n)
    found["segments_parquet_bytes_per_run"] = round(
        sum(
            int(line.split()[3])
            for line in _git(work, "ls-tree", "-r", "-l", REF, "--", "segments/").splitlines()
            if line.endswith(".parquet")
        )
        / n
    )
    found["segments_ids_bytes_per_run"] = (
        round(tree_bytes(work, "segments/") / n) - found["segments_parquet_bytes_per_run"]
    )
    found["load_after"] = round(os.getloadavg()[0], 1)
    shutil.rmtree(work)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated run counts")
    args = parser.parse_args()
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    for row in rows:
        print(row)
    common.write_results("ledger_size", {"machine": common.machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
