"""Figure 2: capturing a commit's params and metrics, and appends per second, against MLflow.

Capture latency (each iteration rewrites params.yaml and metrics.json and stages them, untimed):
  - `git commit`, no hooks (baseline);
  - `git commit` through mlci's plain hooks (pre-commit validates both files, post-commit
    captures HEAD into the ledger);
  - the installed `.git/hooks/post-commit` alone, run after a commit made with MLCI_NO_HOOKS=1;
  - `mlci hook post-commit` (console script) alone, likewise;
  - in-process `capture_revs(repo, ["HEAD"])`, likewise (no interpreter start).
Appends (in-process `LedgerStore.append`, run records of 10 params + 10 metrics):
  - single appends, on an empty ledger and on one that already holds 10,000 runs;
  - batches of 100 and of 1,000 records.
MLflow (in the peers' interpreter, sqlite store): `start_run` + `log_params` + `log_metrics`
(10 + 10), and the same with 20 single `log_param`/`log_metric` calls.

Capture in a DVC project (`--dvc`, only this case): `mlci hook post-commit` as a process
(PYTHONPATH = the source tree measured) after a commit made with MLCI_NO_HOOKS=1, in a plain
repository (params.yaml + metrics.json) and in a DVC project (dvc.yaml with three stages,
dvc.lock, a `.dvc` pointer, metrics and plots declared, 40 source files); with
`--against SRC` (a checkout of an older mlci, e.g. `git worktree add /tmp/before REV`)
both trees are timed in interleaved rounds.

A commit with a run against an older tree (`--against SRC` without `--dvc`): a bare `git
commit`, `git commit` through the plain hooks installed from each tree (pre-commit checks the
staged files, post-commit captures), in a repository without and with the `mlci.yaml` that
`mlci init` writes, and each tree's installed post-commit hook alone, in one interleaved loop
(issue 19's "a commit that captures a run"). CPU is the commit's process tree: a process a hook
leaves detached (the background compaction) is not in it.

The commit hooks' imports (`--importtime [--against SRC]`): `python -S -X importtime` of each
installed hook through commits with a run, per module the smallest self time over 6 commits.

Usage: python benchmarks/bench_capture.py [--quick] | --dvc [--against SRC] | --against SRC | --importtime [--against SRC]
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

MLFLOW_TARGET_S = 0.040  # the target: MLflow start_run + 10 params + 10 metrics, ~40 ms (docs/benchmarks.md figure 2)
ML_BATCHED = "MLflow start_run + log_params + log_metrics (10 + 10)"
ML_SINGLE = "MLflow start_run + 20 single log_param/log_metric calls"


def write_files(path: Path, i: int, rng: random.Random) -> None:
    import yaml

    (path / "params.yaml").write_text(yaml.safe_dump(common.params_doc(i, rng), sort_keys=False))
    (path / "metrics.json").write_text(json.dumps(common.metrics_doc(rng), indent=2) + "\n")


def ml_repo(name: str, *, hooks: bool) -> Path:
    path = common.git_init(common.fresh_dir(f"capture/{name}"))
    write_files(path, 0, random.Random(0))
    common.run(["git", "add", "params.yaml", "metrics.json"], path)
    common.run(["git", "commit", "-q", "--no-verify", "-m", "init"], path, env=common.env(MLCI_NO_HOOKS="1"))
    if hooks:
        common.run([common.MLCI, "install"], path)
    return path


class Committer:
    """Each call: new params/metrics staged (untimed); then the timed part."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.mode = mode
        self.i = 0
        self.rng = random.Random(hash(mode) & 0xFFFF)

    def _stage(self) -> None:
        self.i += 1
        write_files(self.path, self.i, self.rng)
        common.run(["git", "add", "params.yaml", "metrics.json"], self.path)

    def __call__(self) -> float:
        self._stage()
        msg = f"try {self.i}"
        if self.mode == "commit":
            return common.time_cmd(["git", "commit", "-q", "-m", msg], self.path)
        common.run(["git", "commit", "-q", "-m", msg], self.path, env=common.env(MLCI_NO_HOOKS="1"))
        if self.mode == "installed-post-commit":
            return common.time_cmd([str(self.path / ".git" / "hooks" / "post-commit")], self.path)
        if self.mode == "console-post-commit":
            return common.time_cmd([common.MLCI, "hook", "post-commit"], self.path)
        return self._in_process()

    def _in_process(self) -> float:
        from mlci_tui.capture.write import capture_revs
        from mlci_tui.gitio import Repo

        repo = Repo.find(self.path)
        return common.time_call(lambda: capture_revs(repo, ["HEAD"], branch_of_head=True, quiet=True))


