"""Data diff: `mlci data diff` vs a bare DuckDB full outer join over the same files, vs daff.

Every contender is a fresh process, timed from start to exit (interpreter start and imports
included on every side):

- `mlci data diff customers HEAD~1 HEAD --no-drift --json` in a repository whose two commits
  hold pointers to the two versions in the data cache (the large-data path: read in place),
  the key `customer_id` from the schema: key checks on both versions, the join, counts,
  per-column counts and examples.
- A bare DuckDB full outer join (`python -c`, same memory limit and threads): one query
  counting added, removed and changed rows (IS DISTINCT FROM over every column) over the
  same files; the floor for any join-based diff.
- daff (peers venv; `pip install daff`), the tabular diff of Python's data-diff tools: the
  script a daff user writes (CSV read with the csv module, `customer_id` as primary key,
  `TableDiff.hilite`, its summary's counts), at `--daff-rows` (default 1M); mlci on the same
  CSV files beside it, and the counts checked equal.
- Peak memory (GNU time) of the mlci run at the full size, against DuckDB's memory limit.

Data: `--rows` x 20 columns (id, 10 doubles, 5 integers, 4 strings); the new version has 1%
of rows changed (two columns each), 0.1% removed and 0.1% added.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

THREADS = str(os.cpu_count() or 1)
MEMORY_LIMIT = "1GB"
SCHEMA = "datasets:\n  customers:\n    path: data/customers.%(ext)s\n    primary_key: [customer_id]\n"
COLUMNS = ["customer_id"] + [f"f{i}" for i in range(10)] + [f"n{i}" for i in range(5)] + [f"s{i}" for i in range(4)]

BARE_SCRIPT = """
import sys, duckdb
old, new, fmt, threads, memory = sys.argv[1:6]
cols = sys.argv[6].split(",")
con = duckdb.connect(config={"threads": int(threads), "memory_limit": memory})
read = (lambda p: f"read_parquet('{p}')") if fmt == "parquet" else (lambda p: f"read_csv('{p}')")
changed = " OR ".join(f'o."{c}" IS DISTINCT FROM n."{c}"' for c in cols[1:])
print(con.execute(
    f"SELECT count_if(o.customer_id IS NULL), count_if(n.customer_id IS NULL), "
    f"count_if(o.customer_id IS NOT NULL AND n.customer_id IS NOT NULL AND ({changed})) "
    f"FROM {read(old)} AS o FULL OUTER JOIN {read(new)} AS n ON o.customer_id = n.customer_id"
).fetchall())
"""

DAFF_SCRIPT = """
import csv, json, sys, daff
def rows(path):
    with open(path, newline="") as fh:
        return [r for r in csv.reader(fh)]
old, new = daff.PythonTableView(rows(sys.argv[1])), daff.PythonTableView(rows(sys.argv[2]))
flags = daff.CompareFlags()
flags.addPrimaryKey("customer_id")
alignment = daff.Coopy.compareTables(old, new, flags).align()
out = daff.PythonTableView([])
diff = daff.TableDiff(alignment, flags)
diff.hilite(out)
s = diff.getSummary()
print(json.dumps({"added": s.row_inserts, "removed": s.row_deletes, "changed": s.row_updates}))
"""


def generate(folder: Path, rows: int, fmt: str) -> tuple[Path, Path]:
    """The two versions: `old` and `new` (1% changed in f0 and n0, 0.1% removed, 0.1% added)."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    old, new = folder / f"old.{fmt}", folder / f"new.{fmt}"
    con = duckdb.connect()
    con.execute(f"SET threads TO {THREADS}")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = '{folder / 'tmp'}'")
    floats = [f"round((hash(i * {k + 3}) % 1000000) / 7.0, 3) AS f{k}" for k in range(10)]
    ints = [f"(hash(i * {k + 31}) % 100000)::BIGINT AS n{k}" for k in range(5)]
    strs = [f"'v' || (hash(i * {k + 71}) % 50000) AS s{k}" for k in range(4)]
    con.execute(
        f"CREATE TABLE t AS SELECT i + 1 AS customer_id, {', '.join(floats + ints + strs)} FROM range({rows}) r(i)"
    )
    extra = max(1, rows // 1000)
    con.execute(
        f"""CREATE TABLE u AS
        SELECT * REPLACE (CASE WHEN customer_id % 100 = 7 THEN f0 + 1 ELSE f0 END AS f0,
                          CASE WHEN customer_id % 100 = 7 THEN n0 + 1 ELSE n0 END AS n0)
        FROM t WHERE customer_id > {extra}
        UNION ALL
        SELECT * REPLACE (customer_id + {rows} AS customer_id) FROM t WHERE customer_id <= {extra}"""
    )
    option = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT csv, HEADER true)"
    con.execute(f"COPY t TO '{old}' {option}")
    con.execute(f"COPY (SELECT * FROM u ORDER BY customer_id) TO '{new}' {option}")
    con.close()
    return old, new


