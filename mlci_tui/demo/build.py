"""`mlci demo`: a small, real ML project whose commits go through the real hooks.

It builds a git repo with a deterministic dataset, a training script driven by
params.yaml, mlci.yaml and mlci's hooks, then trains and commits a few times with
different params; the post-commit hook captures each commit into the ledger.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from mlci_tui.demo.data_step import DATASET, add_demo_dataset
from mlci_tui.demo.sweep_step import run_demo_sweep
from mlci_tui.demo.validate_step import run_validation_demo
from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo
from mlci_tui.install import ensure_gitignore, install_hooks
from mlci_tui.sanitize import display

MLCI_YAML = """\
# mlci.yaml for the demo project. Reference: docs/config.md
params:
  files: [params.yaml]
metrics:
  files: [dvclive/metrics.json]   # dvclive layout: dvclive/plots/metrics/*.tsv are step series
  fields:
    acc: {direction: max}
    loss: {direction: min}
ledger:
  remote: origin
train:
  command: python train.py
  deps: [train.py, data/]
gate:
  baseline: deployed     # compare every candidate with the promoted model
  on_push: true          # the pre-push hook refuses a push that fails a rule
  rules:
    acc: {max_drop: 0.01}        # accuracy may not drop by more than 0.01
    loss: {max_rise_pct: 10}     # loss may not rise by more than 10 %
"""

PARAMS = """\
# training parameters, read by train.py
train:
  lr: {lr}       # learning rate
  epochs: {epochs}
  l2: {l2}       # weight decay
  seed: 7
