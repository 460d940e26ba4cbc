"""The ledger's size on disk after compaction, per run: what a clone fetching it receives.

For each size, a copy of the bench ledger (`common.build_ledger`, 10 params and 10 metrics a
run) is compacted by this code; then an empty repository fetches `refs/mlci/ledger` from it
(what a teammate's clone or a CI job receives), and the compacting clone itself is measured
after `git gc --prune=now` (what it holds once git has pruned the history compaction dropped).
The same fetch of the uncompacted ledger is the baseline. Sizes are bytes per run.

    python3 benchmarks/bench_ledger_size.py --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import common

REF = "refs/mlci/ledger"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, text=True).stdout


def fetched_bytes(source: Path, scratch: Path) -> dict[str, int]:
    """What an empty repository holds after fetching the ledger ref from `source`."""
    if scratch.exists():
        shutil.rmtree(scratch)
    _git(scratch.parent, "init", "-q", "--bare", "--template=", str(scratch))  # no sample hooks
    _git(scratch, "fetch", "-q", str(source), f"{REF}:{REF}")
    objects = _git(scratch, "count-objects", "-v")
    fields = dict(line.split(": ", 1) for line in objects.splitlines())
    out = {
        "object_bytes": (int(fields["size-pack"]) + int(fields["size"])) * 1024,  # packed or loose
        "git_dir_bytes": common._du(scratch),
        "commits": int(_git(scratch, "rev-list", "--count", REF).strip()),
    }
    shutil.rmtree(scratch)
    return out


def tree_bytes(repo: Path, prefix: str) -> int:
    out = _git(repo, "ls-tree", "-r", "-l", REF, "--", prefix)
    return sum(int(line.split()[3]) for line in out.splitlines())


def first_listing(source: Path, scratch: Path, pull: bool, trusting: bool = True) -> dict[str, Any]:
    """A teammate's first listing: a new clone (no ledger) gets the compacted ledger and lists
    the newest 20 runs (a cold cache build included). Wall and CPU of each step, peak memory.
    With `pull`, `mlci ledger pull` (its check of every incoming record included: the ledger
    needs ids derived from commits, `--valid`); else a `git fetch` of the ref. Not `trusting`:
    the clone's mlci.yaml loses `ledger.trust` (a signed compaction's segments checked too)."""
    if scratch.exists():
        shutil.rmtree(scratch)
    _git(source.parent, "clone", "-q", "--no-local", str(source), str(scratch))  # fetched, not hardlinked
    if not trusting and (scratch / "mlci.yaml").exists():
        (scratch / "mlci.yaml").unlink()
    out: dict[str, Any] = {}
    for step, argv in (
        ("fetch", [common.MLCI, "ledger", "pull"] if pull else ["git", "fetch", "-q", "origin", f"+{REF}:{REF}"]),
        ("runs", [common.MLCI, "runs", "--limit", "20", "--json"]),
    ):
        out[f"{step}_wall_s"] = round(common.time_cmd(argv, scratch, rss=True), 2)
        out[f"{step}_cpu_s"] = round(common._LAST_CPU[0] or 0, 2)
        out[f"{step}_peak_mib"] = round(common._LAST_CPU[1] or 0)
    out["first_listing_wall_s"] = round(out["fetch_wall_s"] + out["runs_wall_s"], 2)
    shutil.rmtree(scratch)
    return out


def sign_compactions(work: Path) -> None:
    """Commit an mlci.yaml to `work`'s main that signs its compactions with a new ed25519 key and
    trusts that key (`ledger.trust`): what a team whose CI compacts does; clones get it."""
    key = work.with_name(f"{work.name}-key")
    for leftover in (key, key.with_suffix(".pub")):
        leftover.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    (work / ".mlci-signers").write_text(f'ci@example.com namespaces="mlci-compaction" {kind} {blob}\n')
    (work / "mlci.yaml").write_text(
        f"ledger:\n  trust:\n    signing_key: {key}\n    principal: ci@example.com\n    allowed_signers: .mlci-signers\n"
    )
    _git(work, "add", "mlci.yaml", ".mlci-signers")
    # gc.auto=0: a commit in the bench ledger (many packs: every batch its own) would start
    # `git gc --auto` in the background, repacking it while the compaction and pulls are timed
    _git(
        work,
        "-c",
        "gc.auto=0",
        "-c",
        "user.name=bench",
        "-c",
        "user.email=b@x",
        "commit",
        "-q",
        "-m",
        "sign compactions",
    )


def measure(
    n: int, baseline: bool = True, listing: bool = False, valid: bool = False, signed: bool = False
) -> dict[str, Any]:
    source = common.SCRATCH / (f"scale-valid-{n}" if valid else f"scale-{n}")
    common.build_ledger(source, n, derived_ids=valid)
    work = source.with_name(f"{source.name}-size")
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work, symlinks=True)
    common.drop_cache(work)
    if signed:
        sign_compactions(work)
    found: dict[str, Any] = {"runs": n, "signed": signed, "load_before": round(os.getloadavg()[0], 1)}
    before = fetched_bytes(work, work.with_name(f"{work.name}-fetch")) if baseline else None
    t0, c0 = time.perf_counter(), common._cpu(resource.RUSAGE_CHILDREN)
    common.run([common.MLCI, "ledger", "compact"], work, timeout=3600)  # 1M: ~8 min quiet
    found["compact_wall_s"] = round(time.perf_counter() - t0, 1)
    found["compact_cpu_s"] = round(common._cpu(resource.RUSAGE_CHILDREN) - c0, 1)
    after = fetched_bytes(work, work.with_name(f"{work.name}-fetch"))
    if listing:
        found["first_listing"] = first_listing(work, work.with_name(f"{work.name}-clone"), pull=valid, trusting=False)
        if signed:
            found["first_listing_signed"] = first_listing(work, work.with_name(f"{work.name}-clone"), pull=valid)
    common.run(["git", "gc", "-q", "--prune=now"], work, timeout=3600)
    if before is not None:
        found["uncompacted_fetch_bytes_per_run"] = round(before["object_bytes"] / n)
    found["fetch_bytes_per_run"] = round(after["object_bytes"] / n)
    found["fetch_git_dir_bytes_per_run"] = round(after["git_dir_bytes"] / n)
    found["fetch_commits"] = after["commits"]
    found["compacting_clone_after_gc_bytes_per_run"] = round(common._du(work / ".git") / n)
    found["segments_parquet_bytes_per_run"] = round(
        sum(
            int(line.split()[3])
            for line in _git(work, "ls-tree", "-r", "-l", REF, "--", "segments/").splitlines()
            if line.endswith(".parquet")
        )
        / n
    )
    found["segments_ids_bytes_per_run"] = (
        round(tree_bytes(work, "segments/") / n) - found["segments_parquet_bytes_per_run"]
    )
    found["load_after"] = round(os.getloadavg()[0], 1)
    shutil.rmtree(work)
    return found


MLFLOW_LOG = """
import json, sys, time
import mlflow
from mlflow.entities import Metric, Param
store, runs = sys.argv[1], json.loads(sys.stdin.read())
mlflow.set_tracking_uri(f"sqlite:///{store}")
client = mlflow.MlflowClient()
exp = client.create_experiment("size")
now = int(time.time() * 1000)
for params, metrics in runs:
    run = client.create_run(exp)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id)
