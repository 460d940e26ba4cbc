"""Benchmarks of `mlci tui` (not collected by pytest).

    python benchmarks/bench_tui.py [--rounds R] [--against DIR] [--no-paint] [N ...]

For each ledger size N (default 1000 10000) it builds, once, a repository whose ledger holds
N runs (6 params, 4 metrics, 2 step series of 10 steps each), warms the DuckDB cache, and
measures:

- first paint: from spawning `python -c <run the app headless>` to the first frame that
  shows the runs table (the child prints the wall clock at that moment), warm cache; and
  the same after deleting the cache (cold: the cache is built from the ledger first);
- peak RSS of that process;
- filter and sort latency in a running app, driven by Pilot: from pressing enter (or `s`)
  to the next frame showing the new result; 12 filters and 6 sorts per round, each round
  in a fresh process (whose peak RSS is reported too);
- the query alone (`data.load_view`, as the app timed it), median.

`--against DIR` runs the same filter/sort rounds with the `mlci_tui` package found in DIR
(for example an older commit: `git archive REV mlci_tui | tar -x -C DIR`), interleaved
round by round with the current one, and reports the ratio. Numbers go to stdout as
Markdown tables, after a comment with the 1-minute load average before each round (the
machine may be shared: quote the load with every figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.ledger.store import LedgerStore

BENCH_DIR = Path(os.environ.get("MLCI_TUI_BENCH_DIR", "/tmp/mlci-tui-bench"))
MODELS = ["linear", "cnn-small", "cnn-wide", "resnet18", "vit-tiny"]

CHILD = r"""
import json, resource, sys, time
from mlci_tui import config
from mlci_tui.gitio import Repo
from mlci_tui.tui.app import MlciApp

class Bench(MlciApp):
    def _first_paint_done(self):
        super()._first_paint_done()
        self.report = {"painted": time.time(), "rows": self.runs_screen.table.row_count}
        self.exit()

