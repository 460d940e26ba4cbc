"""The published hooks' environment: what `pre-commit` installs for `.pre-commit-hooks.yaml`.

`language: python` makes pre-commit build one virtualenv for mlci's hooks and pip-install this
checkout (with every dependency) into it. This script builds that environment from scratch
(a fresh PRE_COMMIT_HOME, `pre-commit install-hooks` for a config pointing at this checkout's
HEAD: `try-repo` builds the same environment in a temporary store it deletes), then prints:
  - the time to build it and its size on disk, with the largest installed distributions;
  - which heavy modules the hook path loads in it (a pre-commit hook with a file to check, and a
    post-commit capture): none of duckdb, pyarrow, textual, plotext, yaml, ruamel should appear.
The size is reported, not asserted (issue 14).

Usage: python benchmarks/bench_precommit_env.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HEAVY = ("duckdb", "pyarrow", "textual", "plotext", "yaml", "ruamel", "rich", "fsspec", "numpy")

PROBE = """\
import json, sys
from mlci_tui.hooks import run
code = run(sys.argv[1], [])
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="mlci-precommit-env-"))
    home, repo = scratch / "home", scratch / "repo"
    env = common.env(PRE_COMMIT_HOME=str(home))
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "root"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    (repo / "metrics.json").write_text('{"acc": 0.5}\n')
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=common.ROOT, capture_output=True, text=True, check=True)
    hooks = "".join(f"      - id: mlci-{stage}\n" for stage in ("pre-commit", "post-commit"))
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {common.ROOT}\n    rev: {rev.stdout.strip()}\n    hooks:\n{hooks}"
    )
    subprocess.run(["git", "add", "metrics.json", ".pre-commit-config.yaml"], cwd=repo, env=env, check=True)

    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install-hooks"], cwd=repo, env=env, capture_output=True, text=True
    )
    built = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr)
        return 1
    [venv] = [p for p in home.glob("repo*/py_env-*") if p.is_dir()]
    size = du(venv)
    site = next(venv.glob("lib/python*/site-packages"))
    sizes: dict[str, int] = {}
    for dist in site.glob("*.dist-info"):
        record = dist / "RECORD"
        name = dist.name.split("-")[0]
        if record.exists():
            files = [site / line.split(",")[0] for line in record.read_text().splitlines() if line]
            sizes[name] = sum(f.stat().st_size for f in files if f.is_file())
    python = venv / "bin" / "python"
    loaded = {}
    for stage in ("pre-commit", "post-commit"):
        if stage == "post-commit":  # a commit that holds metrics: the capture has work to do
            subprocess.run(["git", "commit", "-q", "--no-verify", "-m", "metrics"], cwd=repo, env=env, check=True)
        probe = subprocess.run(
            [str(python), "-c", PROBE, stage, json.dumps(HEAVY)], cwd=repo, env=env, capture_output=True, text=True
        )
        loaded[stage] = json.loads(probe.stderr.strip().splitlines()[-1])
    print(f"pre-commit install-hooks built the hooks' environment in {built:.0f} s (load {common.cpu_pressure()})")
    ledger = subprocess.run(["git", "rev-parse", "-q", "--verify", "refs/mlci/ledger"], cwd=repo, capture_output=True)
    print(f"environment: {size / 1e6:.0f} MB ({venv})")
    print(f"post-commit captured a run: {'yes' if ledger.returncode == 0 else 'no'}")
    print("largest distributions:")
    for name, nbytes in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {name:<24} {nbytes / 1e6:7.1f} MB")
    for stage, seen in loaded.items():
        print(f"hook {stage}: exit {seen['code']}, heavy modules loaded: {', '.join(seen['heavy']) or 'none'}")
    common.write_results(
        "precommit_env",
        {
            "build_seconds": built,
            "env_bytes": size,
            "largest": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:10]),
            "hook_heavy_modules": loaded,
        },
    )
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