"""


def mlflow_bytes(n: int) -> dict[str, Any] | None:
    """MLflow's SQLite tracking store holding `n` runs of the same params and metrics as the bench
    ledger's (the peer: what a team's MLflow server keeps per run, before any artifact)."""
    import json
    import random
    import sqlite3

    python = common.peer_python()
    if python is None:
        return None
    rng = random.Random(0)
    runs = [(common.flatten(common.params_doc(i, rng)), common.metrics_doc(rng)) for i in range(n)]
    folder = common.SCRATCH / "size-mlflow"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    db = folder / "mlflow.db"
    subprocess.run([python, "-c", MLFLOW_LOG, str(db)], input=json.dumps(runs), text=True, check=True, cwd=folder)
    logged = db.stat().st_size
    with sqlite3.connect(db) as con:
        con.execute("VACUUM")
    out = {"runs": n, "bytes_per_run": round(logged / n), "after_vacuum_bytes_per_run": round(db.stat().st_size / n)}
    shutil.rmtree(folder)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated run counts")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip fetching the uncompacted ledger (minutes at 1M runs)"
    )
    parser.add_argument("--name", default="ledger_size", help="results/NAME.json")
    parser.add_argument("--first-listing", action="store_true", help="time a new clone's pull and first listing")
    parser.add_argument("--valid", action="store_true", help="runs with ids derived from commits: a real `ledger pull`")
    parser.add_argument(
        "--signed", action="store_true", help="compact signed; time a first listing that trusts the signature too"
    )
    parser.add_argument("--mlflow", type=int, default=0, help="also log N runs to MLflow's SQLite store (the peer)")
    args = parser.parse_args()
    rows = [
        measure(int(n), baseline=not args.no_baseline, listing=args.first_listing, valid=args.valid, signed=args.signed)
        for n in args.sizes.split(",")
        if n
    ]
    for row in rows:
        print(row)
    peer = mlflow_bytes(args.mlflow) if args.mlflow else None
    if peer is not None:
        print("mlflow sqlite:", peer)
    common.write_results(args.name, {"machine": common.machine(), "rows": rows, "mlflow_sqlite": peer})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
