"""Speed at scale, the ledger half (issue 19): the cost curve of a cold cache rebuild, its peak
memory, the warm query and the ledger's size on disk, at 1k, 10k, 100k (and, asked for, 1M)
runs, loose and after `mlci ledger compact` (deterministic segments, then one pack).

Ledgers are built with the batch API (`common.build_ledger`, 5,000 records per ledger commit).
With `--before PATH` (a worktree of an older commit: `git worktree add /tmp/mlci-before HEAD`)
every cold rebuild is also timed with that code, interleaved, so ratios hold on a loaded machine.

With `--after-capture N`: the listing right after a new run (`mlci runs --json` with its memo
warm before the run was appended, as after a capture) against a warm `dvc exp show --json` over
N experiments (bench_peers' DVC repository), and against the `--before` code, interleaved.

With `--before`, the warm queries (`mlci sql`, the `mlci runs` table) are timed with both codes
too, each on its own copy of the compacted ledger. `--compacted-only` skips the loose rebuilds.

Usage: python benchmarks/bench_scale.py [--sizes 1000,10000,100000,1000000] [--before PATH] [--compacted-only]
       python benchmarks/bench_scale.py --after-capture 1000 [--before PATH]
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

COLD = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); "
    "from mlci_tui.gitio import Repo; from mlci_tui.ledger.cache import LedgerCache; import duckdb; "
    "LedgerCache(Repo.find(sys.argv[2])).refresh()"
)
WARM_LISTING = ["runs", "--limit", "20", "--sort", "-acc"]  # the table: the query core, not the JSON memo
WARM_SQL = "SELECT run_id, metrics['acc'] AS acc FROM runs WHERE metrics['acc'] > 0.9 ORDER BY acc DESC LIMIT 20"


def compacted(path: Path, code: str, suffix: str) -> tuple[Path, float]:
    """A copy of the ledger at `path` compacted by `code` (`mlci ledger compact`: segments, repack):
    each code reads segments in its own layout."""
    target = path.with_name(path.name + suffix)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(path, target, symlinks=True)
    common.drop_cache(target)
    t0 = time.perf_counter()
    common.run([common.PYTHON, "-c", LISTING, code, "ledger", "compact"], target)
    return target, time.perf_counter() - t0


def measure(
    n: int, before: str | None, repeats: int, deadline: common.Deadline, *, loose: bool = True
) -> dict[str, Any]:
    path = common.SCRATCH / f"scale-{n}"
    built = common.build_ledger(path, n)
    code = {"now": str(common.ROOT)}
    if before:
        code["before"] = before
    segs = {
        label: compacted(path, where, "-segments" + ("" if label == "now" else f"-{label}"))
        for label, where in code.items()
    }
    seg, compact_s = segs["now"]
    variants = {}
    for label, where in code.items():
        shapes = (("loose", path), ("compacted", segs[label][0])) if loose else (("compacted", segs[label][0]),)
        for shape, repo in shapes:

            def cold(repo: Path = repo, where: str = where) -> float:
                common.drop_cache(repo)
                return common.time_cmd([common.PYTHON, "-c", COLD, where, str(repo)], repo, rss=True)

            variants[f"cold rebuild, {shape} ledger, {label} code"] = cold
    cold_samples = common.interleave(variants, repeats, deadline, warmup=0)
    warm_variants = {}
    for label, where in code.items():
        repo = segs[label][0]  # each code its own copy: a cache of another schema would be rebuilt by every query
        common.run([common.PYTHON, "-c", LISTING, where, "runs", "--limit", "1"], repo)
        for what, args in (("`mlci sql` filter/sort", ["sql", WARM_SQL]), ("`mlci runs --limit 20`", WARM_LISTING)):
            warm_variants[f"warm {what}, compacted, {label} code"] = lambda r=repo, w=where, a=args: common.time_cmd(
                [common.PYTHON, "-c", LISTING, w, *a], r
            )
    warm = common.interleave(warm_variants, repeats, deadline)
    git_bytes = common._du(seg / ".git")
    stats = common.summarise({**cold_samples, **warm})
    common.print_table(f"{n:,} runs", stats)
    return {
        "ledger": built,
        "compact_seconds": compact_s,
        "compact_seconds_by_code": {label: s for label, (_p, s) in segs.items()},
        "segment_bytes_per_run": {label: _segment_bytes(p) / n for label, (p, _s) in segs.items()},
        "git_dir_bytes_per_run_after_compaction": git_bytes / n,
        "git_dir_bytes_per_run_loose": common._du(path / ".git") / n,
        "stats": stats,
    }


def _segment_bytes(repo: Path) -> int:
    """The bytes of the Parquet segments in the ledger's tree."""
    listing = common.run(["git", "ls-tree", "-r", "-l", "refs/mlci/ledger", "segments/"], repo)
    return sum(int(line.split()[3]) for line in listing.splitlines() if line.endswith(".parquet"))


LISTING = "import sys; sys.path.insert(0, sys.argv[1]); sys.argv[1:2] = []; from mlci_tui.cli.main import main; main()"


def after_capture(n: int, before: str | None, repeats: int, deadline: common.Deadline) -> dict[str, Any]:
    """`mlci runs --json` right after a new run (memo warm before it), against warm `dvc exp show`."""
    import random

    import bench_peers

    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.store import LedgerStore

    ledger = common.SCRATCH / f"ledger-{n}"
    common.build_ledger(ledger, n)
    bench_peers.build_dvc_repo(n, 10)
    store = LedgerStore(Repo.find(ledger))
    rng = random.Random(7)
    made = {"k": 10**8 + int(time.time())}  # later than any run of the ledger (earlier benchmarks too): a capture
    tool = common.peer_tool("dvc") or "dvc"

    def listing_after_run(code: str) -> float:
        common.run([common.PYTHON, "-c", LISTING, code, "runs", "--json"], ledger)  # the memo at the tip
        made["k"] += 1
        store.append([common.run_record(made["k"], rng)])  # what a capture appends
        return common.time_cmd([common.PYTHON, "-c", LISTING, code, "runs", "--json"], ledger)

    variants = {"mlci runs --json right after a new run, now": lambda: listing_after_run(str(common.ROOT))}
    if before:
        variants["mlci runs --json right after a new run, before"] = lambda: listing_after_run(before)
    dvc_repo = common.SCRATCH / f"dvc-{n}"
    variants["dvc exp show --json, warm"] = lambda: common.time_cmd(
        [tool, "exp", "show", "--json"], dvc_repo, env=bench_peers.dvc_env()
    )
    stats = common.summarise(common.interleave(variants, repeats, deadline, warmup=1))
    common.print_table(f"listing right after a new run, {n:,} runs", stats)
    return {"stats": stats}


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated run counts")
    parser.add_argument("--before", help="a worktree of the code to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--after-capture", type=int, help="the listing right after a new run, at this many runs")
    parser.add_argument("--compacted-only", action="store_true", help="time cold rebuilds of the compacted ledger only")
    args = parser.parse_args()
    deadline = common.Deadline(args.budget or 3600)
    if args.after_capture:
        found = after_capture(args.after_capture, args.before, args.repeats, deadline)
        common.write_results("scale_after_capture", {"load": common.cpu_pressure(), **found})
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {str(n): measure(n, args.before, args.repeats, deadline, loose=not args.compacted_only) for n in sizes}
    common.write_results(
        "scale_compacted" if args.compacted_only else "scale",
        {"machine": common.machine(), "load": common.cpu_pressure(), "sizes": results, "quick": args.quick},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
