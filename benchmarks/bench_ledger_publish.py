"""Scale past one machine (issue 19): query a published ledger from S3 without a local rebuild.

A ledger of N runs (`common.build_ledger`, compacted; its ledger ref fetched into a repository
of this benchmark's own, so no other benchmark's folder is touched) is published once with
`mlci ledger publish` to S3 on loopback (moto's server, a separate process). Then, interleaved
in one run, a clone with no cache answers the same SQL two ways:

- `mlci ledger query SQL`: DuckDB reads the published segments from S3 through fsspec, each
  object's SHA-256 checked first; nothing is written to the clone;
- `mlci sql SQL` after dropping the cache: the cold rebuild of `.git/mlci/cache.duckdb` from
  the ledger's segments, then the query (what a fresh clone does today).

A warm `mlci sql` (cache built) is timed beside them as the floor. moto's CPU is not in the
CPU column (it is another process); the wall time includes it.

Usage: python benchmarks/bench_ledger_publish.py [--sizes 100000[,1000000]] [--repeats 5]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

QUERIES = {
    "count": "SELECT count(*) FROM runs",
    "top 20 by a metric": (
        "SELECT run_id, metrics['acc'] AS acc FROM runs WHERE metrics['acc'] > 0.9 ORDER BY acc DESC LIMIT 20"
    ),
}
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [common.PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_keys()).create_bucket(Bucket="ledger")
    return proc, endpoint


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": CREDS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": CREDS["AWS_SECRET_ACCESS_KEY"]}


def reader_repo(n: int, endpoint: str) -> Path:
    """A repository holding only the compacted ledger of `n` runs, with the S3 remote declared."""
    built = [common.SCRATCH / f"scale-{n}-segments", common.SCRATCH / f"scale-{n}"]  # bench_scale's, read only
    source = next((p for p in built if (p / ".mlci-bench-ledger.json").exists()), None)
    if source is None:
        source = common.SCRATCH / f"publish-source-{n}"
        common.build_ledger(source, n)
    path = common.fresh_dir(f"publish-{n}")
    common.git_init(path)
    # the tip alone (as a CI clone fetches it): a million runs' history is gigabytes
    common.run(["git", "fetch", "-q", "--depth", "1", f"file://{source}", "refs/mlci/ledger:refs/mlci/ledger"], path)
    (path / "mlci.yaml").write_text(
        "data:\n  remotes:\n    s3:\n      url: s3://ledger/team\n"
        f"      options: {{client_kwargs: {{endpoint_url: '{endpoint}'}}}}\n"
    )
    return path


def measure(n: int, repeats: int, deadline: common.Deadline, endpoint: str) -> dict[str, Any]:
    repo = reader_repo(n, endpoint)
    environ = common.env(**CREDS)
    t0 = time.perf_counter()
    published = common.run([common.MLCI, "ledger", "publish"], repo, env=environ)
    publish_s = time.perf_counter() - t0
    print(published.strip())
    results: dict[str, Any] = {"publish_seconds": publish_s, "publish_output": published.strip()}
    for label, sql in QUERIES.items():

        def remote(sql: str = sql) -> float:
            return common.time_cmd([common.MLCI, "ledger", "query", sql], repo, rss=True, env=environ)

        def cold(sql: str = sql) -> float:
            common.drop_cache(repo)
            return common.time_cmd([common.MLCI, "sql", sql], repo, rss=True, env=environ)

        def warm(sql: str = sql) -> float:
            return common.time_cmd([common.MLCI, "sql", sql], repo, rss=True, env=environ)

        samples = common.interleave(
            {
                "ledger query from S3, no cache": remote,
                "cold rebuild + mlci sql": cold,
            },
            repeats,
            deadline,
            warmup=1,
        )
        common.run([common.MLCI, "sql", "SELECT 1"], repo, env=environ)  # the cache, for the floor
        samples.update(common.interleave({"warm mlci sql (cache built)": warm}, repeats, deadline, warmup=1))
        stats = common.summarise(samples, baseline="cold rebuild + mlci sql")
        common.print_table(f"{n:,} runs: {label}", stats)
        results[label] = stats
    return results


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--sizes", default="100000", help="comma-separated run counts")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    deadline = common.Deadline(args.budget or 3600)
    moto, endpoint = start_moto()
    try:
        found = {str(n): measure(n, args.repeats, deadline, endpoint) for n in map(int, args.sizes.split(","))}
    finally:
        moto.terminate()
        moto.wait()
    earlier = common.RESULTS_DIR / "ledger_publish.json"  # sizes measured by an earlier run are kept
    if earlier.exists() and not args.quick:
        found = {**json.loads(earlier.read_text()).get("sizes", {}), **found}
    common.write_results(
        "ledger_publish",
        {
            "machine": common.machine(),
            "load": common.cpu_pressure(),
            "loadavg": os.getloadavg(),
            "sizes": found,
            "quick": args.quick,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