"""

# (lr, epochs, l2, commit message): each a commit through the hooks. After the third the
# run is promoted to `deployed` and pushed; the fourth regresses and the gate refuses its push.
EXPERIMENTS = [
    ("0.0005", 1, "0.0", "Baseline: logistic regression, lr 0.0005, 1 epoch"),
    ("0.005", 3, "0.0", "Raise learning rate to 0.005, 3 epochs"),
    ("0.01", 15, "0.0", "Train longer: 15 epochs at lr 0.01"),
    ("2.0", 15, "0.001", "Try a much higher learning rate"),
    ("0.05", 15, "0.001", "lr 0.05 with a little weight decay"),
    ("0.05", 25, "0.0005", "25 epochs, lighter weight decay"),
]
PROMOTE_AFTER = 3


def make_dataset(n: int = 1000, seed: int = 42, features: int = 8) -> str:
    """Two overlapping Gaussian blobs, half the features on a 10x smaller scale (so plain SGD
    needs a sensible learning rate and enough epochs): deterministic for a seed."""
    rng = random.Random(seed)
    lines = [",".join(f"x{j + 1}" for j in range(features)) + ",label"]
    for i in range(n):
        label = i % 2
        centre = 0.5 if label else -0.5
        xs = [rng.gauss(centre * (j + 1) / features, 1.0) * (0.1 if j % 2 else 1.0) for j in range(features)]
        lines.append(",".join(f"{x:.5f}" for x in xs) + f",{label}")
    return "\n".join(lines) + "\n"


def _git(cwd: Path, *args: str) -> None:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise MlciError(f"git {args[0]} failed in the demo: {proc.stderr.strip().splitlines()[-1:]}")


def _run(cwd: Path, args: list[str]) -> str:
    env = dict(os.environ)
    env.pop("MLCI_NO_HOOKS", None)
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise MlciError(f"demo step `{' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return proc.stdout


def build(target: Path, commits: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise MlciError(f"{target}: not empty; give `mlci demo` a new or empty folder")
    _git(target, "init", "-q", "-b", "main")
    for key, value in (("user.name", "mlci demo"), ("user.email", "demo@mlci.invalid")):
        probe = subprocess.run(["git", "config", key], cwd=target, capture_output=True, check=False)
        if probe.returncode != 0 and not os.environ.get("GIT_AUTHOR_NAME"):
            _git(target, "config", key, value)
    (target / "data").mkdir()
    (target / "data" / "points.csv").write_text(make_dataset())
    (target / "train.py").write_text(resources.files("mlci_tui.demo.project").joinpath("train.py").read_text())
    (target / "mlci.yaml").write_text(MLCI_YAML)
    (target / "README.md").write_text("# mlci demo project\n\nRun `python train.py`, commit, and `mlci runs`.\n")
    ensure_gitignore(target)
    with (target / ".gitignore").open("a") as ignore:
        ignore.write("mlci-report.*\n")
    install_hooks(Repo.find(target))
    # a bare "team remote" kept inside .git, so the demo pushes without touching anything else
    origin = target / ".git" / "demo-origin.git"
    _git(target, "init", "-q", "--bare", str(origin))
    _git(target, "remote", "add", "origin", str(origin))
    _data_steps(target)
    print("\nTraining commits, each captured by the post-commit hook:")
    for number, (lr, epochs, l2, message) in enumerate(EXPERIMENTS[: max(1, commits)], start=1):
        (target / "params.yaml").write_text(PARAMS.format(lr=lr, epochs=epochs, l2=l2))
        result = _run(target, [sys.executable, "train.py"]).strip()
        _git(target, "add", "-A")
        _run(target, ["git", "commit", "-q", "-m", message])
        print(f"  committed: {message:<52} {result}")
        if number == PROMOTE_AFTER:
            print(
                "  "
                + _run(target, [sys.executable, "-m", "mlci_tui", "promote", "HEAD", "--stage", "deployed", "--tag"])
                .strip()
                .replace("\n", "\n  ")
            )
            _push(target, expect_refusal=False)
        elif number > PROMOTE_AFTER:
            _push(target, expect_refusal=None)


def _data_steps(target: Path) -> None:
    """A dataset versioned beside git with a schema; a bad version of it is refused at commit."""
    pointer = add_demo_dataset(target)
    print(f"  tracked: {DATASET} with `mlci data add` (content in .mlci/cache/, {pointer.pointer_path} in git)")
    print(run_validation_demo(target))


def _sweep_step(target: Path) -> None:
    print("\nA hyperparameter sweep, queued in the ledger and run in git worktrees:")
    for line in run_demo_sweep(target):
        print(f"  {line}")


def _push(target: Path, *, expect_refusal: bool | None) -> None:
    """Push main; the pre-push hook back-fills, gates (gate.on_push) and shares the ledger."""
    env = dict(os.environ)
    env.pop("MLCI_NO_HOOKS", None)
    proc = subprocess.run(
        ["git", "push", "-q", "origin", "main"], cwd=target, capture_output=True, text=True, check=False, env=env
    )
    if proc.returncode == 0:
        print("  pushed: the gate passed and the ledger went along")
        return
    if expect_refusal is False:
        raise MlciError(f"demo push failed: {proc.stderr.strip()[-300:]}")
    print("  push refused by the gate (pre-push hook):")
    for line in proc.stderr.strip().splitlines():
        if line.strip() and not line.startswith(("error:", "To ", "hint:")):
            print(f"    {line}")


def run_demo(directory: str | None, commits: int = 4, *, sweep: bool = True) -> int:
    """`mlci demo`: build the project in `directory` (a new temporary folder if None) and walk it through mlci."""
    if commits < 1 or commits > len(EXPERIMENTS):
        raise MlciError(f"--commits: between 1 and {len(EXPERIMENTS)}")
    target = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="mlci-demo-"))
    target = target.resolve()
    print(f"Building a demo ML project in {display(str(target))}")
    build(target, commits)
    if sweep:
        _sweep_step(target)
    print("\nEvery training commit (post-commit hook) and every sweep trial is a run in the ledger:\n")
    sys.stdout.flush()
    subprocess.run([sys.executable, "-m", "mlci_tui", "runs"], cwd=target, check=False)
    for fmt in ("html", "md"):
        _run(target, [sys.executable, "-m", "mlci_tui", "report", "--format", fmt, "-o", f"mlci-report.{fmt}"])
    report = display(str(target / "mlci-report.html"))
    print(
        f"""
The report a pull request would get (HEAD against the deployed model), written to
  {report}   (open it in a browser; mlci-report.md is the PR comment)

Try next (in {display(str(target))}):
  cd {display(str(target))}
  mlci tui                                  browse, filter, compare and plot the runs
  mlci runs --sort -acc --limit 3           best runs first
  mlci show HEAD                            one run: params, metrics, per-epoch curves
  mlci stages                               what is deployed
  mlci gate                                 HEAD against the deployed model (exit 1 if it regressed)
  mlci diff deployed HEAD                   what changed: params and metrics
  mlci sql "SELECT name, step, value FROM steps WHERE name = 'loss' ORDER BY run_id, step LIMIT 10"
  mlci data status                          datasets against their pointers
  mlci data validate                        check every dataset against its schema in mlci.yaml
  mlci sweep status                         the sweep's trials and the best one
  echo '{{"acc": oops' > dvclive/metrics.json && git commit -am broken   # the pre-commit hook blocks it
  git log --oneline refs/mlci/ledger         the ledger is a git ref"""
    )
    return 0
