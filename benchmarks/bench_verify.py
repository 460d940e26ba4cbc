"""Verifying a pull: how long `ledger pull`'s check of what a remote brings takes.

A segment of N run records (ids derived from their commits, as capture writes them) is
checked as `ledger pull` checks a new segment (`verify._segment_problem`: read, columns,
unique ids = `.ids`, every body a valid record; past `verify.PARALLEL_ROWS` rows, one
forked process per core), then as a clone that holds those records already checks it (only
the bodies' blob ids computed and looked up); loose event files are
checked one by one (`verify.check_record_file`), against the check before this one
(commit 257957a, read from git) on the same bytes.

    python benchmarks/bench_verify.py --rows 100000 1000000 --loose 20000
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import run_record  # noqa: E402

from mlci_tui.ledger import records, verify  # noqa: E402


def bodies(count: int) -> list[bytes]:
    rng = random.Random(0)
    out = []
    for i in range(count):
        record = run_record(i, rng)
        record["id"] = record["run_id"] = records.derived_id("commit", record["commit"])
        out.append(records.dumps(record))
    return out


def segment(data: list[bytes]) -> tuple[bytes, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted((records.loads(b)["id"], b.decode()) for b in data)
    table = pa.table({"id": [r[0] for r in rows], "type": ["run"] * len(rows), "body": [r[1] for r in rows]})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue(), ("\n".join(r[0] for r in rows) + "\n").encode()


def old_check() -> types.ModuleType:
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", "257957a:mlci_tui/ledger/verify.py"], cwd=root, capture_output=True, check=True
    ).stdout
    module = types.ModuleType("verify_before")
    exec(compile(source, "verify_before", "exec"), module.__dict__)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000])
    parser.add_argument("--loose", type=int, default=20_000)
    args = parser.parse_args()
    loose = bodies(args.loose)
    paths = [records.record_path(records.loads(b)["id"]) for b in loose]
    before = old_check()
    for label, check in (("before", before.record_file_problem), ("now", verify.record_file_problem)):
        start = time.perf_counter()
        assert not any(check(p, b) for p, b in zip(paths, loose))
        print(f"loose records, {label}: {(time.perf_counter() - start) / len(loose) * 1e6:.1f} us each")
    for count in args.rows:
        data, ids = segment(loose * (count // len(loose)) if count <= len(loose) else bodies(count))
        warnings: list[str] = []
        start = time.perf_counter()
        problem = verify._segment_problem(data, ids, warnings, "segments/bench.parquet")
        seconds = time.perf_counter() - start
        assert problem is None, problem
        print(f"segment of {count:,} records ({len(data) / 2**20:.0f} MiB): {seconds:.2f} s")
        # the same segment pulled by a clone that holds its records already (a remote's compaction)
        held = HeldBodies(data)
        start = time.perf_counter()
        problem = verify._segment_problem(data, ids, warnings, "segments/bench.parquet", held)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        assert problem is None, problem
        print(f"  ... when this clone holds those records: {seconds:.2f} s")


class HeldBodies:
    """What `verify.Known` answers for a clone that holds every row of a segment (its bodies'
    blob ids, computed before the clock starts, as a clone's ls-tree gives them)."""

    def __init__(self, data: bytes) -> None:
        self.oids = {verify.blob_id(b.encode()) for b in verify._bodies(data)}

    def holds_body(self, oid: str) -> bool:
        return oid in self.oids


if __name__ == "__main__":
    main()
