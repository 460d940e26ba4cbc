"""Data as code against DVC, side by side in one run (DVC from the peers venv).

  - `mlci data add` of one big file vs `dvc add` (default 1 GiB; `--size-mib`), in copy mode
    (the default of both on a filesystem without reflinks) and in hardlink mode;
  - `mlci data add` of a folder of 10,000 files of 10 KiB vs `dvc add`;
  - `mlci data status` with nothing changed on those 10,000 files vs `dvc status`, and
    `git status` in a repository holding the same 10,000 files in git.
The big file's rounds are recorded one by one (`rounds` in the results: each round's wall and
CPU per variant, DVC / mlci per mode, the load average), since the goal is a ratio in every
run, not only in the medians. `--against SRC` (an older mlci source tree, e.g. `git archive`
of a commit unpacked in a temp folder) adds its `data add` to the same rounds, run as
`python -m mlci_tui` with `PYTHONPATH=SRC`.
Every add starts cold for the tool: its cache, pointer and hash state are removed (untimed)
before each repetition; the data itself is read just before (untimed: `_warm`), so it is in
the page cache for both tools. How they are removed matters on this machine's ext4 (mounted
with `discard`), for both tools alike:
  - the folder of 10,000 files: deleting 10,000 cached files made the next ~10,000 file
    creations cost ~0.8 ms of kernel time each (5-8 s per add, for whichever tool came
    next), so the old cache is moved aside and deleted after that part's timing;
  - the 1 GiB file: moved aside, the next 1 GiB write into fresh blocks costs ~2.5 s of
    kernel time instead of ~0.5 s into the blocks just freed, so it is deleted.

Usage: python benchmarks/bench_data.py [--quick] [--size-mib N] [--files N] [--rounds N]
       [--only big|tree|status] [--against SRC]
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

STATUS_TARGET_S = 0.3


def _rm(*paths: Path) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, onerror=_force)
        elif p.exists() or p.is_symlink():
            p.unlink()


def _set_aside(scratch: Path, *paths: Path) -> None:
    """Move `paths` into the scratch trash (deleted after all timing: see the module docstring)."""
    trash = scratch / "trash"
    trash.mkdir(exist_ok=True)
    for p in paths:
        if p.exists() or p.is_symlink():
            os.replace(p, trash / f"{len(list(trash.iterdir())):05}-{p.name}")


def _remove(scratch: Path, paths: tuple[Path, ...], aside: bool) -> None:
    if aside:
        _set_aside(scratch, *paths)
    else:
        _rm(*paths)


def _force(func: Callable[..., Any], path: str, _exc: Any) -> None:
    os.chmod(os.path.dirname(path), 0o755)
    func(path)


def _make_tree(folder: Path, files: int, size: int) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        sub = folder / f"{i // 1000:02}"
        sub.mkdir(exist_ok=True)
        (sub / f"{i:05}.bin").write_bytes(os.urandom(size))


def _mlci_repo(path: Path, data: Callable[[Path], None], link: str) -> Path:
    common.git_init(path)
    (path / "mlci.yaml").write_text(f"data:\n  link: {link}\n")
    data(path)
    return path


def _dvc_repo(path: Path, dvc: str, data: Callable[[Path], None], link: str) -> Path:
    common.git_init(path)
    common.run([dvc, "init", "-q"], path)
    common.run([dvc, "config", "core.analytics", "false"], path)
    common.run([dvc, "config", "core.site_cache_dir", str(path / ".dvc-site")], path)
    if link == "hardlink":
        common.run([dvc, "config", "cache.type", "hardlink"], path)
    data(path)
    return path


def _reset_mlci(repo: Path, target: str, aside: bool) -> None:
    state = (repo / ".mlci", repo / ".git" / "mlci")
    _remove(repo.parent, state, aside)
    _rm(repo / f"{target}.mlci", repo / ".gitignore")


def _reset_dvc(repo: Path, target: str, aside: bool) -> None:
    state = (repo / ".dvc" / "cache", repo / ".dvc" / "tmp", repo / ".dvc-site")
    _remove(repo.parent, state, aside)
    _rm(repo / f"{target}.dvc", repo / ".gitignore")


Sample = dict[str, float]  # one timing: wall, cpu, load (the 1-minute load average when it started)


def _timed_add(
    cmd: list[str], repo: Path, reset: Callable[[], None], log: list[Sample], env: dict[str, str] | None = None
) -> Callable[[], float]:
    """One cold add; every timing (warm-up included) is also appended to `log`."""

    def go() -> float:
        reset()
        os.sync()
        _warm(repo / cmd[-1])
        load = os.getloadavg()[0]
        wall = common.time_cmd(cmd, repo, env=env)
        log.append({"wall": wall, "cpu": common._LAST_CPU[0] or 0.0, "load": load})
        return wall

    return go


def _warm(target: Path) -> None:
    """Read the data to add (untimed), so that it is in the page cache for every tool alike (the
    repositories' copies take 6 GiB on a machine shared with other jobs)."""
    files = [target] if target.is_file() else [p for p in sorted(target.rglob("*")) if p.is_file()]
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def per_round(logs: dict[str, list[Sample]], modes: list[str], warmup: int) -> list[dict[str, Any]]:
    """Each timed round (warm-up dropped): every variant's wall and CPU, and DVC / mlci per mode.
    The variants of a round ran back to back in a shuffled order (`common.interleave`)."""
    rounds: list[dict[str, Any]] = []
    count = min(len(log) for log in logs.values()) - warmup
    for i in range(warmup, warmup + count):
        row: dict[str, Any] = {name: log[i] for name, log in logs.items()}
        row["load"] = max(log[i]["load"] for log in logs.values())
        for link in modes:
            mlci, dvc = logs.get(f"mlci data add ({link})"), logs.get(f"dvc add ({link})")
            if mlci and dvc:
                row[f"ratio ({link})"] = dvc[i]["wall"] / mlci[i]["wall"]
                row[f"cpu ratio ({link})"] = dvc[i]["cpu"] / max(mlci[i]["cpu"], 1e-9)
        rounds.append(row)
    return rounds


def print_rounds(rounds: list[dict[str, Any]], modes: list[str]) -> None:
    for n, row in enumerate(rounds, 1):
        parts = [f"round {n} (load {row['load']:.1f})"]
        for link in modes:
            if f"ratio ({link})" in row:
                mlci = row[f"mlci data add ({link})"]
                parts.append(
                    f"{link}: DVC/mlci x{row[f'ratio ({link})']:.2f} wall (mlci {mlci['wall']:.2f} s), "
                    f"x{row[f'cpu ratio ({link})']:.2f} CPU (mlci {mlci['cpu']:.2f} s)"
                )
        print("  " + "; ".join(parts))
    sys.stdout.flush()


def bench_add(
    scratch: Path,
    dvc: str | None,
    name: str,
    target: str,
    make: Callable[[Path], None],
    modes: list[str],
    repeats: int,
    deadline: common.Deadline,
    aside: bool,
    against: Path | None = None,
) -> dict[str, dict[str, Any]]:
    variants: dict[str, Callable[[], float]] = {}
    logs: dict[str, list[Sample]] = {}
    for link in modes:
        m = _mlci_repo(scratch / f"{name}-mlci-{link}", make, link)
        label = f"mlci data add ({link})"
        variants[label] = _timed_add(
            [common.MLCI, "data", "add", target],
            m,
            lambda m=m: _reset_mlci(m, target, aside),
            logs.setdefault(label, []),
        )
        if against:
            b = _mlci_repo(scratch / f"{name}-before-{link}", make, link)
            label = f"mlci data add ({link}, before)"
            variants[label] = _timed_add(
                [common.PYTHON, "-m", "mlci_tui", "data", "add", target],
                b,
                lambda b=b: _reset_mlci(b, target, aside),
                logs.setdefault(label, []),
                common.env(PYTHONPATH=str(against)),
            )
        if dvc:
            d = _dvc_repo(scratch / f"{name}-dvc-{link}", dvc, make, link)
            label = f"dvc add ({link})"
            variants[label] = _timed_add(
                [dvc, "add", "-q", target], d, lambda d=d: _reset_dvc(d, target, aside), logs.setdefault(label, [])
            )
    samples = common.interleave(variants, repeats, deadline, warmup=1)
    rounds = per_round(logs, modes, warmup=1)
    print_rounds(rounds, modes)
    stats: dict[str, Any] = common.summarise(samples, baseline=f"mlci data add ({modes[0]})")
    for link in modes:
        if dvc and stats[f"mlci data add ({link})"].get("n"):
            stats[f"mlci data add ({link})"]["dvc_over_mlci"] = (
                stats[f"dvc add ({link})"]["median"] / stats[f"mlci data add ({link})"]["median"]
            )
    for link in modes:
        worst = [r[f"ratio ({link})"] for r in rounds if f"ratio ({link})" in r]
        if worst:
            stats[f"mlci data add ({link})"]["worst_round_ratio"] = min(worst)
    stats["rounds"] = rounds
    for link in modes:
        _rm(scratch / f"{name}-mlci-{link}", scratch / f"{name}-dvc-{link}", scratch / f"{name}-before-{link}")
    _rm(scratch / "trash")
    return stats


def _variants(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-variant statistics of `bench_add`'s result (without its `rounds`)."""
    return {k: v for k, v in stats.items() if k != "rounds"}


def bench_status(scratch: Path, dvc: str | None, files: int, repeats: int, deadline: common.Deadline) -> dict[str, Any]:
    make = lambda root: _make_tree(root / "tree", files, 10 * 1024)  # noqa: E731
    m = _mlci_repo(scratch / "status-mlci", make, "copy")
    common.run([common.MLCI, "data", "add", "tree"], m)
    common.run([common.MLCI, "data", "status"], m)  # the stat cache is warm, as after any add
    variants: dict[str, Callable[[], float]] = {
        "mlci data status": lambda: common.time_cmd([common.MLCI, "data", "status"], m)
    }
    if dvc:
        d = _dvc_repo(scratch / "status-dvc", dvc, make, "copy")
        common.run([dvc, "add", "-q", "tree"], d)
        variants["dvc status"] = lambda: common.time_cmd([dvc, "status"], d)
    g = common.git_init(scratch / "status-git")
    make(g)
    common.run(["git", "add", "-A"], g)
    common.run(["git", "commit", "-qm", "tree"], g)
    variants["git status (files in git)"] = lambda: common.time_cmd(["git", "status", "--porcelain"], g)
    samples = common.interleave(variants, repeats, deadline, warmup=1)
    return common.summarise(samples, baseline="mlci data status")


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--size-mib", type=int, default=None, help="big file size (default 1024; 256 with --quick)")
    parser.add_argument("--files", type=int, default=10_000, help="small files in the folder (default 10,000)")
    parser.add_argument("--only", choices=("big", "tree", "status"), action="append", help="only these parts")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; 2 with --quick)")
    parser.add_argument(
        "--against", type=Path, default=None, help="an older mlci source tree, timed in the same rounds"
    )
    args = parser.parse_args()
    size_mib = args.size_mib or (256 if args.quick else 1024)
    repeats = args.rounds or (2 if args.quick else 5)
    deadline = common.Deadline(args.budget or (240 if args.quick else 900))
    dvc = common.peer_tool("dvc")
    if not dvc:
        print("DVC not found: run `python benchmarks/run_all.py --setup-peers` for the comparison")
    scratch = common.fresh_dir("data")
    big = scratch / "big.src"
    with open(big, "wb") as f:
        for _ in range(size_mib if "big" in (args.only or ["big"]) else 0):
            f.write(os.urandom(1 << 20))

    def big_file(root: Path) -> None:
        shutil.copyfile(big, root / "big.bin")

    parts = args.only or ["big", "tree", "status"]
    results: dict[str, Any] = {"size_mib": size_mib, "files": args.files}
    if "big" in parts:
        results["add_big"] = bench_add(
            scratch,
            dvc,
            "big",
            "big.bin",
            big_file,
            ["copy", "hardlink"],
            repeats,
            deadline,
            aside=False,
            against=args.against,
        )
        common.print_table(f"add one {size_mib} MiB file (ratio to mlci, copy mode)", _variants(results["add_big"]))
    _rm(big)
    tree = lambda root: _make_tree(root / "tree", args.files, 10 * 1024)  # noqa: E731
    if "tree" in parts:
        results["add_tree"] = bench_add(scratch, dvc, "tree", "tree", tree, ["copy"], repeats, deadline, aside=True)
        common.print_table(
            f"add a folder of {args.files:,} files of 10 KiB (ratio to mlci)", _variants(results["add_tree"])
        )
    if "status" in parts:
        results["status"] = bench_status(scratch, dvc, args.files, repeats * 2, deadline)
        common.print_table(
            f"status, nothing changed, {args.files:,} files (ratio to mlci; target < {STATUS_TARGET_S} s)",
            results["status"],
        )
    common.write_results(
        "data" if not args.only else "data-" + "-".join(parts),
        {
            "quick": args.quick,
            "machine": common.machine(),
            "dvc": common._version([dvc, "--version"]) if dvc else None,
            **results,
        },
    )
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