class StagedPreCommit:
    """The installed pre-commit alone with params.yaml and metrics.json staged (it parses both)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.i = 0
        self.rng = random.Random(7)

    def __call__(self) -> float:
        self.i += 1
        write_files(self.path, self.i, self.rng)
        common.run(["git", "add", "params.yaml", "metrics.json"], self.path)
        return common.time_cmd([str(self.path / ".git" / "hooks" / "pre-commit")], self.path)


def count_runs(path: Path) -> int:
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.store import LedgerStore

    return sum(1 for e in LedgerStore(Repo.find(path)).entries() if e.path.startswith("events/"))


def capture_latency(
    repeats: int, deadline: common.Deadline, mlflow: common.MLflowWorker
) -> tuple[dict[str, Any], dict[str, int]]:
    repos = {
        "bare": ml_repo("bare", hooks=False),
        "hooks": ml_repo("hooks", hooks=True),
        "installed": ml_repo("installed", hooks=True),
        "console": ml_repo("console", hooks=True),
        "inproc": ml_repo("inproc", hooks=True),
        "precommit": ml_repo("precommit", hooks=True),
    }
    variants = {
        "git commit, no hooks": Committer(repos["bare"], "commit"),
        "git commit through mlci hooks (validate + capture)": Committer(repos["hooks"], "commit"),
        ".git/hooks/post-commit alone (installed, python -S)": Committer(repos["installed"], "installed-post-commit"),
        "mlci hook post-commit alone (console script)": Committer(repos["console"], "console-post-commit"),
        "capture_revs(HEAD) in-process": Committer(repos["inproc"], "in-process"),
        ".git/hooks/pre-commit alone, 2 files staged": StagedPreCommit(repos["precommit"]),
    }
    if mlflow.error is None:
        variants[ML_BATCHED] = mlflow.log_timer(batched=True)
    samples = common.interleave(variants, repeats, deadline, warmup=1)
    stats = common.summarise(samples, baseline="git commit, no hooks")
    captured = {name: count_runs(path) for name, path in repos.items()}
    return stats, captured


def appends(quick: bool, deadline: common.Deadline, mlflow: common.MLflowWorker) -> dict[str, Any]:
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger.store import LedgerStore

    rng = random.Random(11)
    empty = common.git_init(common.fresh_dir("capture/append-empty"))
    common.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], empty)
    base10k = common.SCRATCH / "ledger-10000"
    common.build_ledger(base10k, 10_000)
    big = common.SCRATCH / "capture" / "append-10k"
    if big.exists():
        shutil.rmtree(big)
    shutil.copytree(base10k, big, symlinks=True)
    stores = {"empty": LedgerStore(Repo.find(empty)), "10k": LedgerStore(Repo.find(big))}

    def single(store: LedgerStore) -> Any:
        def timed() -> float:
            rec = common.run_record(0, rng)
            return common.time_call(lambda: store.append([rec]))

        return timed

    def batch(store: LedgerStore, n: int) -> Any:
        def timed() -> float:
            recs = [common.run_record(k, rng) for k in range(n)]
            return common.time_call(lambda: store.append(recs))

        return timed

    single_repeats = 20 if quick else 100
    variants = {
        "append 1 run, empty ledger": single(stores["empty"]),
        "append 1 run, ledger of 10k runs": single(stores["10k"]),
    }
    if mlflow.error is None:
        variants[ML_BATCHED] = mlflow.log_timer(batched=True)
        variants[ML_SINGLE] = mlflow.log_timer(batched=False)
    samples = common.interleave(
        variants,
        single_repeats,
        deadline,
        warmup=2,
    )
    batch_samples = common.interleave(
        {
            "append batch of 100 runs (10k ledger)": batch(stores["10k"], 100),
            "append batch of 1000 runs (10k ledger)": batch(stores["10k"], 1000),
        },
        3 if quick else 8,
        deadline,
        warmup=1,
    )
    samples.update(batch_samples)
    stats = common.summarise(samples, baseline=ML_BATCHED if mlflow.error is None else None)
    for name, s in stats.items():
        size = 1000 if "1000" in name else 100 if "100 runs" in name else 1
        s["records_per_batch"] = size if "MLflow" not in name else 1
        s["records_per_second"] = size / s["median"]
    from mlci_tui.ledger import records

    stats["bytes_per_record"] = len(records.dumps(common.run_record(0, rng)))  # what one append writes
    return stats


DVC_YAML = """\
stages:
  prepare:
    cmd: python src/prepare.py
    deps: [src/prepare.py, data/data.xml]
    params: [prepare]
    outs: [data/prepared]
  train:
    cmd: python src/train.py
    deps: [src/train.py, data/prepared]
    params: [train]
    outs: [model.pkl]
  evaluate:
    cmd: python src/evaluate.py
    deps: [model.pkl, data/prepared]
    metrics:
      - eval/metrics.json:
          cache: false
    plots:
      - eval/plots/roc.json:
          x: fpr
          y: tpr
