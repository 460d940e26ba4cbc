"""Figure 1: what a hook with nothing to do costs, side by side in one run.

Commits (each stages a one-line change to README.md, untimed, then times `git commit`):
  - no hooks at all (the baseline every ratio is quoted against);
  - mlci's plain hooks (`mlci install`: pre-commit + post-commit fire, nothing to capture);
  - the pre-commit framework with one no-op hook (`repo: local`, `entry: true`);
  - the pre-commit framework carrying mlci's hooks (`mlci init` in a framework repo).
Processes alone (nothing staged, in the repo with mlci's plain hooks):
  - `mlci hook pre-commit` (the console script), and the installed `.git/hooks/pre-commit`
    (sh + `python -S` with an explicit sys.path), and the installed post-commit;
  - `python -c pass` and `python -S -c pass` (this sandbox's site-packages .pth imports
    certifi at every start unless -S skips site processing);
  - when `mlci` on PATH is a version-manager shim (pyenv), `mlci hook pre-commit` through it.

Usage: python benchmarks/bench_hooks.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET_S = 0.100

NOOP_CONFIG = """\
repos:
- repo: local
  hooks:
  - id: noop
    name: no-op
    entry: "true"
    language: system
    always_run: true
    pass_filenames: false
"""


def _repo(name: str) -> Path:
    path = common.git_init(common.fresh_dir(f"hooks/{name}"))
    (path / "README.md").write_text("benchmark\n")
    common.run(["git", "add", "README.md"], path)
    common.run(["git", "commit", "-q", "--no-verify", "-m", "init"], path)
    return path


def setup() -> dict[str, Path]:
    repos = {"bare": _repo("bare"), "mlci": _repo("mlci"), "framework": _repo("framework"), "both": _repo("both")}
    common.run([common.MLCI, "install"], repos["mlci"])
    fw = repos["framework"]
    (fw / ".pre-commit-config.yaml").write_text(NOOP_CONFIG)
    common.run(["git", "add", ".pre-commit-config.yaml"], fw)
    common.run(["git", "commit", "-q", "--no-verify", "-m", "framework"], fw)
    common.run([str(common.BIN_DIR / "pre-commit"), "install"], fw)
    both = repos["both"]
    (both / ".pre-commit-config.yaml").write_text(NOOP_CONFIG)
    common.run([common.MLCI, "init"], both)
    common.run(["git", "add", "-A"], both)
    common.run(["git", "commit", "-q", "--no-verify", "-m", "framework + mlci"], both)
    return repos


def commit_timer(path: Path) -> Any:
    counter = {"n": 0}

    def timed() -> float:
        counter["n"] += 1
        with (path / "README.md").open("a") as fh:
            fh.write(f"line {counter['n']}\n")
        common.run(["git", "add", "README.md"], path)
        return common.time_cmd(["git", "commit", "-q", "-m", f"change {counter['n']}"], path)

    return timed


def main() -> int:
    args = common.base_args(__doc__ or "").parse_args()
    repeats = 8 if args.quick else 30
    deadline = common.Deadline(args.budget or (120 if args.quick else 420))
    repos = setup()
    mlci_repo = repos["mlci"]
    hooks_dir = mlci_repo / ".git" / "hooks"

    commits = common.interleave(
        {
            "git commit, no hooks": commit_timer(repos["bare"]),
            "git commit, mlci plain hooks (mlci install)": commit_timer(repos["mlci"]),
            "git commit, pre-commit framework, 1 no-op hook": commit_timer(repos["framework"]),
            "git commit, pre-commit framework + mlci hooks (mlci init)": commit_timer(repos["both"]),
        },
        repeats,
        deadline,
        warmup=2,
    )
    commit_stats = common.summarise(commits, baseline="git commit, no hooks")
    common.print_table("commit with hooks that have nothing to do (ratio to a bare git commit)", commit_stats)

    def proc(argv: list[str]) -> Any:
        return lambda: common.time_cmd(argv, mlci_repo)

    py = common.PYTHON
    processes = {
        "python -S -c pass": proc([py, "-S", "-c", "pass"]),
        "python -c pass (site + sandbox .pth)": proc([py, "-c", "pass"]),
        "mlci hook pre-commit (console script)": proc([common.MLCI, "hook", "pre-commit"]),
        ".git/hooks/pre-commit (installed, python -S)": proc([str(hooks_dir / "pre-commit")]),
        ".git/hooks/post-commit (installed, python -S)": proc([str(hooks_dir / "post-commit")]),
        ".git/hooks/pre-commit, mlci without bytecode cache": lambda: common.time_cmd(
            [str(hooks_dir / "pre-commit")], mlci_repo, env=_no_pyc_env()
        ),
    }
    shim = find_shim()
    if shim:
        processes["mlci hook pre-commit via the pyenv shim"] = lambda: common.time_cmd(
            [shim, "hook", "pre-commit"], mlci_repo, env=dict(common.env(), PATH=_path_without_bin())
        )
    procs = common.interleave(processes, repeats, deadline, warmup=2)
    proc_stats = common.summarise(procs, baseline="python -S -c pass")
    for name, stats in proc_stats.items():
        if stats.get("n") and name.startswith(("mlci", ".git")):
            stats["target_s"] = TARGET_S
            stats["target_met"] = stats["median"] < TARGET_S
    common.print_table("hook processes with nothing to do (ratio to python -S -c pass; target < 100 ms)", proc_stats)

    common.write_results(
        "hooks",
        {
            "machine": common.machine(),
            "quick": args.quick,
            "command": "python benchmarks/bench_hooks.py" + (" --quick" if args.quick else ""),
            "commits": commit_stats,
            "processes": proc_stats,
            "shim": shim,
        },
    )
    return 0


def find_shim() -> str | None:
    """A version manager's `mlci` shim on PATH (pyenv puts the real bin dir first inside its
    own processes, so look for the shims folder itself)."""
    import os

    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "mlci"
        if "shims" in Path(folder).parts and candidate.exists():
            return str(candidate)
    pyenv_shim = Path.home() / ".pyenv" / "shims" / "mlci"
    return str(pyenv_shim) if pyenv_shim.exists() else None


def _no_pyc_env() -> dict[str, str]:
    """As this sandbox runs things: PYTHONDONTWRITEBYTECODE=1, and no __pycache__ in the checkout."""
    out = common.env()
    out.pop("PYTHONPYCACHEPREFIX")
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    return out


def _path_without_bin() -> str:
    import os

    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != common.BIN_DIR]
    return os.pathsep.join(parts)


if __name__ == "__main__":
    sys.exit(main())
