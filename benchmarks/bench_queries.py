"""Figure 3: `mlci runs` and `mlci sql` over 1k, 10k and 100k runs, cold cache and warm.

Ledgers are built with the batch API (`LedgerStore.append`, 5,000 records per ledger commit)
in repositories under the scratch folder, reused between runs. Each run record holds what a
commit capture of params.yaml + metrics.json holds (10 params, 10 metrics, no step series).

Cold: `.git/mlci/cache.duckdb` deleted before each sample; the cache is rebuilt from the
ledger, in-process (`LedgerCache.refresh()`, duckdb already imported) and from a fresh
`mlci runs` process. Warm: the cache is current; in-process (the `mlci runs` handler, and
`LedgerCache.connect()` + one query) and fresh `mlci` processes. A fresh `python` that only
imports duckdb and runs the same query on the cache file is the floor a process can reach.

Usage: python benchmarks/bench_queries.py [--quick] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

WHERE = "metrics['acc'] > 0.9"
RUNS_ARGS = ["runs", "--where", WHERE, "--sort", "-acc", "--limit", "20"]
RUNS_DISPLAY = f'mlci runs --where "{WHERE}" --sort -acc --limit 20'
SQL_FILTER = (
    "SELECT run_id, metrics['acc'] AS acc, params['train.lr'] AS lr FROM runs "
    "WHERE metrics['acc'] > 0.9 ORDER BY acc DESC LIMIT 20"
)
SQL_AGG = "SELECT name, count(*) AS n, avg(value) AS mean, max(value) AS best FROM metrics GROUP BY name ORDER BY name"
FLOOR = (
    "import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
    "con.execute(sys.argv[2]).fetchall(); con.close()"
)
TARGETS = {
    "warm_in_process_100k_s": 0.300,
    "warm_fresh_process_100k_s": 0.600,
    "cold_rebuild_100k_s": 15.0,
}


@contextlib.contextmanager
def chdir(path: Path) -> Any:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def runs_handler(path: Path) -> float:
    """The `mlci runs` command's own handler, in this process (table output discarded)."""
    from mlci_tui.cli.main import build_parser

    args = build_parser("runs").parse_args([a if a != "-acc" else "--sort=-acc" for a in RUNS_ARGS if a != "--sort"])
    with chdir(path), contextlib.redirect_stdout(io.StringIO()):
        return common.time_call(lambda: args.handler(args))


def connect_query(path: Path, sql: str) -> tuple[float, int]:
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.cache import LedgerCache

    got: list[Any] = []

    def query() -> None:
        with LedgerCache(Repo.find(path)).connect() as con:
            got.extend(con.execute(sql).fetchall())

    return common.time_call(query), len(got)


def measure(n: int, quick: bool, deadline: common.Deadline) -> dict[str, Any]:
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.cache import LedgerCache

    path = common.SCRATCH / f"ledger-{n}"
    t0 = time.perf_counter()
    built = common.build_ledger(path, n)
    build_wall = time.perf_counter() - t0
    print(f"\n# {n:,} runs: ledger in {path} ({built['git_dir_mib']} MiB .git)", flush=True)
    repo = Repo.find(path)
    mlci = common.MLCI

    def cold_in_process() -> float:
        common.drop_cache(path)
        return common.time_call(lambda: LedgerCache(repo).refresh())

    def cold_process() -> float:
        common.drop_cache(path)
        return common.time_cmd([mlci, *RUNS_ARGS], path, rss=True)

    compacted = common.compacted_copy(path)
    compacted_repo = Repo.find(compacted)

    def cold_compacted() -> float:
        common.drop_cache(compacted)
        return common.time_call(lambda: LedgerCache(compacted_repo).refresh())

    cold_repeats = 2 if n >= 100_000 else 3 if n >= 10_000 else 5
    if quick:
        cold_repeats = min(cold_repeats, 2)
    cold = common.interleave(
        {
            "cold: LedgerCache.refresh() in-process (rebuild)": cold_in_process,
            "cold: `mlci runs --where ... --sort -acc --limit 20`, fresh process": cold_process,
            "cold: LedgerCache.refresh() in-process, ledger compacted to one Parquet segment": cold_compacted,
        },
        cold_repeats,
        deadline,
        warmup=0,
    )
    LedgerCache(repo).refresh()
    cache_file = path / ".git" / "mlci" / "cache.duckdb"
    rows_seen: dict[str, int] = {}

    def warm_connect(sql: str, label: str) -> Any:
        def timed() -> float:
            elapsed, count = connect_query(path, sql)
            rows_seen[label] = count
            return elapsed

        return timed

    def query_only() -> float:
        import duckdb

        con = duckdb.connect(str(cache_file), read_only=True)
        try:
            return common.time_call(lambda: con.execute(SQL_FILTER).fetchall())
        finally:
            con.close()

    warm_repeats = 5 if quick else (7 if n >= 100_000 else 12)
    warm = common.interleave(
        {
            "warm: `mlci runs` handler in-process": lambda: runs_handler(path),
            "warm: LedgerCache.connect() + filter/sort query, in-process": warm_connect(SQL_FILTER, "filter"),
            "warm: LedgerCache.connect() + aggregate query, in-process": warm_connect(SQL_AGG, "aggregate"),
            "warm: the filter/sort query alone on an open connection": query_only,
            "warm: `mlci runs --where ... --sort -acc --limit 20`, fresh process": lambda: common.time_cmd(
                [mlci, *RUNS_ARGS], path, rss=True
            ),
            "warm: `mlci sql` filter/sort query, fresh process": lambda: common.time_cmd(
                [mlci, "sql", SQL_FILTER], path, rss=True
            ),
            "warm: `mlci sql` aggregate query, fresh process": lambda: common.time_cmd(
                [mlci, "sql", SQL_AGG], path, rss=True
            ),
            "floor: fresh python, import duckdb, same filter query": lambda: common.time_cmd(
                [common.PYTHON, "-c", FLOOR, str(cache_file), SQL_FILTER], path, rss=True
            ),
        },
        warm_repeats,
        deadline,
        warmup=1,
    )
    stats = common.summarise({**cold, **warm})
    matches = LedgerCache(repo)
    with matches.connect(refresh=False) as con:
        total = con.execute(f"SELECT count(*) FROM runs WHERE {WHERE}").fetchone()[0]
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    common.print_table(f"{n:,} runs ({runs:,} in the runs view, {total:,} match the filter)", stats)
    return {
        "runs": runs,
        "matching_filter": total,
        "ledger": built,
        "ledger_prepare_wall_seconds": build_wall,
        "cache_mib": round(cache_file.stat().st_size / 1048576, 1),
        "stats": stats,
        "rows_returned": rows_seen,
    }


