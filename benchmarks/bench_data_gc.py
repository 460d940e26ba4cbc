"""Garbage-collecting a data remote: `mlci data gc --remote` against `dvc gc -c -w` (DVC from the
peers venv), side by side in one run.

Each tool has its own repository and a `file://` remote (a local folder) holding the same
data: two folders of FILES/2 files of 10 KiB each (default 10,000 objects in all, plus one
folder listing each), both pushed, then one folder's pointer removed and committed. gc
keeps the other folder and deletes the removed one's objects (half the remote).

  - dry run: `mlci data gc -r --dry-run --min-age 0` vs `dvc gc -c -w --dry -f`;
  - real gc: `mlci data gc -r --yes --min-age 0` vs `dvc gc -c -w -f`. Before each repetition
    (untimed) both remotes, and DVC's local cache (which `dvc gc -c` collects as well), are
    restored from pristine copies.
`--min-age 0` because the objects were pushed moments before; mlci's default fetch of git
remotes is on (the repositories have none, so it costs one git process). mlci collects only
the remote; DVC also deletes the same 5,000 objects from its local cache (see the results).

Usage: python benchmarks/bench_data_gc.py [--quick] [--files N] [--repeats N]
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


def _make_folder(folder: Path, files: int, size: int) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"{i:05}.bin").write_bytes(os.urandom(size))


def _copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst, onerror=_force)
    shutil.copytree(src, dst, copy_function=shutil.copy2)


def _force(func: Callable[..., Any], path: str, _exc: Any) -> None:
    os.chmod(os.path.dirname(path), 0o755)
    func(path)


def _objects(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def setup_mlci(root: Path, data: Path, remote: Path) -> Path:
    repo = common.git_init(root)
    (repo / "mlci.yaml").write_text(f"data:\n  remote: store\n  remotes:\n    store: {{url: 'file://{remote}'}}\n")
    for name in ("keep", "drop"):
        shutil.copytree(data / name, repo / name)
    common.run([common.MLCI, "data", "add", "keep", "drop"], repo)
    common.run(["git", "add", "-A"], repo)
    common.run(["git", "commit", "-qm", "data"], repo)
    common.run([common.MLCI, "data", "push"], repo)
    common.run(["git", "rm", "-q", "drop.mlci"], repo)
    common.run(["git", "commit", "-qm", "drop one folder"], repo)
    return repo


def setup_dvc(root: Path, dvc: str, data: Path, remote: Path) -> Path:
    repo = common.git_init(root)
    common.run([dvc, "init", "-q"], repo)
    common.run([dvc, "config", "core.analytics", "false"], repo)
    common.run([dvc, "config", "core.site_cache_dir", str(repo / ".dvc-site")], repo)
    common.run([dvc, "remote", "add", "-d", "store", str(remote)], repo)
    for name in ("keep", "drop"):
        shutil.copytree(data / name, repo / name)
    common.run([dvc, "add", "-q", "keep", "drop"], repo)
    common.run(["git", "add", "-A"], repo)
    common.run(["git", "commit", "-qm", "data"], repo)
    common.run([dvc, "push", "-q"], repo)
    common.run(["git", "rm", "-q", "drop.dvc"], repo)
    common.run(["git", "commit", "-qm", "drop one folder"], repo)
    return repo


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--files", type=int, default=None, help="objects on the remote (default 10,000; 2,000 quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 3; 1 quick)")
    args = parser.parse_args()
    files = args.files or (2_000 if args.quick else 10_000)
    repeats = args.repeats or (1 if args.quick else 3)
    dvc = common.peer_tool("dvc")
    if not dvc:
        print("DVC not found: run `python benchmarks/run_all.py --setup-peers` for the comparison")
    scratch = common.fresh_dir("data-gc")
    data = scratch / "data"
    for name in ("keep", "drop"):
        _make_folder(data / name, files // 2, 10 * 1024)

    m_remote, m_pristine = scratch / "mlci-remote", scratch / "mlci-remote.pristine"
    m = setup_mlci(scratch / "mlci", data, m_remote)
    _copy(m_remote, m_pristine)
    variants_dry: dict[str, Callable[[], float]] = {
        "mlci data gc -r --dry-run": lambda: common.time_cmd(
            [common.MLCI, "data", "gc", "-r", "--dry-run", "--min-age", "0"], m
        ),
    }

    def mlci_gc() -> float:
        _copy(m_pristine, m_remote)
        os.sync()
        return common.time_cmd([common.MLCI, "data", "gc", "-r", "--yes", "--min-age", "0"], m)

    variants_real: dict[str, Callable[[], float]] = {"mlci data gc -r --yes": mlci_gc}
    d_remote = scratch / "dvc-remote"
    if dvc:
        d = setup_dvc(scratch / "dvc", dvc, data, d_remote)
        d_cache = d / ".dvc" / "cache"
        d_pristine, c_pristine = scratch / "dvc-remote.pristine", scratch / "dvc-cache.pristine"
        _copy(d_remote, d_pristine)
        _copy(d_cache, c_pristine)
        variants_dry["dvc gc -c -w --dry"] = lambda: common.time_cmd([dvc, "gc", "-c", "-w", "--dry", "-f"], d)

        def dvc_gc() -> float:
            _copy(d_pristine, d_remote)
            _copy(c_pristine, d_cache)
            os.sync()
            return common.time_cmd([dvc, "gc", "-c", "-w", "-f"], d)

        variants_real["dvc gc -c -w"] = dvc_gc
    shutil.rmtree(data)
    results: dict[str, Any] = {"files": files, "file_kib": 10, "repeats": repeats}
    results["remote_objects"] = {"mlci": _objects(m_pristine), "dvc": _objects(d_remote) if dvc else None}
    results["dry_run"] = common.summarise(
        common.interleave(variants_dry, repeats, warmup=1), "mlci data gc -r --dry-run"
    )
    common.print_table(f"gc dry run, remote of {files:,} objects of 10 KiB (ratio to mlci)", results["dry_run"])
    results["gc"] = common.summarise(common.interleave(variants_real, repeats, warmup=0), "mlci data gc -r --yes")
    common.print_table(f"gc deleting half of {files:,} objects of 10 KiB (ratio to mlci)", results["gc"])
    results["remote_objects_after"] = {"mlci": _objects(m_remote), "dvc": _objects(d_remote) if dvc else None}
    print(f"objects before/after: {results['remote_objects']} -> {results['remote_objects_after']}")
    common.write_results(
        "data_gc",
        {
            "quick": args.quick,
            "machine": common.machine(),
            "dvc": common._version([dvc, "--version"]) if dvc else None,
            **results,
        },
    )
    shutil.rmtree(scratch, onerror=_force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
