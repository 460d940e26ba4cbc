"""Recording a large params file: `mlci record` of a 5, 20 and 50 MB plain params.yaml.

Each file is nested mappings (sections of groups of keys) whose values are floats, short
strings and flow lists of 250 floats, under the default limits (64 MB, 100,000 keys). Every
size is timed as a fresh `mlci record` process, sizes interleaved round-robin, median of 3.
With `--against PATH` (another checkout, e.g. the commit before the fast reader) the same
commands run with `PYTHONPATH` on that tree too, for a capture of a small params.yaml (every
commit's post-commit hook) and for the sizes up to `--against-max-mb` (the old reader took
minutes per file above that).

    git archive <commit> | tar -x -C /tmp/mlci-before
    python benchmarks/bench_params_size.py [--against /tmp/mlci-before] [--quick]
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
LIST_ITEMS = 250


def params_text(megabytes: float, seed: int = 0) -> str:
    """A plain params.yaml of about `megabytes`: a third floats, a third strings, a third lists."""
    rng = random.Random(seed)
    target = int(megabytes * 1024 * 1024)
    lines: list[str] = []
    size = 0
    section = 0
    while size < target:
        block = [f"section_{section}:"]
        for group in range(20):
            block.append(f"  group_{group}:")
            for key in range(20):
                if key % 3 == 0:
                    value = repr(rng.uniform(-1, 1))
                elif key % 3 == 1:
                    value = f"model_{rng.randrange(10**6)}_variant"
                else:
                    value = "[" + ", ".join(repr(round(rng.gauss(0, 1), 6)) for _ in range(LIST_ITEMS)) + "]"
                block.append(f"    key_{key}: {value}")
        lines.extend(block)
        size += sum(len(line) + 1 for line in block)
        section += 1
    return "\n".join(lines) + "\n"


def mlci(tree: Path | None) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run mlci from `tree` (None: this checkout)."""
    root = tree or HERE
    return [sys.executable, "-m", "mlci_tui"], common.env(PYTHONPATH=str(root))


def record_repo(megabytes: float) -> Path:
    path = common.git_init(common.fresh_dir(f"params-size/{megabytes:g}mb"))
    (path / "params.yaml").write_text(params_text(megabytes))
    (path / "metrics.json").write_text('{"acc": 0.5}\n')
    common.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], path)
    return path


def capture_repo() -> Path:
    """A commit holding the params.yaml of a small training script (benchmarks/common.py)."""
    import yaml

    path = common.git_init(common.fresh_dir("params-size/small"))
    (path / "params.yaml").write_text(yaml.safe_dump(common.params_doc(0, random.Random(0)), sort_keys=False))
    (path / "metrics.json").write_text(json.dumps(common.metrics_doc(random.Random(0))) + "\n")
    common.run(["git", "add", "params.yaml", "metrics.json"], path)
    common.run(["git", "commit", "-q", "-m", "train"], path, env=common.env(MLCI_NO_HOOKS="1"))
    return path


def timed_record(path: Path, tree: Path | None) -> Callable[[], float]:
    argv, environ = mlci(tree)
    return lambda: common.time_cmd([*argv, "record"], path, env=environ)


def timed_capture(path: Path, tree: Path | None) -> Callable[[], float]:
    argv, environ = mlci(tree)

    def once() -> float:
        common.run(["git", "update-ref", "-d", "refs/mlci/ledger"], path, check=False)  # untimed: capture anew
        return common.time_cmd([*argv, "capture"], path, env=environ)

    return once


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--against", type=Path, help="another checkout of mlci (its folder holds mlci_tui/)")
    parser.add_argument("--against-max-mb", type=float, default=1.0, help="sizes the other checkout records too")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [1.0, 5.0] if args.quick else [5.0, 20.0, 50.0]
    against_sizes = sorted({1.0, *(s for s in sizes if s <= args.against_max_mb)}) if args.against else []
    deadline = common.Deadline(args.budget or 3600)
    results: dict[str, object] = {"machine": common.machine(), "quick": args.quick, "sizes_mb": sizes}

    repos = {size: record_repo(size) for size in sorted({*sizes, *against_sizes})}
    for size, path in repos.items():
        results[f"file_bytes_{size:g}mb"] = (path / "params.yaml").stat().st_size
    variants = {f"mlci record, {size:g} MB params.yaml": timed_record(repos[size], None) for size in sizes}
    for size in against_sizes:
        variants[f"mlci record, {size:g} MB params.yaml (this checkout)"] = timed_record(repos[size], None)
        variants[f"mlci record, {size:g} MB params.yaml (other)"] = timed_record(repos[size], args.against)
    records = common.summarise(common.interleave(variants, args.repeats, deadline, warmup=0))
    common.print_table("mlci record of a large params.yaml", records)
    results["record"] = records

    if args.against:
        small = capture_repo()
        captures = {
            "mlci capture, small params.yaml (this checkout)": timed_capture(small, None),
            "mlci capture, small params.yaml (other)": timed_capture(small, args.against),
        }
        rows = common.summarise(
            common.interleave(captures, 5 if args.quick else 15, deadline),
            baseline="mlci capture, small params.yaml (other)",
        )
        common.print_table("mlci capture of a small params.yaml", rows)
        results["capture_small"] = rows
    common.write_results("params_size", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