"""
DVC_LOCK = """\
schema: '2.0'
stages:
  train:
    cmd: python src/train.py
    deps:
    - path: data/prepared
      md5: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.dir
    outs:
    - path: model.pkl
      md5: cccccccccccccccccccccccccccccccc
"""


def dvc_repo(name: str, *, dvc: bool) -> Path:
    """A repository whose commits hold params.yaml and metrics (a DVC project's layout with `dvc`)."""
    path = common.git_init(common.fresh_dir(f"capture-dvc/{name}"))
    for i in range(40):
        (path / "src" / f"mod{i // 10}").mkdir(parents=True, exist_ok=True)
        (path / "src" / f"mod{i // 10}" / f"f{i}.py").write_text(f"X = {i}\n")
    if dvc:
        (path / ".dvc").mkdir()
        (path / ".dvc" / "config").write_text("[core]\n    remote = s\n")
        (path / "dvc.yaml").write_text(DVC_YAML)
        (path / "dvc.lock").write_text(DVC_LOCK)
        (path / "data").mkdir()
        (path / "data" / "data.xml.dvc").write_text(
            "outs:\n- md5: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n  path: data.xml\n"
        )
    return path


def dvc_commit(path: Path, i: int, rng: random.Random, *, dvc: bool) -> None:
    import yaml

    (path / "params.yaml").write_text(yaml.safe_dump(common.params_doc(i, rng), sort_keys=False))
    metrics = path / "eval" / "metrics.json" if dvc else path / "metrics.json"
    metrics.parent.mkdir(exist_ok=True)
    metrics.write_text(json.dumps(common.metrics_doc(rng), indent=2) + "\n")
    if dvc:
        roc = [{"fpr": x / 10, "tpr": min(1.0, x / 8)} for x in range(11)]
        (path / "eval" / "plots").mkdir(exist_ok=True)
        (path / "eval" / "plots" / "roc.json").write_text(json.dumps({"roc": roc}))
    common.run(["git", "add", "-A"], path)
    common.run(["git", "commit", "-q", "--no-verify", "-m", f"c{i}"], path, env=common.env(MLCI_NO_HOOKS="1"))


def dvc_case(rounds: int, against: Path | None) -> dict[str, Any]:
    """The post-commit hook process in a plain repository and in a DVC project, per source tree."""
    import subprocess

    trees = {"now": common.ROOT} | ({"before": against} if against else {})
    repos = {kind: dvc_repo(kind, dvc=kind == "dvc") for kind in ("plain", "dvc")}
    samples: dict[str, list[float]] = {}
    rng = random.Random(1)
    for i in range(rounds):
        for kind, path in repos.items():
            for label, src in trees.items():
                dvc_commit(path, i * 10 + len(samples), rng, dvc=kind == "dvc")
                env = common.env(PYTHONPATH=str(src))
                cpu = _children_cpu()
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "mlci_tui", "hook", "post-commit"], cwd=path, env=env, check=True)
                samples.setdefault(f"{kind}: post-commit hook ({label})", []).append(time.perf_counter() - start)
                # CPU of the hook and its git processes: steadier than wall time on a loaded machine
                samples.setdefault(f"{kind}: post-commit hook CPU ({label})", []).append(_children_cpu() - cpu)
    stats = common.summarise(samples)
    common.print_table("post-commit hook process, capture of HEAD (plain repository, DVC project)", stats)
    for kind, path in repos.items():
        print(f"  {kind}: {count_runs(path)} runs in the ledger")
    return stats


