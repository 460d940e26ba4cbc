"""Verifying a pull: how long `ledger pull`'s check of what a remote brings takes.

A segment of N run records (ids derived from their commits, as capture writes them) is
checked as `ledger pull` checks a new segment (`verify._segment_problem`: read, columns,
unique ids = `.ids`, every body a valid record; past `verify.PARALLEL_ROWS` rows, one
forked process per core), then as a clone that holds those records already checks it (only
the bodies' blob ids computed and looked up); loose event files are checked one by one
(`verify.check_record_file`). With `--against SRC` (an older mlci source tree, e.g. `git
archive` of a commit unpacked in a temp folder) its `ledger/verify.py` checks the same bytes
in the same rounds, the two alternated; without it, the check of commit 257957a (read from
git). Each figure is wall and CPU time (this process and its forked workers), the median of
`--rounds` rounds, with the load average.

    python benchmarks/bench_verify.py --rows 100000 1000000 --loose 20000 [--against SRC] [--rounds 3]
        [--cases whole held]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def old_check(against: Path | None) -> types.ModuleType:
    """The older `ledger/verify.py` as a module of its own (registered, so that its forked
    workers' function can be pickled by name)."""
    if against is not None:
        source = (against / "mlci_tui" / "ledger" / "verify.py").read_bytes()
    else:
        root = Path(__file__).resolve().parents[1]
        source = subprocess.run(
            ["git", "show", "257957a:mlci_tui/ledger/verify.py"], cwd=root, capture_output=True, check=True
        ).stdout
    module = types.ModuleType("verify_before")
    sys.modules[module.__name__] = module
    exec(compile(source, "verify_before", "exec"), module.__dict__)
    return module


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall, CPU of this process and the workers it forked, the result)."""
    c0, t0 = _cpu(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, _cpu() - c0, result


def interleaved(cases: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, Any]]:
    """Every case once per round, in an order shuffled per round; wall, CPU and load per round."""
    got: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
    for i in range(rounds):
        order = list(cases)
        random.Random(i).shuffle(order)
        for name in order:
            load = os.getloadavg()[0]
            wall, cpu, result = timed(cases[name])
            assert not result, (name, result)
            got[name].append((wall, cpu, load))
    out = {}
    for name, samples in got.items():
        out[name] = {
            "wall": statistics.median(s[0] for s in samples),
            "cpu": statistics.median(s[1] for s in samples),
            "rounds": [{"wall": w, "cpu": c, "load": ld} for w, c, ld in samples],
        }
        walls = ", ".join(f"{w:.2f}" for w, _c, _l in samples)
        loads = ", ".join(f"{ld:.1f}" for _w, _c, ld in samples)
        print(f"  {name}: wall {out[name]['wall']:.2f} s, CPU {out[name]['cpu']:.2f} s (rounds {walls}; load {loads})")
        sys.stdout.flush()
    return out


class HeldBodies:
    """What `verify.Known` answers for a clone that holds every row of a segment (its bodies'
    blob ids, computed before the clock starts, as a clone's ls-tree gives them)."""

    def __init__(self, data: bytes) -> None:
        self.oids = {verify.blob_id(b.encode()) for b in verify._bodies(data)}

    def holds_body(self, oid: str) -> bool:
        return oid in self.oids


def segment_cases(checks: dict[str, types.ModuleType], data: bytes, ids: bytes) -> dict[str, Callable[[], Any]]:
    """Each check of one segment: whole (a new segment), and held (by a clone that has its rows)."""
    held = HeldBodies(data)
    cases: dict[str, Callable[[], Any]] = {}
    for label, module in checks.items():
        cases[f"whole, {label}"] = lambda m=module: m._segment_problem(data, ids, [], "segments/bench.parquet")
        cases[f"held, {label}"] = lambda m=module: m._segment_problem(data, ids, [], "segments/bench.parquet", held)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000])
    parser.add_argument("--loose", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, default=None, help="an older mlci source tree")
    parser.add_argument("--cases", nargs="*", choices=("whole", "held"), default=["whole", "held"])
    args = parser.parse_args()
    before = old_check(args.against)
    checks = {"before": before, "now": verify}
    print(f"load {os.getloadavg()}, {os.cpu_count()} cores")
    loose = bodies(args.loose)
    paths = [records.record_path(records.loads(b)["id"]) for b in loose]
    print(f"loose records ({len(loose):,}):")
    interleaved(
        {
            label: lambda m=module: [p for p, b in zip(paths, loose) if m.record_file_problem(p, b)]
            for label, module in checks.items()
        },
        args.rounds,
    )
    for count in args.rows:
        data, ids = segment(loose * (count // len(loose)) if count <= len(loose) else bodies(count))
        print(f"segment of {count:,} records ({len(data) / 2**20:.0f} MiB):")
        cases = segment_cases(checks, data, ids)
        interleaved({k: v for k, v in cases.items() if k.split(",")[0] in args.cases}, args.rounds)


if __name__ == "__main__":
    main()
