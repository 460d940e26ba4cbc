"""This checkout's mlci against another one (an older commit), interleaved in one run.

For a change that should not move the numbers (a redesign): the same commands, each a
fresh process, with `PYTHONPATH` pointing at one tree or the other. Commands: the hook
with nothing to do (`python -S`, as installed hooks start it), `mlci --help`, the
memoised `mlci runs --json`, `mlci runs` filtered and sorted, `mlci show`, `mlci diff`,
`mlci gate` over a ledger of N runs (warm cache). Ratios are this tree over the other.

    git worktree add /tmp/mlci-before <commit>
    python benchmarks/bench_against.py /tmp/mlci-before [--runs 10000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
HOOK = (
    "import sys; sys.path[:0] = [{root!r}] + [p for p in sys.argv[1:]];"
    " from mlci_tui.hooks import run; raise SystemExit(run('pre-commit', []))"
)


def commands(root: Path, repo: Path, first: str) -> dict[str, list[str]]:
    py = sys.executable
    mlci = [py, "-m", "mlci_tui"]
    site = [p for p in sys.path if p.endswith("site-packages")]
    return {
        "hook pre-commit, nothing staged (python -S)": [py, "-S", "-c", HOOK.format(root=str(root)), *site],
        "mlci --help": [*mlci, "--help"],
        "mlci runs --json (memoised)": [*mlci, "runs", "--json"],
        "mlci runs --where ... --sort -acc --limit 20": [
            *mlci,
            "runs",
            "--where",
            "metrics['acc'] > 0.9",
            "--sort",
            "-acc",
            "--limit",
            "20",
        ],
        "mlci show RUN": [*mlci, "show", first],
        "mlci diff RUN RUN --json": [*mlci, "diff", first, first, "--json"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", help="a checkout of mlci to compare with (its folder holds mlci_tui/)")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--budget", type=float, default=600)
    args = parser.parse_args()
    other = Path(args.other).resolve()
    repo = common.SCRATCH / f"against-{args.runs}"
    common.build_ledger(repo, args.runs)
    first = common.run([sys.executable, "-m", "mlci_tui", "runs", "--json", "--limit", "1"], repo)
    run_id = first.split('"run_id": "', 1)[1][:8]
    trees = {"this": HERE, "other": other}
    # each tree its own copy: two cache schemas over one cache file would rebuild it every time
    repos = {"this": repo, "other": repo.with_name(repo.name + "-other")}
    if not repos["other"].exists():
        shutil.copytree(repo, repos["other"], symlinks=True)
    for tree, root in trees.items():  # warm: the cache current, the listing memoised
        common.run(
            [sys.executable, "-m", "mlci_tui", "runs", "--json"], repos[tree], env=common.env(PYTHONPATH=str(root))
        )
    deadline = common.Deadline(args.budget)
    results: dict[str, Any] = {"runs": args.runs, "other": str(other), "machine": common.machine(), "rows": {}}
    argvs = {tree: commands(root, repos[tree], run_id) for tree, root in trees.items()}

    def timer(tree: str, name: str) -> Callable[[], float]:
        return lambda: common.time_cmd(argvs[tree][name], repos[tree], env=common.env(PYTHONPATH=str(trees[tree])))

    for name in argvs["this"]:
        variants = {tree: timer(tree, name) for tree in trees}
        stats = common.summarise(common.interleave(variants, args.repeats, deadline, warmup=2), baseline="other")
        common.print_table(name, stats)
        results["rows"][name] = stats
    common.write_results("against", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
