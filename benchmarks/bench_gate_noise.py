"""The gate that knows noise: `mlci gate` over a 100,000-example per-example file, 2,000 bootstrap resamples.

A scratch repository holds two commits, the baseline (promoted) and the candidate, each with
`eval/per_example.parquet` (100,000 rows: an id, a continuous score and a 0/1 `correct`) and
a metrics.json. Each variant is a fresh `mlci gate --json` process, variants interleaved,
median of `--repeats`; CPU is the process tree's. Variants:
  - the paired bootstrap forced (`gate.per_example.test: bootstrap`) on the continuous score:
    2,000 resamples of 100,000 indices, drawn in chunks in numpy;
  - the same on the 0/1 score (multinomial counts of the three paired outcomes, and McNemar);
  - the default for 100,000 examples (the normal approximation);
  - the point rule (no confidence), for what the process costs without any of it.
In process, the resampling alone (`stats.resampled_means`) and the paired read
(`per_example.read_paired`) are timed too. The goal: under 2 s for the bootstrap gate.

Usage: python benchmarks/bench_gate_noise.py [--quick] [--repeats N] [--examples N]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

RULE = "    acc: {direction: max, max_drop: 0.05, confidence: 0.95}\n"
CONFIG = """\
params: {files: [params.yaml]}
metrics: {files: [metrics.json]}
gate:
  baseline: deployed
  rules:
%s%s"""
PER_EXAMPLE = "  per_example: {path: eval/per_example.parquet, key: id, score: %s, test: %s}\n"
VARIANTS = {
    "gate, paired bootstrap, continuous score": ("score", "bootstrap"),
    "gate, paired bootstrap, 0/1 score (+ McNemar)": ("correct", "bootstrap"),
    "gate, default (normal approximation)": ("score", "auto"),
    "gate, point rule (no confidence)": None,
}


def write_examples(path: Path, n: int, seed: int, shift: float) -> None:
    """`n` examples written by DuckDB: a continuous score and a 0/1 outcome, reproducible by seed."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SELECT setseed({seed / 1000})")
    con.execute(
        f"COPY (SELECT 'ex' || lpad(i::VARCHAR, 7, '0') AS id, random() + {shift} AS score, "
        f"CAST(random() < 0.9 + {shift} AS INTEGER) AS correct FROM range({n}) t(i)) "
        f"TO '{path}' (FORMAT parquet)"
    )
    con.close()


def build_repo(n: int) -> Path:
    path = common.git_init(common.fresh_dir("gate-noise"))
    quiet = common.env(MLCI_NO_HOOKS="1")
    (path / "params.yaml").write_text("seed: 0\n")
    for i, (message, shift) in enumerate((("baseline", 0.0), ("candidate", -0.002))):
        write_examples(path / "eval/per_example.parquet", n, i + 1, shift)
        (path / "metrics.json").write_text(json.dumps({"acc": 0.9 + shift}) + "\n")
        (path / "mlci.yaml").write_text(CONFIG % (RULE, ""))
        common.run(["git", "add", "-A"], path)
        common.run(["git", "commit", "-q", "-m", message], path, env=quiet)
        common.run([common.PYTHON, "-m", "mlci_tui", "capture"], path)
        if message == "baseline":
            common.run([common.PYTHON, "-m", "mlci_tui", "promote", "HEAD"], path)
    return path


def timed_gate(path: Path, variant: tuple[str, str] | None) -> Callable[[], float]:
    config = (
        CONFIG % (RULE, PER_EXAMPLE % variant) if variant else CONFIG % (RULE.replace(", confidence: 0.95", ""), "")
    )

    def once() -> float:
        (path / "mlci.yaml").write_text(config)  # untimed: the working tree's config is the one read
        return common.time_cmd([common.PYTHON, "-m", "mlci_tui", "gate", "--json"], path)

    return once


def in_process(path: Path, n: int) -> dict[str, object]:
    """The two parts of the bootstrap gate on their own: reading and pairing, then resampling."""
    import numpy as np

    from mlci_tui import stats
    from mlci_tui.gitio import Repo
    from mlci_tui.per_example import read_paired

    repo = Repo.find(path)
    base, head = (repo.text("rev-parse", rev).strip() for rev in ("HEAD~1", "HEAD"))
    spec = {"path": "eval/per_example.parquet", "key": "id", "score": "score", "label": None, "prediction": None}
    paired = read_paired(repo, spec, base, head)
    d = paired.base - paired.head
    binary = np.asarray(np.random.default_rng(0).choice([-1.0, 0.0, 1.0], size=n, p=[0.05, 0.9, 0.05]))
    variants = {
        "read_paired (two parquet files joined on id)": lambda: common.time_call(
            lambda: read_paired(repo, spec, base, head)
        ),
        "resampled_means, continuous, 2,000 x n": lambda: common.time_call(lambda: stats.resampled_means(d)),
        "resampled_means, 3 distinct values": lambda: common.time_call(lambda: stats.resampled_means(binary)),
    }
    rows = common.summarise(common.interleave(variants, 5))
    common.print_table("in process", rows)
    return rows


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--examples", type=int, default=100_000)
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    deadline = common.Deadline(args.budget or 1800)
    path = build_repo(args.examples)
    results: dict[str, object] = {"machine": common.machine(), "examples": args.examples, "resamples": 2000}
    variants = {name: timed_gate(path, v) for name, v in VARIANTS.items()}
    rows = common.summarise(common.interleave(variants, repeats, deadline), baseline="gate, point rule (no confidence)")
    common.print_table(f"mlci gate --json, {args.examples:,} examples (fresh process)", rows)
    results["gate"] = rows
    results["in_process"] = in_process(path, args.examples)
    common.write_results("gate_noise", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