def commit_case(rounds: int, against: Path) -> dict[str, Any]:
    """`git commit` through mlci's plain hooks (pre-commit + post-commit capture) installed from
    this tree and from `against`, a bare `git commit`, and each post-commit hook alone: one
    interleaved loop, so the machine's load hits every variant alike (issue 19)."""
    trees = {"now": common.ROOT, "before": against}
    repos = {"bare": ml_repo("bare", hooks=False)}
    for label, src in trees.items():
        path = ml_repo(f"hooks-{label}", hooks=False)
        common.run([sys.executable, "-m", "mlci_tui", "install"], path, env=common.env(PYTHONPATH=str(src)))
        repos[label] = path
        # the same with the mlci.yaml `mlci init` writes (the hooks read and validate it)
        path = ml_repo(f"init-{label}", hooks=False)
        common.run([sys.executable, "-m", "mlci_tui", "init", "--no-hooks"], path, env=common.env(PYTHONPATH=str(src)))
        common.run(["git", "add", "-A"], path)
        common.run(["git", "commit", "-q", "-m", "config"], path, env=common.env(MLCI_NO_HOOKS="1"))
        common.run([sys.executable, "-m", "mlci_tui", "install"], path, env=common.env(PYTHONPATH=str(src)))
        repos[f"init-{label}"] = path
        repos[f"alone-{label}"] = ml_repo(f"alone-{label}", hooks=False)
        common.run(
            [sys.executable, "-m", "mlci_tui", "install"], repos[f"alone-{label}"], env=common.env(PYTHONPATH=str(src))
        )
    variants = {"git commit, no hooks": Committer(repos["bare"], "commit")}
    for label in trees:
        variants[f"git commit through mlci's plain hooks ({label})"] = Committer(repos[label], "commit")
        variants[f"git commit through mlci's plain hooks, with mlci.yaml ({label})"] = Committer(
            repos[f"init-{label}"], "commit"
        )
        variants[f".git/hooks/post-commit alone ({label})"] = Committer(
            repos[f"alone-{label}"], "installed-post-commit"
        )
    samples = common.interleave(variants, rounds, warmup=2)
    stats = common.summarise(samples, baseline="git commit, no hooks")
    bare = stats["git commit, no hooks"]["median"]
    for label in trees:
        for name in (
            f"git commit through mlci's plain hooks ({label})",
            f"git commit through mlci's plain hooks, with mlci.yaml ({label})",
        ):
            stats[name]["over_bare_ms"] = (stats[name]["median"] - bare) * 1000
    common.print_table("git commit with a run captured, hooks from each tree (ratio to a bare commit)", stats)
    for label in trees:
        over = stats[f"git commit through mlci's plain hooks ({label})"]["over_bare_ms"]
        print(f"  {label}: {over:.0f} ms over a bare commit")
    print(f"  runs: { {name: count_runs(path) for name, path in repos.items()} }")
    return stats