repo = Repo.find(sys.argv[1])
app = Bench(repo, config.load(repo.root), watch=False)
app.run(headless=True, size=(160, 50))
app.report["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(app.report))
"""


def build(n: int) -> Path:
    root = BENCH_DIR / f"runs-{n}"
    if (root / ".git" / "mlci" / "cache.duckdb").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    (root / "mlci.yaml").write_text(
        "metrics:\n  fields:\n    acc: {direction: max}\n    loss: {direction: min}\n    f1: {direction: max}\n"
    )
    rng = random.Random(n)
    store = LedgerStore(Repo.find(root))
    batch: list[dict[str, Any]] = []
    start = 1_700_000_000
    for i in range(n):
        lr = rng.choice([0.1, 0.03, 0.01, 0.003, 0.001])
        model = rng.choice(MODELS)
        acc = min(0.99, max(0.3, rng.gauss(0.8, 0.08)))
        loss = max(0.01, 1.2 - acc + rng.gauss(0, 0.05))
        steps = []
        for s in range(10):
            steps.append(["plots/loss.tsv", "loss", s, loss + (10 - s) * 0.05])
            steps.append(["plots/acc.tsv", "acc", s, acc - (10 - s) * 0.02])
        rid = records.new_id()
        when = records.epoch_iso(start + i * 60)
        body = {
            "run_id": rid,
            "kind": rng.choice(["commit", "experiment", "trial"]),
            "name": f"trial-{i}",
            "status": "done",
            "started": when,
            "ended": when,
            "branch": rng.choice(["main", "exp/a", "exp/b"]),
            "message": f"try {model} with lr {lr}",
            "params": {
                "params.yaml": {
                    "lr": lr,
                    "model": model,
                    "epochs": rng.choice([5, 10, 20]),
                    "batch": rng.choice([32, 64, 128]),
                    "seed": i,
                    "dropout": rng.choice([0.0, 0.1, 0.2]),
                }
            },
            "metrics": {"metrics.json": {"acc": acc, "loss": loss, "f1": acc - 0.02, "auc": min(1.0, acc + 0.05)}},
            "steps": steps,
        }
        batch.append(records.envelope("run", body, event_id=rid, time=when))
        if len(batch) == 2000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    t0 = time.perf_counter()
    with LedgerCache(Repo.find(root)).connect():
        pass
    print(f"built {n} runs; cache build {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return root


def first_paint(root: Path) -> dict[str, Any]:
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["seconds"] = report["painted"] - started
    return report


def cold_first_paint(root: Path) -> dict[str, Any]:
    cold = root.parent / f"{root.name}-cold"
    shutil.rmtree(cold, ignore_errors=True)
    shutil.copytree(root, cold, symlinks=True)
    for leftover in (cold / ".git" / "mlci").glob("cache*"):
        leftover.unlink()
    try:
        return first_paint(cold)
    finally:
        shutil.rmtree(cold, ignore_errors=True)


async def actions(root: Path) -> dict[str, list[float]]:
    from mlci_tui import config
    from mlci_tui.tui.app import MlciApp

    app = MlciApp(Repo.find(root), config.load(root), watch=False)
    out: dict[str, list[float]] = {"filter": [], "sort": [], "sort_paused": [], "query": []}
    filters = [
        "acc > 0.9",
        'acc > 0.8 and model ~ "cnn.*"',
        "lr in (0.1, 0.01) and loss < 0.5",
        "min(loss) < 0.5",
        "loss@step=5 < 0.6",
        "",
    ]
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.runs_screen
        while screen.result is None:
            await pilot.pause(0.01)

        async def painted(t0: float) -> float:
            """From t0 to the end of the frame that shows the new result."""
            while app.last_paint < t0:
                await asyncio.sleep(0.002)
            return app.last_paint - t0

        filter_input = app.query_one("#filter")
        for text in filters * 2:
            filter_input.value = text  # type: ignore[attr-defined]
            filter_input.focus()
            await pilot.pause()
            t0 = time.perf_counter()
            await filter_input.action_submit()  # type: ignore[attr-defined]  # what enter does
            out["filter"].append(await painted(t0))
            assert screen.error is None, screen.error
            out["query"].append(screen.result.seconds if screen.result else 0.0)
            await pilot.pause()
        # sorts right after the view changed, then sorts after a second of looking at the view
        # (time for a paged view to read the rest of its values: the sort is then in memory)
        for series, pause in (("sort", 0.0), ("sort_paused", 1.0)):
            for key in ["m:acc", "m:loss", "p:lr", "subject", "time", "m:acc"]:
                table = screen.table
                table.cursor_col = [c.key for c in table.columns].index(key)
                await pilot.pause(pause or None)
                t0 = time.perf_counter()
                screen.action_sort()  # what `s` does
                out[series].append(await painted(t0))
                await pilot.pause()
    return out


def actions_in_child(root: Path, package_dir: str | None) -> dict[str, Any]:
    """One round of filters and sorts in a fresh process (with `package_dir` first on the path).

    The other package gets its own copy of the repository: two cache schemas over one file
    would rebuild the cache in every round."""
    env = dict(os.environ)
    if package_dir:
        env["PYTHONPATH"] = package_dir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        copy = root.parent / f"{root.name}-against"
        if not copy.exists():
            shutil.copytree(root, copy, symlinks=True)
        root = copy
    # bring the cache up to date (and to this package's schema) before the timed, measured process
    warm = "import sys; from mlci_tui.gitio import Repo; from mlci_tui.ledger.cache import LedgerCache; "
    warm += "LedgerCache(Repo.find(sys.argv[1])).connect().__enter__()"
    subprocess.run([sys.executable, "-c", warm, str(root)], env=env, check=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child-actions", str(root)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def child_actions(root: Path) -> None:
    import resource

    out: dict[str, Any] = dict(asyncio.run(actions(root)))
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def versions() -> str:
    from importlib.metadata import version

    import duckdb
    import pyarrow
    import textual.app  # noqa: F401  (textual has no __version__ of its own)

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; python {sys.version.split()[0]}, "
        f"textual {version('textual')}, duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}; "
        f"{os.cpu_count()} cores; load average {load}"
    )


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


def main(sizes: list[int], *, rounds: int, against: str | None, paint: bool) -> None:
    print(f"<!-- {versions()} -->")
    paint_rows = []
    action_rows = []
    loads: list[float] = []  # the 1-minute load average before each round (the machine is shared)
    for n in sizes:
        root = build(n)
        if paint:
            warm = [first_paint(root) for _ in range(3)]
            cold = cold_first_paint(root)
            assert all(r["rows"] == n for r in warm), warm
            paint_rows.append(
                (n, statistics.median(r["seconds"] for r in warm), cold["seconds"], max(r["rss_mb"] for r in warm))
            )
        variants = {"now": None, **({"against": against} if against else {})}
        samples: dict[str, dict[str, list[float]]] = {
            v: {"filter": [], "sort": [], "sort_paused": [], "query": [], "rss": []} for v in variants
        }
        for _ in range(rounds):
            for name, package_dir in variants.items():
                loads.append(os.getloadavg()[0])
                got = actions_in_child(root, package_dir)
                for key in ("filter", "sort", "sort_paused", "query"):
                    samples[name][key] += got[key]
                samples[name]["rss"].append(got["rss_mb"])
        action_rows.append((n, samples))
    loads.append(os.getloadavg()[0])
    print(f"<!-- load average (1 min) before each round and at the end: {' '.join(f'{x:.2f}' for x in loads)} -->")
    if paint_rows:
        print("| runs | first paint, warm cache (s) | first paint, cold cache (s) | peak RSS (MB) |")
        print("|---|---|---|---|")
        for n, warm_s, cold_s, rss in paint_rows:
            print(f"| {n:,} | {warm_s:.2f} | {cold_s:.2f} | {rss:.0f} |")
        print()
    keys = ("filter", "sort", "sort_paused", "query")
    print(
        "| runs | code | filter, median / max (ms) | sort, median / max (ms) | sort after a 1 s pause (ms) |"
        " query alone, median / max (ms) | peak RSS (MB) | n (filter, sort) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, samples in action_rows:
        for name, got in samples.items():
            label = "this checkout" if name == "now" else f"`{against}`"
            print(
                f"| {n:,} | {label} | " + " | ".join(ms(got[k]) for k in keys) + f" | {max(got['rss']):.0f} |"
                f" {len(got['filter'])}, {len(got['sort'])} |"
            )
        if "against" in samples:
            now, old = samples["now"], samples["against"]
            ratios = " | ".join(f"x{statistics.median(old[k]) / statistics.median(now[k]):.2f}" for k in keys)
            print(f"| {n:,} | ratio (against / this) | {ratios} | | |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=1, help="filter/sort rounds per size (fresh process each)")
    parser.add_argument("--against", help="a directory holding another mlci_tui package, interleaved round by round")
    parser.add_argument("--no-paint", action="store_true", help="skip the first-paint measurements")
    parser.add_argument("--child-actions", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_actions:
        child_actions(Path(args.child_actions))
    else:
        main(args.sizes, rounds=args.rounds, against=args.against, paint=not args.no_paint)
