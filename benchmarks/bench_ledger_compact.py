"""Compaction at scale (issue 19): wall, CPU and the peak memory of the whole process tree
(mlci and its git children, `git repack` included) while `mlci ledger compact` turns a loose
ledger of N runs into segments; then the ledger's size (segments, their `.ids` as git stores
them, bytes per run of each Parquet column from the footers, `.git`), one cold rebuild and one
`mlci ledger fsck` (the bench's commit runs have random ids, so fsck exits 1: timed all the same).

The tree's peak is sampled with psutil every 20 ms (the sum of every live process's RSS):
`/usr/bin/time` reports only the largest single process. CPU is the tree's user + system time
from `wait4`. Ledgers come from `common.build_ledger` (the batch API) and are compacted in a
copy; with `--code A,B` each code base (a worktree path) compacts its own copy, interleaved.

Usage: python benchmarks/bench_ledger_compact.py --sizes 100000 [--code /tmp/mlci-before,.]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

COMPACT = "import sys; sys.path.insert(0, sys.argv[1]); sys.argv[1:2] = []; from mlci_tui.cli.main import main; main()"
COLD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from mlci_tui.gitio import Repo; from mlci_tui.ledger.cache import LedgerCache; "
    "LedgerCache(Repo.find(sys.argv[2])).refresh()"
)


def tree_peak(argv: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> dict[str, float]:
    """Run `argv`; its wall time, the tree's CPU (user + sys, `wait4`) and the peak of the summed
    RSS of the process and every descendant (sampled), in MB."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = {"rss": 0, "largest": 0}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                peak["largest"] = max(peak["largest"], rss)
            peak["rss"] = max(peak["rss"], total)
            done.wait(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    done.set()
    watcher.join()
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in ok:
        raise SystemExit(f"{argv}: exit {status}: {err[-400:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_tree_mb": round(peak["rss"] / 1e6),
        "peak_one_process_mb": round(peak["largest"] / 1e6),
    }


def segment_bytes(repo: Path) -> int:
    out = subprocess.run(
        ["git", "ls-tree", "-r", "-l", "refs/mlci/ledger", "--", "segments/"],
        cwd=repo,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return sum(int(line.split()[3]) for line in out.splitlines() if line.endswith(".parquet"))


def _ledger_git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True, text=True, input=stdin).stdout


def segment_columns(repo: Path, n: int) -> dict[str, Any]:
    """Bytes per run: the `.ids` lists and the segments as git stores them (zlib, in a pack), and
    each Parquet column's compressed chunks (the footers), largest first."""
    import io
    from collections import Counter

    import pyarrow.parquet as pq

    listing = [
        line.split() for line in _ledger_git(repo, "ls-tree", "-r", "refs/mlci/ledger", "--", "segments/").splitlines()
    ]
    ids = [f[2] for f in listing if f[3].endswith(".ids")]
    segments = [f[2] for f in listing if f[3].endswith(".parquet")]
    disk = [
        int(x)
        for x in _ledger_git(
            repo, "cat-file", "--batch-check=%(objectsize:disk)", stdin="\n".join(ids + segments) + "\n"
        ).split()
    ]
    columns: Counter[str] = Counter()
    for oid in segments:
        data = subprocess.run(["git", "cat-file", "blob", oid], cwd=repo, capture_output=True, check=True).stdout
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        for group in (meta.row_group(g) for g in range(meta.num_row_groups)):
            for chunk in (group.column(c) for c in range(group.num_columns)):
                columns[chunk.path_in_schema.replace(".key_value", "").replace(".list.element", ".list")] += (
                    chunk.total_compressed_size
                )
    return {
        "ids_in_git_per_run": round(sum(disk[: len(ids)]) / n, 1),
        "segments_in_git_per_run": round(sum(disk[len(ids) :]) / n, 1),
        "columns_per_run": {k: round(v / n, 1) for k, v in columns.most_common() if v / n >= 0.05},
    }


def measure(n: int, code: str, source: Path) -> dict[str, Any]:
    target = source.with_name(f"{source.name}-compact-{Path(code).resolve().name}")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True)
    common.drop_cache(target)
    found: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    found["compact"] = tree_peak([common.PYTHON, "-c", COMPACT, code, "ledger", "compact"], target)
    found["segment_bytes_per_run"] = round(segment_bytes(target) / n)
    found["git_dir_bytes_per_run"] = round(common._du(target / ".git") / n)
    found.update(segment_columns(target, n))
    common.drop_cache(target)
    found["cold_rebuild"] = tree_peak([common.PYTHON, "-c", COLD, code, str(target)], target)
    found["fsck"] = tree_peak([common.PYTHON, "-c", COMPACT, code, "ledger", "fsck"], target, ok=(0, 1))
    found["load_after"] = os.getloadavg()[0]
    shutil.rmtree(target)
    return found


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--sizes", default="100000", help="comma-separated run counts")
    parser.add_argument("--code", default=str(common.ROOT), help="comma-separated code bases (worktrees)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        source = common.SCRATCH / f"scale-{n}"
        common.build_ledger(source, n)
        for r in range(args.rounds):
            for code in args.code.split(","):
                found = measure(n, code, source)
                results.setdefault(str(n), {}).setdefault(code, []).append(found)
                print(f"{n:,} runs, round {r + 1}, {code}: {found}", flush=True)
    common.write_results("ledger_compact", {"machine": common.machine(), "sizes": results, "quick": args.quick})
    return 0


if __name__ == "__main__":
    sys.exit(main())