def import_times(rounds: int, against: Path | None) -> dict[str, Any]:
    """`python -S -X importtime` of each installed commit hook (the scripts `mlci install`
    writes), params.yaml and metrics.json staged, a run captured: per module the smallest self
    time over `rounds` commits, summed (the least noisy figure on a loaded machine)."""
    import subprocess

    trees = {"now": common.ROOT} | ({"before": against} if against else {})
    out: dict[str, Any] = {}
    rng = random.Random(11)
    for label, src in trees.items():
        path = ml_repo(f"importtime-{label}", hooks=False)
        common.run([sys.executable, "-m", "mlci_tui", "install"], path, env=common.env(PYTHONPATH=str(src)))
        best: dict[str, dict[str, int]] = {"pre-commit": {}, "post-commit": {}}
        counts: dict[str, int] = {}
        for i in range(rounds + 1):  # the first commit fills the config memo: not counted
            write_files(path, 1000 + i, rng)
            common.run(["git", "add", "params.yaml", "metrics.json"], path)
            for stage in ("pre-commit", "post-commit"):
                if stage == "post-commit":
                    common.run(["git", "commit", "-q", "-m", f"t{i}"], path, env=common.env(MLCI_NO_HOOKS="1"))
                proc = subprocess.run(
                    [str(path / ".git" / "hooks" / stage)],
                    cwd=path,
                    env=common.env(PYTHONPROFILEIMPORTTIME="1"),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                if i == 0:
                    continue
                rows = [line[len("import time:") :].split("|") for line in proc.stderr.splitlines()]
                rows = [r for r in rows if len(r) == 3 and r[0].strip().isdigit()]
                counts[stage] = len(rows)
                for self_us, _cumulative, name in rows:
                    key = name.strip()
                    best[stage][key] = min(best[stage].get(key, 1 << 30), int(self_us))
        for stage, times in best.items():
            top = sorted(times.items(), key=lambda kv: -kv[1])[:20]
            out[f"{stage} ({label})"] = {
                "modules": counts[stage],
                "import_ms": sum(times.values()) / 1000,
                "largest_ms": {k: v / 1000 for k, v in top},
            }
            print(f"{stage} ({label}): {counts[stage]} modules, {sum(times.values()) / 1000:.1f} ms")
            print("   " + ", ".join(f"{k} {v / 1000:.1f}" for k, v in top))
    return out


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--dvc", action="store_true", help="only the DVC project case")
    parser.add_argument(
        "--importtime",
        action="store_true",
        help="only the commit hooks' imports (python -X importtime), with --against too",
    )
    parser.add_argument(
        "--against", type=Path, help="another mlci source tree timed in the same rounds (with --dvc: the DVC case)"
    )
    args = parser.parse_args()
    if args.importtime:
        found = import_times(3 if args.quick else 6, args.against)
        common.write_results("capture_importtime", {"machine": common.machine(), "imports": found})
        return 0
    if args.dvc:
        stats = dvc_case(8 if args.quick else 20, args.against)
        common.write_results("capture_dvc", {"machine": common.machine(), "capture": stats})
        return 0
    if args.against:
        stats = commit_case(8 if args.quick else 20, args.against)
        common.write_results("capture_against", {"machine": common.machine(), "capture": stats})
        return 0
    deadline = common.Deadline(args.budget or (240 if args.quick else 900))
    t0 = time.perf_counter()
    mlflow = common.MLflowWorker(common.fresh_dir("capture/mlflow") / "mlflow.db")
    try:
        latency, captured = capture_latency(8 if args.quick else 25, deadline, mlflow)
        common.print_table(
            "capture of a commit holding params.yaml + metrics.json (ratio to a bare git commit)", latency
        )
        print(f"  runs in each repo's ledger afterwards: {captured}")
        append_stats = appends(args.quick, deadline, mlflow)
    finally:
        mlflow.close()
    rows = {k: v for k, v in append_stats.items() if isinstance(v, dict)}
    title = "ledger appends in-process (LedgerStore.append)"
    if mlflow.error is None:
        title += f", interleaved with MLflow {mlflow.version} on a sqlite store (ratio to MLflow batched)"
    else:
        print(f"\nMLflow: {mlflow.error}")
    common.print_table(title, rows)
    for name, st in rows.items():
        print(f"  {name}: {st['records_per_second']:.0f} records/s")
    comparison = {}
    if mlflow.error is None:
        ml = latency[ML_BATCHED]["median"]  # measured in the same interleaved rounds
        comparison["in-process capture_revs(HEAD) / MLflow batched"] = (
            latency["capture_revs(HEAD) in-process"]["median"] / ml
        )
        comparison["installed post-commit hook process / MLflow batched"] = (
            latency[".git/hooks/post-commit alone (installed, python -S)"]["median"] / ml
        )
        for name, value in comparison.items():
            print(f"  {name}: x{value:.2f}")
    common.write_results(
        "capture",
        {
            "machine": common.machine(),
            "quick": args.quick,
            "command": "python benchmarks/bench_capture.py" + (" --quick" if args.quick else ""),
            "capture": latency,
            "runs_captured": captured,
            "appends": append_stats,
            "mlflow": {"version": mlflow.version, "error": mlflow.error},
            "ratios_to_mlflow": comparison,
            "mlflow_target_s": MLFLOW_TARGET_S,
            "elapsed_seconds": time.perf_counter() - t0,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