def expected(rows: int) -> dict[str, int]:
    extra = max(1, rows // 1000)
    changed = sum(1 for i in range(extra + 1, rows + 1) if i % 100 == 7)
    return {"added": extra, "removed": extra, "changed": changed}


def make_repo(root: Path, old: Path, new: Path, fmt: str) -> Path:
    """Two commits whose pointers name the two versions in the data cache (hard links: no copy)."""
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.hashing import hash_file
    from mlci_tui.data.pointer import Pointer, dump_pointer

    repo = common.git_init(root / f"repo-{fmt}")
    (repo / "data").mkdir(exist_ok=True)
    (repo / "mlci.yaml").write_text(SCHEMA % {"ext": fmt})
    (repo / ".gitignore").write_text(f"/data/customers.{fmt}\n")
    cache = DataCache.for_repo(repo)
    for n, data in enumerate((old, new)):
        digest = hash_file(data, "blake3")
        obj = cache.object_path(digest)
        obj.parent.mkdir(parents=True, exist_ok=True)
        if not obj.exists():
            os.link(data, obj)
        pointer = Pointer(
            path=f"data/customers.{fmt}", algo="blake3", hash=digest, size=data.stat().st_size, format=fmt
        )
        (repo / "data" / f"customers.{fmt}.mlci").write_text(dump_pointer(pointer))
        common.run(["git", "add", "-A"], repo)
        common.run(["git", "commit", "-qm", f"version {n}", "--no-verify"], repo)
    return repo


def bench_env() -> dict[str, str]:
    return common.env(MLCI_DUCKDB_THREADS=THREADS, MLCI_DUCKDB_MEMORY_LIMIT=MEMORY_LIMIT)


MLCI_ARGV = ["data", "diff", "customers", "HEAD~1", "HEAD", "--no-drift", "--json"]


def mlci_counts(repo: Path) -> dict[str, int]:
    doc = json.loads(common.run([common.MLCI, *MLCI_ARGV], repo, env=bench_env()))
    return {k: doc[k] for k in ("added", "removed", "changed")}


def bare_once(folder: Path, old: Path, new: Path, fmt: str) -> float:
    argv = [common.PYTHON, "-c", BARE_SCRIPT, str(old), str(new), fmt, THREADS, MEMORY_LIMIT, ",".join(COLUMNS)]
    return common.time_cmd(argv, folder, env=bench_env())


def daff_counts(python: str, folder: Path, old: Path, new: Path) -> dict[str, int]:
    script = folder / "diff_daff.py"
    script.write_text(DAFF_SCRIPT)
    out = subprocess.run([python, str(script), str(old), str(new)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--rows", type=int, default=None, help="rows of the large pair (default 10M; --quick 1M)")
    parser.add_argument("--daff-rows", type=int, default=None, help="rows of the daff comparison (default 1M; 0: skip)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    daff_rows = args.daff_rows if args.daff_rows is not None else (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    scratch = common.fresh_dir("data-diff")
    import duckdb

    from mlci_tui import __version__

    results: dict[str, Any] = {
        "rows": rows,
        "columns": len(COLUMNS),
        "machine": common.machine(),
        "threads": THREADS,
        "memory_limit": MEMORY_LIMIT,
        "mlci_version": __version__,
        "duckdb_version": duckdb.__version__,
    }
    old, new = generate(scratch / "large", rows, "parquet")
    sizes = [old.stat().st_size, new.stat().st_size]
    print(
        f"{rows:,} rows x {len(COLUMNS)} columns; parquet {sizes[0] / 2**20:.0f} + {sizes[1] / 2**20:.0f} MiB",
        flush=True,
    )
    repo = make_repo(scratch, old, new, "parquet")
    got, want = mlci_counts(repo), expected(rows)
    assert got == want, (got, want)
    results["counts"] = got
    variants = {
        "mlci data diff": lambda: common.time_cmd([common.MLCI, *MLCI_ARGV], repo, env=bench_env()),
        "bare DuckDB full outer join": lambda: bare_once(scratch, old, new, "parquet"),
    }
    table = common.summarise(common.interleave(variants, repeats, warmup=0), baseline="bare DuckDB full outer join")
    common.print_table(f"data diff, parquet, {rows:,} rows x {len(COLUMNS)} columns", table)
    results["parquet"] = table
    results["parquet_loadavg"] = [round(x, 2) for x in os.getloadavg()]
    common.time_cmd([common.MLCI, *MLCI_ARGV], repo, env=bench_env(), rss=True)
    results["memory"] = {"peak_rss_mib": common._LAST_CPU[1], "cpu_s": common._LAST_CPU[0]}
    print(f"peak RSS of mlci data diff: {common._LAST_CPU[1]} MiB (DuckDB memory limit {MEMORY_LIMIT})", flush=True)
    common.write_results("data_diff", results)
    shutil.rmtree(scratch / "large", ignore_errors=True)
    shutil.rmtree(repo, ignore_errors=True)

    if daff_rows:
        old, new = generate(scratch / "daff", daff_rows, "csv")
        repo = make_repo(scratch, old, new, "csv")
        want = expected(daff_rows)
        assert mlci_counts(repo) == want
        peer = common.peer_python()
        has_daff = bool(peer) and subprocess.run([peer or "", "-c", "import daff"], capture_output=True).returncode == 0
        variants = {"mlci data diff (csv)": lambda: common.time_cmd([common.MLCI, *MLCI_ARGV], repo, env=bench_env())}
        if has_daff:
            got = daff_counts(peer or "", scratch, old, new)
            assert got == want, (got, want)
            results["daff_counts"] = got
            variants["daff"] = lambda: common.time_cmd(
                [peer or "", str(scratch / "diff_daff.py"), str(old), str(new)], scratch, env=bench_env()
            )
        table = common.summarise(common.interleave(variants, 1, warmup=0), baseline="mlci data diff (csv)")
        common.print_table(f"data diff vs daff, csv, {daff_rows:,} rows x {len(COLUMNS)} columns", table)
        results["daff"] = {"rows": daff_rows, **table}
        common.write_results("data_diff", results)


if __name__ == "__main__":
    csv.field_size_limit(2**31 - 1)
    main()
