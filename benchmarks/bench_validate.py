"""Data validation: `mlci data validate` vs a bare DuckDB aggregate scan, vs pandera (pandas).

Every contender is a fresh process, timed from start to exit, as a user runs it (interpreter
start and imports included on every side), on the same file:

- `mlci data validate --no-cache --no-record` on a dataset whose pointer names the file in
  the data cache (the large-data path, no re-hash), the customers schema: type, nullable,
  unique, primary key, min/max, allowed values, regex, row count. Two cases: a **new
  version** (its profile is computed in the same pass: nulls, min, max, mean, std, approximate
  distinct per column, value counts of the allowed-value column; the stored profile is removed
  before each run) and a **known version** (the profile of that content is stored, so only
  the checks run: re-validation with another schema, `--no-cache`, CI).
- A bare DuckDB scan: `python -c` connecting with the same memory limit and threads and
  running one aggregate query of the same columns (count, nulls, min, max per column and the
  exact distinct count of the key).
- pandera with its pandas backend (peers venv): the script a pandera user writes, reading
  the file with pandas and validating lazily, with the same checks (unique key, allowed
  values, ranges, full-match regex, row count).
- Peak memory (GNU time) of `mlci data validate` on a large CSV under DuckDB's memory limit.

Sizes are stated with every figure (`--rows`, `--memory-rows`). `--against SRC` adds the new
version's validation by another source tree (and by this one, started the same way) to the
interleaved rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

THREADS = str(os.cpu_count() or 1)
MEMORY_LIMIT = "1GB"

SCHEMA = """\
datasets:
  customers:
    path: data/customers.%(ext)s
    primary_key: [customer_id]
    row_count: {min: 1000}
    columns:
      customer_id: {type: int64, nullable: false, unique: true}
      country: {type: string, allowed_values: ["US", "GB", "NO", "SE", "DE"]}
      income: {type: float64, min: 0}
      age: {type: int64, min: 18, max: 120}
      signup_date: {type: date, min: "2015-01-01"}
      email: {type: string, regex: '[^@]+@[^@]+'}
"""

BARE = """SELECT count(*), count(DISTINCT customer_id),
    count(customer_id), min(customer_id), max(customer_id),
    count(country), min(country), max(country),
    count(income), min(income), max(income),
    count(age), min(age), max(age),
    count(signup_date), min(signup_date), max(signup_date),
    count(email), min(email), max(email)
FROM {rel}"""

BARE_SCRIPT = """
import sys, tempfile, duckdb
path, fmt, threads, limit = sys.argv[1:5]
with tempfile.TemporaryDirectory() as spill:
    con = duckdb.connect(config={"threads": int(threads), "memory_limit": limit, "temp_directory": spill})
    rel = f"read_parquet('{path}')" if fmt == "parquet" else f"read_csv('{path}', header = true)"
    print(con.execute(QUERY.format(rel=rel)).fetchall())
"""

# What a pandera user writes for the same checks (pandera >= 0.24: `pandera.pandas`).
PANDERA = r"""
import sys
import pandas as pd
import pandera.pandas as pa

path, fmt = sys.argv[1], sys.argv[2]
schema = pa.DataFrameSchema(
    {
        "customer_id": pa.Column(int, nullable=False, unique=True),
        "country": pa.Column(str, pa.Check.isin(["US", "GB", "NO", "SE", "DE"]), nullable=True),
        "income": pa.Column(float, pa.Check.ge(0), nullable=True),
        "age": pa.Column(int, pa.Check.in_range(18, 120), nullable=True),
        "signup_date": pa.Column("datetime64[s]", pa.Check.ge(pd.Timestamp("2015-01-01")), nullable=True),
        "email": pa.Column(str, pa.Check.str_matches(r"^[^@]+@[^@]+$"), nullable=True),
    },
    unique=["customer_id"],  # the primary key
    checks=pa.Check(lambda df: len(df) >= 1000, element_wise=False, name="row_count"),
)
if fmt == "csv":
    df = pd.read_csv(path, parse_dates=["signup_date"])
else:
    df = pd.read_parquet(path)
