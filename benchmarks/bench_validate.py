"""Data validation: mlci's DuckDB checks vs a bare DuckDB aggregate scan, vs pandera (pandas).

- Parquet and the same data as CSV: `Validator` (the customers schema: type, nullable,
  unique, min/max, allowed values, regex, primary key, row count, plus the profile) against
  a hand-written DuckDB query computing count, nulls, min and max of the same columns and
  the distinct key count, with the same memory limit and threads. Target: within 1.5x.
- pandera 0.x with its pandas backend, in the peers venv, on the same checks and the same
  file (reading included on both sides). Target: mlci at least 5x faster.
- Peak memory of `mlci data validate` on a large CSV under a DuckDB memory limit.

Sizes are stated with every figure (`--rows`); the issue asks for ~1 GiB and 10M rows, the
shared machine here gets smaller inputs unless `--rows` says otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

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

PANDERA = r"""
import sys, time
import pandas as pd
import pandera.pandas as pa
path, fmt = sys.argv[1], sys.argv[2]
schema = pa.DataFrameSchema({
    "customer_id": pa.Column(int, nullable=False, unique=True),
    "country": pa.Column(str, pa.Check.isin(["US", "GB", "NO", "SE", "DE"]), nullable=True),
    "income": pa.Column(float, pa.Check.ge(0), nullable=True),
    "age": pa.Column(int, [pa.Check.ge(18), pa.Check.le(120)], nullable=True),
    "signup_date": pa.Column("datetime64[ns]", pa.Check.ge(pd.Timestamp("2015-01-01")), nullable=True),
    "email": pa.Column(str, pa.Check.str_matches(r"[^@]+@[^@]+"), nullable=True),
}, unique=["customer_id"])
t0 = time.perf_counter()
if fmt == "csv":
    df = pd.read_csv(path, parse_dates=["signup_date"])
else:
    df = pd.read_parquet(path)
    df["signup_date"] = pd.to_datetime(df["signup_date"])
schema.validate(df, lazy=True)
print(time.perf_counter() - t0)
"""


def generate(folder: Path, rows: int) -> dict[str, Path]:
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"parquet": folder / "customers.parquet", "csv": folder / "customers.csv"}
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute(
        f"""CREATE TABLE t AS SELECT i + 1 AS customer_id,
            (['US', 'GB', 'NO', 'SE', 'DE'])[1 + (hash(i) % 5)::INT] AS country,
            round(20000 + (hash(i * 7) % 100000) / 1.7, 2) AS income,
            (18 + hash(i * 13) % 70)::BIGINT AS age,
            DATE '2016-01-01' + (hash(i * 17) % 3000)::INT AS signup_date,
            'user' || i || '@example.com' AS email
        FROM range({rows}) r(i)"""
    )
    con.execute(f"COPY t TO '{paths['parquet']}' (FORMAT parquet)")
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


def validate_once(repo: Path) -> float:
    from mlci_tui import config
    from mlci_tui.gitio import Repo
    from mlci_tui.validate.run import Validator

    r = Repo.find(repo)
    datasets = config.load(repo).data["datasets"]

    def call() -> None:
        v = Validator(r, datasets, record=False, use_cache=False)
        [result] = v.validate_all(v.select([]))
        assert result.status == "pass", [(c.check, c.column, c.failures) for c in result.checks if c.failures]

    return common.time_call(call)


def bare_once(data: Path, fmt: str) -> float:
    from mlci_tui.validate import engine

    def call() -> None:
        with tempfile.TemporaryDirectory() as spill:
            con = engine.connect(Path(spill))
            rel = f"read_parquet('{data}')" if fmt == "parquet" else f"read_csv('{data}', header = true)"
            con.execute(BARE.format(rel=rel)).fetchall()
            con.close()

    return common.time_call(call)


def pandera_once(python: str, data: Path, fmt: str) -> float:
    proc = subprocess.run([python, "-c", PANDERA, str(data), fmt], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--rows", type=int, default=None, help="rows of the generated table (default 4M; --quick 500k)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--memory-rows", type=int, default=None, help="rows of the CSV for the peak memory run")
    args = parser.parse_args()
    rows = args.rows or (500_000 if args.quick else 4_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    scratch = common.fresh_dir("validate")
    paths = generate(scratch / "data", rows)
    sizes = {fmt: p.stat().st_size for fmt, p in paths.items()}
    print(f"rows {rows:,}; parquet {sizes['parquet'] / 2**20:.0f} MiB, csv {sizes['csv'] / 2**20:.0f} MiB", flush=True)
    results: dict[str, Any] = {"rows": rows, "sizes": sizes, "machine": common.machine(), "quick": args.quick}
    peer = common.peer_python()
    has_pandera = (
        bool(peer) and subprocess.run([peer or "", "-c", "import pandera"], capture_output=True).returncode == 0
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
    for fmt in ("parquet", "csv"):
        repo = make_repo(scratch, paths[fmt], fmt)
        variants = {
            "mlci validate": lambda repo=repo: validate_once(repo),
            "bare DuckDB scan": lambda fmt=fmt: bare_once(paths[fmt], fmt),
        }
        if has_pandera:
            variants["pandera (pandas)"] = lambda fmt=fmt: pandera_once(peer or "", paths[fmt], fmt)
        samples = common.interleave(variants, repeats, warmup=1)
        table = common.summarise(samples, baseline="mlci validate")
        common.print_table(f"validate {fmt}, {rows:,} rows ({sizes[fmt] / 2**20:.0f} MiB)", table)
        results[fmt] = table

    # peak memory of the command on a CSV under a DuckDB memory limit
    mem_rows = args.memory_rows or (1_000_000 if args.quick else rows)
    mem_paths = paths if mem_rows == rows else generate(scratch / "mem", mem_rows)
    repo = make_repo(scratch / "mem-repo", mem_paths["csv"], "csv")
    limit = "512MB"
    env = common.env(MLCI_DUCKDB_MEMORY_LIMIT=limit, MLCI_DUCKDB_THREADS="2")
    t0 = time.perf_counter()
    common.time_cmd(
        [common.PYTHON, "-m", "mlci_tui", "data", "validate", "--no-cache", "--no-record"], repo, env=env, rss=True
    )
    peak = common._LAST_CPU[1]
    results["memory"] = {
        "csv_bytes": mem_paths["csv"].stat().st_size,
        "rows": mem_rows,
        "duckdb_memory_limit": limit,
        "peak_rss_mib": peak,
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"\npeak RSS validating a {mem_paths['csv'].stat().st_size / 2**20:.0f} MiB CSV ({mem_rows:,} rows), "
        f"memory_limit {limit}: {peak} MiB"
    )
    common.write_results("validate", results)
    print(json.dumps({k: v for k, v in results.items() if k in ("parquet", "csv", "memory")}, indent=1, default=str))


if __name__ == "__main__":
    main()
