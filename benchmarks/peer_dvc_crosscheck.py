"""mlci against DVC itself, value for value, on the DVC fixture projects of the tests.

For each fixture project of `tests/test_dvc_projects.py` (DVC 3 `metrics:`/`plots:`, DVC 2.x
`live:`, templated and `foreach`/`matrix` stages, old `.dvc` stage files with a `.metric`,
metrics kept out of git with CML's `metrics.txt`): the project is built in a fresh git
repository, every commit is captured by mlci (`mlci capture`), and then

- `dvc metrics show --all-commits --json` is compared with the metrics mlci recorded for
  each commit (file and dotted name, value);
- `dvc params diff FIRST SECOND --json` is compared with `mlci diff` of the two commits'
  runs (the params that changed, old and new).

A difference is DVC showing a value mlci lacks or a value that differs; metrics mlci reads
that today's DVC does not (DVC 2.x `live:` sections and `.metric` stage files, which DVC 3
dropped; a `metrics.txt` opted in with `metrics.files`) are listed as notes.

DVC runs from the peers' venv (`benchmarks/common.py: setup_peers`, the `bench` extra); this
is a check to run by hand, not part of the test suite (DVC is not installed there).

    python benchmarks/peer_dvc_crosscheck.py
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import common  # noqa: E402
import test_dvc_projects as fixtures  # noqa: E402


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def mlci_json(root: Path, *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "mlci_tui", *args], cwd=root, capture_output=True, text=True, env=common.env()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mlci {' '.join(args)}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def dvc_json(dvc: str, root: Path, *args: str) -> Any:
    proc = subprocess.run([dvc, *args, "--json"], cwd=root, capture_output=True, text=True, env=common.env())
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def number(text: Any) -> Any:
    """A param as mlci's diff prints it (text), as the number DVC reports, when it is one."""
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)
    return bool(a == b)


def check(name: str, dvc: str, notes: list[str]) -> list[str]:
    root = common.fresh_dir(f"crosscheck-{name}")
    shas = fixtures.build(root, name)
    subprocess.run([sys.executable, "-m", "mlci_tui", "capture", *shas], cwd=root, check=True, env=common.env())
    problems: list[str] = []
    shown = dvc_json(dvc, root, "metrics", "show", "--all-commits")
    for sha in shas:
        theirs = {
            (file, key): value
            for file, body in (shown.get(sha, {}).get("data") or {}).items()
            for key, value in flat(body.get("data") or {}).items()
        }
        rows = mlci_json(
            root,
            "sql",
            f"SELECT m.file, m.name, m.value FROM metrics m JOIN runs r USING (run_id) WHERE r.\"commit\" = '{sha}'",
            "--json",
        )
        ours = {(r["file"], r["name"]): r["value"] for r in rows}
        for key, value in theirs.items():
            if key not in ours:
                problems.append(f"{name} {sha[:8]}: DVC shows {key} = {value}, mlci has none")
            elif not same(ours[key], value):
                problems.append(f"{name} {sha[:8]}: {key}: DVC {value}, mlci {ours[key]}")
        extra = sorted(ours.keys() - theirs.keys())
        if extra:  # layouts today's DVC no longer reads (2.x `live:`, `.metric` stage files) or opted in
            notes.append(f"{name} {sha[:8]}: mlci also reads {', '.join(f'{f}:{n}' for f, n in extra)}")
    diff = dvc_json(dvc, root, "params", "diff", shas[0], shas[1])
    theirs_p = {(file, key): (v.get("old"), v.get("new")) for file, keys in diff.items() for key, v in keys.items()}
    ours_diff = mlci_json(root, "diff", shas[0], shas[1], "--json")
    ours_p = {c["name"]: (c.get("base"), c.get("head")) for c in ours_diff.get("params", [])}
    for (file, key), (old, new) in theirs_p.items():
        mine = ours_p.get(key) or ours_p.get(f"{file}:{key}")
        if mine is None:
            problems.append(f"{name}: DVC params diff has {file}:{key} {old} -> {new}, mlci diff has none")
        elif not (same(number(mine[0]), old) and same(number(mine[1]), new)):
            problems.append(f"{name}: params {key}: DVC {old} -> {new}, mlci {mine[0]} -> {mine[1]}")
    return problems


def main() -> int:
    dvc = common.peer_tool("dvc")
    if dvc is None:
        print("DVC is not installed: run benchmarks/common.py's setup_peers() (the bench extra) first")
        return 2
    failures = 0
    for name in sorted(fixtures.PROJECTS):
        notes: list[str] = []
        try:
            problems = check(name, dvc, notes)
        except RuntimeError as exc:
            problems = [f"{name}: {exc}"]
        failures += bool(problems)
        print(f"{name}: {'agrees with DVC' if not problems else f'{len(problems)} difference(s)'}")
        for line in problems:
            print(f"  {line}")
        for line in notes:
            print(f"  note: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