df["signup_date"] = pd.to_datetime(df["signup_date"]).astype("datetime64[s]")
schema.validate(df, lazy=True)
print(len(df))
"""


def generate(folder: Path, rows: int, formats: tuple[str, ...] = ("parquet", "csv")) -> dict[str, Path]:
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    paths = {fmt: folder / f"customers.{fmt}" for fmt in formats}
    con = duckdb.connect()
    con.execute(f"SET threads TO {THREADS}")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = '{folder / 'tmp'}'")
    con.execute(
        f"""CREATE TABLE t AS SELECT i + 1 AS customer_id,
            (['US', 'GB', 'NO', 'SE', 'DE'])[1 + (hash(i) % 5)::INT] AS country,
            round(20000 + (hash(i * 7) % 100000) / 1.7, 2) AS income,
            (18 + hash(i * 13) % 70)::BIGINT AS age,
            DATE '2016-01-01' + (hash(i * 17) % 3000)::INT AS signup_date,
            'user' || i || '@example.com' AS email
        FROM range({rows}) r(i)"""
    )
    if "parquet" in paths:
        con.execute(f"COPY t TO '{paths['parquet']}' (FORMAT parquet)")
    if "csv" in paths:
        con.execute(f"COPY t TO '{paths['csv']}' (FORMAT csv, HEADER true)")
    con.close()
    return paths


def make_repo(root: Path, data: Path, fmt: str) -> Path:
    """A repository whose dataset is a pointer into the data cache (the large-data path: no re-hash)."""
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.hashing import hash_file
    from mlci_tui.data.pointer import Pointer, dump_pointer

    repo = common.git_init(root / f"repo-{fmt}")
    (repo / "data").mkdir(exist_ok=True)
    (repo / "mlci.yaml").write_text(SCHEMA % {"ext": fmt})
    cache = DataCache.for_repo(repo)
    digest = hash_file(data, "blake3")
    obj = cache.object_path(digest)
    obj.parent.mkdir(parents=True, exist_ok=True)
    if not obj.exists():
        os.link(data, obj)  # same bytes, no copy of a large file
    pointer = Pointer(path=f"data/customers.{fmt}", algo="blake3", hash=digest, size=data.stat().st_size, format=fmt)
    (repo / "data" / f"customers.{fmt}.mlci").write_text(dump_pointer(pointer))
    return repo


def bench_env(**extra: str) -> dict[str, str]:
    return common.env(MLCI_DUCKDB_THREADS=THREADS, MLCI_DUCKDB_MEMORY_LIMIT=MEMORY_LIMIT, **extra)


def mlci_once(repo: Path, *, new_version: bool, src: Path | None = None) -> float:
    """The `mlci data validate` process; a new version has no stored profile (computed in the pass).
    With `src`, `python -m mlci_tui` from that source tree (`--against`)."""
    if new_version:
        shutil.rmtree(repo / ".git" / "mlci" / "validate" / "profiles", ignore_errors=True)
    if src is None:
        return common.time_cmd([common.MLCI, "data", "validate", "--no-cache", "--no-record"], repo, env=bench_env())
    argv = [common.PYTHON, "-m", "mlci_tui", "data", "validate", "--no-cache", "--no-record"]
    return common.time_cmd(argv, repo, env=bench_env(PYTHONPATH=str(src)))


def bare_once(folder: Path, data: Path, fmt: str) -> float:
    script = BARE_SCRIPT.replace("QUERY", repr(BARE))
    return common.time_cmd(
        [common.PYTHON, "-c", script, str(data), fmt, THREADS, MEMORY_LIMIT], folder, env=bench_env()
    )


def pandera_once(python: str, folder: Path, data: Path, fmt: str) -> float:
    script = folder / "validate_pandera.py"
    if not script.exists():
        script.write_text(PANDERA)
    return common.time_cmd([python, str(script), str(data), fmt], folder, env=bench_env())


def main() -> None:
    parser = common.base_args(__doc__ or "")
    parser.add_argument(
        "--rows", type=int, default=None, help="rows of the generated table (default 10M; --quick 500k)"
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--memory-rows", type=int, default=None, help="rows of the CSV for the peak memory run")
    parser.add_argument("--no-pandera", action="store_true", help="skip pandera (e.g. at sizes pandas cannot hold)")
    parser.add_argument("--name", default="validate", help="results/NAME.json (default validate)")
    parser.add_argument("--formats", default="parquet,csv", help="which inputs to time (default parquet,csv)")
    parser.add_argument(
        "--against",
        type=Path,
        help="another mlci source tree (e.g. `git archive REV | tar -x -C DIR`): both trees' new-version "
        "validation as `python -m mlci_tui`, in the same interleaved rounds",
    )
    args = parser.parse_args()
    rows = args.rows or (500_000 if args.quick else 10_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    scratch = common.fresh_dir("validate")
    paths = generate(scratch / "data", rows)
    sizes = {fmt: p.stat().st_size for fmt, p in paths.items()}
    print(f"rows {rows:,}; parquet {sizes['parquet'] / 2**20:.0f} MiB, csv {sizes['csv'] / 2**20:.0f} MiB", flush=True)
    results: dict[str, Any] = {
        "rows": rows,
        "sizes": sizes,
        "machine": common.machine(),
        "quick": args.quick,
        "threads": THREADS,
        "memory_limit": MEMORY_LIMIT,
    }
    peer = common.peer_python()
    has_pandera = (
        not args.no_pandera
        and bool(peer)
        and subprocess.run([peer or "", "-c", "import pandera"], capture_output=True).returncode == 0
    )
    if has_pandera:
        results["pandera_version"] = subprocess.run(
            [peer or "", "-c", "import pandera, pandas; print(pandera.__version__, pandas.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    from mlci_tui import __version__

    results["mlci_version"] = __version__
    import duckdb

    results["duckdb_version"] = duckdb.__version__
    for fmt in args.formats.split(","):
        repo = make_repo(scratch, paths[fmt], fmt)
        common.run([common.MLCI, "data", "validate", "--no-cache", "--no-record"], repo, env=bench_env())  # passes
        variants = {
            "mlci validate, new version": lambda repo=repo: mlci_once(repo, new_version=True),
            "mlci validate, known version": lambda repo=repo: mlci_once(repo, new_version=False),
            "bare DuckDB scan": lambda fmt=fmt: bare_once(scratch, paths[fmt], fmt),
        }
        if args.against:
            variants["mlci validate, new version (this tree, python -m)"] = lambda repo=repo: mlci_once(
                repo, new_version=True, src=common.ROOT
            )
            variants["mlci validate, new version (--against, python -m)"] = lambda repo=repo: mlci_once(
                repo, new_version=True, src=args.against
            )
        if has_pandera:
            variants["pandera (pandas)"] = lambda fmt=fmt: pandera_once(peer or "", scratch, paths[fmt], fmt)
        samples = common.interleave(variants, repeats, warmup=0)
        table = common.summarise(samples, baseline="bare DuckDB scan")
        common.print_table(f"validate {fmt}, {rows:,} rows ({sizes[fmt] / 2**20:.0f} MiB)", table)
        results[fmt] = table
        results[f"{fmt}_loadavg"] = [round(x, 2) for x in os.getloadavg()]

    # peak memory of the command on a CSV under DuckDB's memory limit
    mem_rows = args.memory_rows or (1_000_000 if args.quick else rows)
    if mem_rows < 0:  # no memory run
        common.write_results(args.name, results)
        return
    if mem_rows != rows:
        shutil.rmtree(scratch / "data", ignore_errors=True)  # disk: the large CSV only
        for fmt in ("parquet", "csv"):
            shutil.rmtree(scratch / f"repo-{fmt}", ignore_errors=True)
    mem_csv = paths["csv"] if mem_rows == rows else generate(scratch / "mem", mem_rows, formats=("csv",))["csv"]
    repo = make_repo(scratch / "mem-repo", mem_csv, "csv")
    common.write_results(args.name, results)  # the timings are kept if the memory run fails
    t0 = time.perf_counter()
    try:
        common.time_cmd(
            [common.MLCI, "data", "validate", "--no-cache", "--no-record"], repo, env=bench_env(), rss=True, check=True
        )
    except RuntimeError as exc:
        results["memory_error"] = str(exc)[-500:]
        print(f"memory run failed: {exc}")
    peak, cpu = common._LAST_CPU[1], common._LAST_CPU[0]
    results["memory"] = {
        "csv_bytes": mem_csv.stat().st_size,
        "rows": mem_rows,
        "duckdb_memory_limit": MEMORY_LIMIT,
        "threads": THREADS,
        "peak_rss_mib": peak,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"\npeak RSS validating a {mem_csv.stat().st_size / 2**20:.0f} MiB CSV ({mem_rows:,} rows), "
        f"memory_limit {MEMORY_LIMIT}, {THREADS} threads: {peak} MiB"
    )
    common.write_results(args.name, results)
    print(json.dumps({k: v for k, v in results.items() if k in ("parquet", "csv", "memory")}, indent=1, default=str))


if __name__ == "__main__":
    main()
