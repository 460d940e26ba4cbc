"""What pre-push's data check costs, against the pre-push of another checkout (before it existed).

One repository with a declared 100k-row CSV dataset and a bare upstream; the pre-push hook
is run as git runs it (`mlci_tui.hooks.run("pre-push", [remote, url])`, the pushed refs on
stdin), nothing is pushed, so every repeat sees the same push. Three pushes:

- code only: the pushed commit changes `train.py` (the check costs one `git log`);
- a dataset version validated at commit time (one lookup in the result store);
- a dataset version never validated (committed with --no-verify; the result store is
  emptied before each run, so the engine runs every time).

The other tree runs the same pushes with its pre-push (no data check): the ratios are the
price of the check. Interleaved, medians.

    git worktree add /tmp/mlci-before <commit>
    python benchmarks/bench_push_data.py /tmp/mlci-before [--repeats 15]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
HOOK = (
    "import sys; sys.path[:0] = [{root!r}];"
    " from mlci_tui.hooks import run; raise SystemExit(run('pre-push', ['origin', 'unused-url']))"
)
CONFIG = """\
datasets:
  customers:
    path: data/customers.csv
    primary_key: [id]
    columns:
      id: {type: int64, nullable: false, unique: true}
      country: {type: string, allowed_values: [US, GB, "NO"]}
      income: {type: float64, min: 0}
"""


def customers(rows: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = ["id,country,income"]
    lines += [f"{i},{rng.choice(['US', 'GB', 'NO'])},{rng.uniform(0, 1e5):.2f}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def build(root: Path, rows: int) -> dict[str, tuple[str, str]]:
    """The repository; returns push name -> (pushed sha, remote's old sha)."""
    env = common.env()
    repo = common.git_init(root / "repo")
    upstream = root / "upstream.git"
    common.run(["git", "init", "-q", "--bare", "-b", "main", str(upstream)], root, env=env)
    common.run(["git", "remote", "add", "origin", str(upstream)], repo, env=env)
    mlci = [sys.executable, "-m", "mlci_tui"]
    common.run([*mlci, "install"], repo, env=env)
    (repo / "data").mkdir()
    (repo / "mlci.yaml").write_text(CONFIG)
    (repo / "data" / "customers.csv").write_text(customers(rows, 1))
    (repo / "train.py").write_text("print('v1')\n")
    common.run(["git", "add", "-A"], repo, env=env)
    common.run(["git", "commit", "-qm", "v1"], repo, env=env)
    common.run(["git", "push", "-q", "origin", "main"], repo, env=env)
    base = common.run(["git", "rev-parse", "HEAD"], repo, env=env).strip()
    pushes = {}
    (repo / "train.py").write_text("print('v2')\n")
    common.run(["git", "commit", "-qam", "code only"], repo, env=env)
    pushes["code only"] = (common.run(["git", "rev-parse", "HEAD"], repo, env=env).strip(), base)
    (repo / "data" / "customers.csv").write_text(customers(rows, 2))
    common.run(["git", "commit", "-qam", "data v2 (validated by pre-commit)"], repo, env=env)
    pushes["dataset validated at commit"] = (common.run(["git", "rev-parse", "HEAD"], repo, env=env).strip(), base)
    (repo / "data" / "customers.csv").write_text(customers(rows, 3))
    common.run(["git", "commit", "-qam", "data v3", "--no-verify"], repo, env=env)
    pushes["dataset never validated"] = (common.run(["git", "rev-parse", "HEAD"], repo, env=env).strip(), base)
    return pushes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", help="a checkout of mlci to compare with (its folder holds mlci_tui/)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    other = Path(args.other).resolve()
    root = common.fresh_dir("push-data")
    pushes = build(root, args.rows)
    repo = root / "repo"
    env = common.env()
    results = repo / ".git" / "mlci" / "validate" / "results"
    mlci = [sys.executable, "-m", "mlci_tui"]
    for name, (sha, base) in pushes.items():  # once each: validation events land, the ledger is pushed
        stdin = root / f"{name}.stdin"
        stdin.write_text(f"refs/heads/main {sha} refs/heads/main {base}\n")
        with stdin.open() as fh:
            common.time_cmd([sys.executable, "-c", HOOK.format(root=str(HERE))], repo, check=False, stdin=fh)
    common.run([*mlci, "ledger", "push", "origin"], repo, env=env)

    def variant(tree: Path, name: str) -> Callable[[], float]:
        stdin = root / f"{name}.stdin"

        def once() -> float:
            if name == "dataset never validated":
                shutil.rmtree(results, ignore_errors=True)
            with stdin.open() as fh:
                return common.time_cmd([sys.executable, "-c", HOOK.format(root=str(tree))], repo, check=False, stdin=fh)

        return once

    rows = {}
    for name in pushes:
        samples = common.interleave(
            {f"{name}: this tree": variant(HERE, name), f"{name}: other tree": variant(other, name)},
            args.repeats,
        )
        rows.update(common.summarise(samples, baseline=f"{name}: other tree"))
    common.print_table(f"pre-push, {args.rows:,}-row dataset: this tree over {other}", rows)
    common.write_results("push_data", {"machine": common.machine(), "rows": args.rows, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
