"""Peak memory of `mlci tui` over a large ledger, driven by Pilot (issue 19: ≤ 500 MB in every run).

    python benchmarks/bench_tui_memory.py [--rounds R] [--runs N]

Builds (once, with `bench_tui.build`) a repository whose ledger holds N runs (default
100,000), then starts R fresh processes (default 5). Each one opens the app headless and
drives it as a user would: scrolls the runs table (page down, end, home), applies filters,
sorts by several columns, including right after a filter (the background completion of a
paged view racing the next action: the case the cancellation token fixed), opens a run and
goes back; then a burst of filters, each submitted before the last one's view completed.
Each process reports its peak RSS (`ru_maxrss`), its CPU time and the wall time,
printed with the load average before the round: the machine is shared, so quote the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

FILTERS = ["acc > 0.9", 'model ~ "cnn.*"', "min(loss) < 0.5", "lr in (0.1, 0.01) and loss < 0.5", ""]
SORTS = ["m:acc", "m:loss", "p:lr", "subject", "time"]


async def drive(root: Path) -> dict[str, Any]:
    """One session: scroll, filter, sort, open a run; returns what the screen showed."""
    from mlci_tui import config
    from mlci_tui.gitio import Repo
    from mlci_tui.tui.app import MlciApp

    app = MlciApp(Repo.find(root), config.load(root), watch=False)
    rows = []
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.runs_screen
        while screen.result is None:
            await pilot.pause(0.01)
        rows.append(screen.table.row_count)
        for key in ["pagedown"] * 5 + ["end", "pageup", "home"]:
            await pilot.press(key)
            await pilot.pause()
        filter_input = app.query_one("#filter")
        for text in FILTERS:
            filter_input.value = text  # type: ignore[attr-defined]
            filter_input.focus()
            await pilot.pause()
            await filter_input.action_submit()  # type: ignore[attr-defined]  # what enter does
            for key in SORTS[:2]:  # sorts at once, while the paged view may still be completing
                screen.table.cursor_col = [c.key for c in screen.table.columns].index(key)
                screen.action_sort()
                await pilot.pause()
            while screen.busy:
                await pilot.pause(0.01)
            await pilot.pause(0.3)
            assert screen.error is None, screen.error
            rows.append(screen.table.row_count)
        for text in FILTERS * 2:  # a burst: each filter replaces the last before it completed
            filter_input.value = text  # type: ignore[attr-defined]
            await filter_input.action_submit()  # type: ignore[attr-defined]
            await pilot.pause(0.05)
        while screen.busy:
            await pilot.pause(0.01)
        rows.append(screen.table.row_count)
        for key in SORTS:
            screen.table.cursor_col = [c.key for c in screen.table.columns].index(key)
            screen.action_sort()
            await pilot.pause(0.5)  # time for the paged view to read the rest: the sort runs in memory
        screen.table.focus()
        for _ in range(3):  # open a run, look at it, go back
            await pilot.press("pagedown")
            await pilot.press("enter")
            await pilot.pause(0.5)
            await pilot.press("escape")
            await pilot.pause()
    return {"rows": rows}


def child(root: Path) -> None:
    t0 = time.perf_counter()
    out = asyncio.run(drive(root))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["rss_mb"] = usage.ru_maxrss / 1024
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    out["wall_s"] = time.perf_counter() - t0
    print(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child))
        return 0
    import bench_tui

    root = bench_tui.build(args.runs)
    results = []
    for i in range(args.rounds):
        load = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(root)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        got["load"] = load
        results.append(got)
        print(
            f"round {i + 1}: peak RSS {got['rss_mb']:.0f} MB, cpu {got['cpu_s']:.1f} s, wall {got['wall_s']:.1f} s, "
            f"load {load:.1f}, rows {got['rows']}",
            flush=True,
        )
    peaks = [r["rss_mb"] for r in results]
    print(
        f"{args.runs:,} runs, {len(peaks)} rounds: peak RSS median {statistics.median(peaks):.0f} MB, "
        f"max {max(peaks):.0f} MB, min {min(peaks):.0f} MB"
    )
    out = Path(__file__).resolve().parent / "results" / "tui_memory.json"
    out.write_text(json.dumps({"runs": args.runs, "rounds": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
