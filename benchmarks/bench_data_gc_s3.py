"""Deleting from an S3 remote: `mlci data gc --remote`'s deletion step, batched vs one request per object.

An S3 server on loopback (moto's server mode, its own process so that its CPU is not
counted as mlci's) holds OBJECTS small objects under `cache/`. Each repetition uploads them
(untimed), then times `mlci_tui.data.gc.delete_remote` deleting all of them with -j 4:

  - batched: up to 1,000 keys per DeleteObjects request (what gc does on S3);
  - per object: one DeleteObject request per object (gc's path for every other remote,
    and what it did on S3 before the batching).

Every run checks that the bucket is empty afterwards. A real S3 endpoint adds a network
round trip to every request, so the gap grows there; loopback is the floor of the ratio.

Usage: python benchmarks/bench_data_gc_s3.py [--quick] [--objects N] [--repeats N]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

BUCKET = "mlci-gc-bench"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
JOBS = 4


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument(
        "--objects", type=int, default=None, help="objects deleted per run (default 5,000; 1,000 quick)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 3; 1 quick)")
    args = parser.parse_args()
    count = args.objects or (1_000 if args.quick else 5_000)
    repeats = args.repeats or (1 if args.quick else 3)
    os.environ.update(CREDS)
    import boto3
    import s3fs

    from mlci_tui.data import gc as data_gc
    from mlci_tui.data.hashing import hash_bytes

    server, endpoint = _start_moto()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        objects = {hash_bytes(str(n).encode(), "blake3"): 1024 for n in range(count)}
        body = os.urandom(1024)

        def upload() -> None:
            def put(digest: str) -> None:
                s3.put_object(Bucket=BUCKET, Key=f"cache/{digest[:2]}/{digest[2:]}", Body=body)

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(put, objects))

        def run(batched: bool) -> Callable[[], float]:
            def timed() -> float:
                upload()
                fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
                real = data_gc._is_s3
                data_gc._is_s3 = (lambda _fs: True) if batched else (lambda _fs: False)  # type: ignore[assignment]
                try:
                    holder: dict[str, Any] = {}
                    elapsed = common.time_call(
                        lambda: holder.update(r=data_gc.delete_remote(fs, f"{BUCKET}/cache", objects, JOBS))
                    )
                finally:
                    data_gc._is_s3 = real  # type: ignore[assignment]
                result = holder["r"]
                left = s3.list_objects_v2(Bucket=BUCKET, Prefix="cache/").get("KeyCount", 0)
                if result.deleted != count or result.failed or left:
                    raise RuntimeError(f"deleted {result.deleted} of {count}, {left} left, {result.failed[:2]}")
                return elapsed

            return timed

        variants = {"batched (DeleteObjects, 1,000 per request)": run(True), "one request per object": run(False)}
        table = common.summarise(
            common.interleave(variants, repeats, warmup=0), "batched (DeleteObjects, 1,000 per request)"
        )
        common.print_table(f"deleting {count:,} objects from S3 on loopback (moto), -j {JOBS}", table)
        import moto

        common.write_results(
            "data_gc_s3",
            {
                "quick": args.quick,
                "objects": count,
                "jobs": JOBS,
                "repeats": repeats,
                "machine": common.machine(),
                "moto": moto.__version__,
                "s3fs": s3fs.__version__,
                "delete": table,
            },
        )
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