CHECKS = [
    (
        "warm `mlci runs` handler in-process over 100k < 300 ms",
        "warm: `mlci runs` handler in-process",
        "warm_in_process_100k_s",
    ),
    (
        "warm LedgerCache.connect() + query in-process over 100k < 300 ms",
        "warm: LedgerCache.connect() + filter/sort query, in-process",
        "warm_in_process_100k_s",
    ),
    (
        "warm `mlci runs` fresh process over 100k < 0.6 s",
        "warm: `mlci runs --where ... --sort -acc --limit 20`, fresh process",
        "warm_fresh_process_100k_s",
    ),
    (
        "warm `mlci sql` fresh process over 100k < 0.6 s",
        "warm: `mlci sql` filter/sort query, fresh process",
        "warm_fresh_process_100k_s",
    ),
    (
        "cold rebuild of 100k runs in-process < 15 s",
        "cold: LedgerCache.refresh() in-process (rebuild)",
        "cold_rebuild_100k_s",
    ),
    (
        "cold `mlci runs` fresh process over 100k < 15 s",
        "cold: `mlci runs --where ... --sort -acc --limit 20`, fresh process",
        "cold_rebuild_100k_s",
    ),
]


def target_checks(big: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each target against the median wall time and the median CPU time (all threads, process
    tree): on a contended machine wall time includes waiting for a core, CPU time does not."""
    if not big:
        return {}
    out = {}
    for label, measure, key in CHECKS:
        st = big["stats"].get(measure)
        if not st or not st.get("n"):
            continue
        target = TARGETS[key]
        cpu = st.get("cpu_median")
        out[label] = {
            "target": target,
            "wall": st["median"],
            "wall_met": st["median"] < target,
            "cpu": cpu,
            "cpu_met": cpu is not None and cpu < target,
        }
    return out


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--sizes", help="comma-separated run counts (default 1000,10000,100000; quick: 1000,10000)")
    args = parser.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])
    )
    deadline = common.Deadline(args.budget or (300 if args.quick else 1500))
    t0 = time.perf_counter()
    import duckdb  # noqa: F401  (in-process figures exclude the one-off import)

    results = {}
    for n in sizes:
        results[str(n)] = measure(n, args.quick, deadline)
    checks = target_checks(results.get("100000"))
    if checks:
        print("\ntargets (wall time; CPU time of the process tree, all threads):")
        for name, c in checks.items():
            print(
                f"  {name}: wall {common.fmt_s(c['wall'])} {'met' if c['wall_met'] else 'MISSED'}; "
                f"cpu {common.fmt_s(c['cpu'])} {'met' if c['cpu_met'] else 'MISSED'}"
            )
    common.write_results(
        "queries",
        {
            "machine": common.machine(),
            "quick": args.quick,
            "command": "python benchmarks/bench_queries.py" + (" --quick" if args.quick else ""),
            "queries": {"runs": RUNS_DISPLAY, "sql_filter": SQL_FILTER, "sql_aggregate": SQL_AGG},
            "sizes": results,
            "targets": TARGETS,
            "target_checks": checks,
            "elapsed_seconds": time.perf_counter() - t0,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
