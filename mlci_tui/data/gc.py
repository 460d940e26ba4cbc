"""`mlci data gc`: delete objects no version worth keeping names, from the local cache or a remote.

Kept: what the working tree, the index, and the tip of every local branch and tag name
(with `all_commits`, every commit reachable from them), plus the files those folder
manifests list. Pointers are read from git objects, not checked out.

A remote (`--remote`) is shared by every clone, so there the remote-tracking branches
(`refs/remotes/*`, fetched first by the command) count too: a teammate's pushed branch keeps
its data; so do the other worktrees of this clone (their working trees, indexes and HEADs). A kept folder whose manifest is neither in the local cache nor on the remote
stops the collection (its files are unknown), objects younger than `min_age` hours are
never deleted (a push may be uploading the objects of a commit no ref names yet), and a
failed deletion is reported while the others go on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlci_tui.data.add import parallel_jobs
from mlci_tui.data.cache import DataCache, algo_of, parse_manifest
from mlci_tui.data.hashing import hash_bytes, hash_file
from mlci_tui.data.journal import STALE_SECONDS, recover, remove_stray_temps
from mlci_tui.data.pointer import Pointer
from mlci_tui.data.remotes import open_remote
from mlci_tui.data.status import workspace_pointers
from mlci_tui.data.transfer import Progress, _listable, _run_parallel, remote_object_infos, remote_path
from mlci_tui.data.tree import iter_pointers
from mlci_tui.errors import CheckFailed, InputError, MlciError
from mlci_tui.gitio import Repo

LOCAL_REFS = ("refs/heads", "refs/tags")
REMOTE_REFS = ("refs/heads", "refs/tags", "refs/remotes")


@dataclass
class GcResult:
    kept: int
    removed: int
    freed: int


def other_worktrees(repo: Repo) -> list[tuple[Path, str | None]]:
    """(path, HEAD commit) of every other worktree of this clone that exists on disk."""
    here = repo.root.resolve()
    out: list[tuple[Path, str | None]] = []
    for block in repo.text("worktree", "list", "--porcelain").split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in block.splitlines() if line)
        path = Path(fields.get("worktree", ""))
        if not fields.get("worktree") or "bare" in fields or not path.is_dir() or path.resolve() == here:
            continue
        out.append((path, fields.get("HEAD") or None))
    return out


def referenced_where(
    repo: Repo,
    refs: tuple[str, ...],
    *,
    all_commits: bool = False,
    warnings: list[str] | None = None,
    worktrees: bool = False,
) -> list[tuple[Pointer, str]]:
    """(mlci pointer, where it was found) for the working tree, the index and the refs under
    `refs` (their tips; with `all_commits` every commit reachable from them). With
    `worktrees`, the working tree, index and HEAD (detached or not) of every other worktree
    of the clone count too: they share a remote, not a data cache. Each tree is read once,
    however many refs or commits share it."""
    found = [(p, "the working tree") for _f, p in workspace_pointers(repo.root)]
    found += [(p, "the index") for p in iter_pointers(repo, ":", strict=False, warnings=warnings)]
    trees: dict[str, str] = {}  # tree (or tip) id -> the first ref or commit naming it
    for line in repo.text("for-each-ref", "--format=%(objectname) %(refname)", *refs).splitlines():
        oid, _, name = line.partition(" ")
        trees.setdefault(oid, name)
    heads: list[str] = []
    for path, head in other_worktrees(repo) if worktrees else ():
        found += [(p, f"the worktree {path}") for _f, p in workspace_pointers(path)]
        other = Repo.find(path)
        found += [(p, f"the index of {path}") for p in iter_pointers(other, ":", strict=False, warnings=warnings)]
        if head:
            trees.setdefault(head, f"the HEAD of {path}")
            heads.append(head)
    if all_commits:
        flags = {"refs/heads": "--branches", "refs/tags": "--tags", "refs/remotes": "--remotes"}
        log = repo.text("log", "--format=%T %H", *(flags[r] for r in refs), *heads) if trees else ""
        for line in log.splitlines():
            tree, _, commit = line.partition(" ")
            trees.setdefault(tree, f"commit {commit[:12]}")
    for treeish, where in trees.items():
        found += [(p, where) for p in iter_pointers(repo, treeish, strict=False, warnings=warnings)]
    return [(p, w) for p, w in found if p.origin == "mlci"]


def referenced(repo: Repo, *, all_commits: bool = False) -> list[Pointer]:
    return [p for p, _w in referenced_where(repo, LOCAL_REFS, all_commits=all_commits)]


def gc(repo: Repo, *, all_commits: bool = False, dry_run: bool = False) -> GcResult:
    cache = DataCache.for_repo(repo.root)
    keep: set[str] = set()
    for p in referenced(repo, all_commits=all_commits):
        keep.add(p.hash)
        if p.is_dir and cache.has(p.hash):
            keep.update(h for _n, h, _s in cache.manifest(p.hash))
    removed = freed = 0
    if not dry_run:
        clean_temps(repo, cache, keep)
        cache.forget_complete()
    for digest in cache.iter_objects():
        if digest in keep:
            continue
        path = cache.object_path(digest)
        size = path.stat().st_size
        if not dry_run:
            os.unlink(path)
        removed += 1
        freed += size
    return GcResult(kept=len(keep), removed=removed, freed=freed)


def clean_temps(repo: Repo, cache: DataCache, keep: set[str]) -> tuple[int, int]:
    """Every temp file no running command owns goes: dead commands' journals are replayed,
    older versions' temps in the cache salvaged or removed, `.*.mlci-tmp` beside working files
    removed. Returns (salvaged, removed)."""
    recover(repo.root)
    salvaged, removed = _legacy_temps(cache, keep)
    return salvaged, removed + remove_stray_temps(repo.root, *_data_folders(repo.root))


def _legacy_temps(cache: DataCache, keep: set[str], now: float | None = None) -> tuple[int, int]:
    """Temp files of versions before journals (`tmp/<32 hex>`): an add killed between moving a
    working file there and linking it back left the only copy of that file in one. One whose
    content a kept version names (blake3 or md5) becomes that object again; the others, older
    than an hour, are removed. Returns (salvaged, removed)."""
    folder = cache.root / "tmp"
    try:
        names = [n for n in os.listdir(folder) if "." not in n]
    except OSError:
        return 0, 0
    cutoff = (time.time() if now is None else now) - STALE_SECONDS
    salvaged = removed = 0
    for name in names:
        path = folder / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not path.is_file() or path.is_symlink():
            continue
        digest = next((d for d in (hash_file(path, a, st.st_size) for a in ("blake3", "md5")) if d in keep), None)
        if digest is not None and not cache.has(digest):
            cache._install(path, digest)
            salvaged += 1
        elif digest is not None or st.st_mtime < cutoff:
            path.unlink()
            removed += 1
    return salvaged, removed


def _data_folders(root: Path) -> tuple[list[str], list[str]]:
    """Where a killed command may have left `*.mlci-tmp` beside working files: the folders of the
    working tree's file datasets, and its folder datasets (with their subfolders)."""
    files: set[str] = set()
    folders: set[str] = set()
    for _f, p in workspace_pointers(root):
        if p.origin != "mlci":
            continue
        if (root / p.path).is_dir():
            folders.add(p.path)
        else:
            files.add(os.path.dirname(p.path) or ".")
    return sorted(files), sorted(folders)


# ---------------------------------------------------------------------------- remotes
@dataclass
class RemotePlan:
    """What a remote holds, split into what stays and what goes."""

    listed: int
    kept: int  # objects on the remote that something kept names
    delete: dict[str, int]  # digest -> size: unreferenced and older than min_age
    recent: dict[str, int]  # unreferenced but too young (or of unknown age): kept this time
    warnings: list[str] = field(default_factory=list)

    @property
    def delete_bytes(self) -> int:
        return sum(self.delete.values())


@dataclass
class RemoteDeletion:
    deleted: int = 0
    freed: int = 0
    failed: list[str] = field(default_factory=list)


def fetch_git_refs(repo: Repo) -> None:
    """Bring every git remote's branches and tags into this clone, so that what teammates
    pushed is kept. A failure stops gc: deciding with stale refs could delete their data."""
    proc = repo.run("fetch", "--all", "--tags", "--quiet", check=False)
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MlciError(
            f"gc --remote: `git fetch --all --tags` failed ({why[-1] if why else proc.returncode}); gc must see "
            "every pushed branch and tag: fix the fetch, or pass --no-fetch to trust the refs this clone has"
        )


def _mtime(info: dict[str, Any]) -> float | None:
    """Modification time (epoch seconds) from an fsspec listing entry, whatever the backend calls it."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _remote_manifests(fs: Any, base: str, wanted: dict[str, str], jobs: int) -> dict[str, list[str]]:
    """digest -> the files a folder manifest on the remote lists, each read and verified."""
    out: dict[str, list[str]] = {}
    lock = threading.Lock()

    def read(digest: str) -> None:
        raw = fs.cat_file(remote_path(base, digest))
        if hash_bytes(raw, algo_of(digest)) != digest:
            raise CheckFailed(f"{wanted[digest]}: folder manifest {digest[:12]} on the remote is corrupt; gc stopped")
        files = [h for _n, h, _s in parse_manifest(raw, wanted[digest])]
        with lock:
            out[digest] = files

    errors = _run_parallel(list(wanted), read, jobs)
    if errors:
        raise MlciError(f"cannot read a kept folder's manifest from the remote, gc stopped: {errors[0]}")
    return out


def plan_remote(
    repo: Repo,
    fs: Any,
    base: str,
    *,
    all_commits: bool = False,
    min_age_hours: float = 1.0,
    jobs: int = 8,
    now: float | None = None,
) -> RemotePlan:
    """List the remote once and decide; deletes nothing. Raises when a kept folder's files cannot be known."""
    if not _listable(fs):
        raise MlciError("http(s) remotes cannot be listed or written: gc them on the server that serves them")
    if all_commits and repo.is_shallow():
        raise MlciError(
            "gc --remote --all-commits needs the whole history; this clone is shallow (git fetch --unshallow)"
        )
    if repo.text("config", "--get", "extensions.partialClone", check=False).strip():
        raise MlciError("gc --remote needs every pointer file; this clone is partial (blobs may be missing)")
    warnings: list[str] = []
    named = referenced_where(repo, REMOTE_REFS, all_commits=all_commits, warnings=warnings, worktrees=True)
    infos = remote_object_infos(fs, base)
    cache = DataCache.for_repo(repo.root)
    keep: set[str] = set()
    remote_folders: dict[str, str] = {}
    folders_seen: set[str] = set()
    for p, where in named:
        keep.add(p.hash)
        if not p.is_dir or p.hash in folders_seen:
            continue
        folders_seen.add(p.hash)
        if cache.has(p.hash):
            keep.update(h for _n, h, _s in cache.manifest(p.hash))
        elif p.hash in infos:
            remote_folders.setdefault(p.hash, p.pointer_path)
        else:
            raise InputError(
                f"{p.pointer_path} (in {where}): folder manifest {p.hash[:12]} is neither in the local cache nor on "
                "the remote, so its files are unknown; gc stopped (push it from a clone that has it)"
            )
    for files in _remote_manifests(fs, base, remote_folders, jobs).values():
        keep.update(files)
    cutoff = (time.time() if now is None else now) - min_age_hours * 3600
    delete: dict[str, int] = {}
    recent: dict[str, int] = {}
    for digest, info in infos.items():
        if digest in keep:
            continue
        size = int(info.get("size") or 0)
        modified = _mtime(info)
        if modified is None or modified > cutoff:
            recent[digest] = size
        else:
            delete[digest] = size
    return RemotePlan(
        listed=len(infos), kept=len(infos) - len(delete) - len(recent), delete=delete, recent=recent, warnings=warnings
    )


@dataclass
class RemoteGc:
    """A remote's plan with what carrying it out needs: the open remote and the parallelism."""

    name: str
    fs: Any
    base: str
    jobs: int
    plan: RemotePlan

    def delete(self) -> RemoteDeletion:
        return delete_remote(self.fs, self.base, self.plan.delete, self.jobs)


def plan_remote_gc(
    repo: Repo,
    remote: str | None,
    *,
    all_commits: bool = False,
    min_age_hours: float = 1.0,
    jobs: int | None = None,
    fetch_refs: bool = True,
) -> RemoteGc:
    """`mlci data gc --remote`'s decision, deleting nothing: the remote `remote` (None:
    data.remote) opened, every git remote's refs fetched first (unless `fetch_refs` is false,
    see `fetch_git_refs`), then listed and planned."""
    if min_age_hours < 0:
        raise InputError(f"--min-age {min_age_hours}: hours must be 0 or more")
    fs, base, name = open_remote(repo.root, remote)
    if fetch_refs:
        fetch_git_refs(repo)
    n_jobs = parallel_jobs(repo.root, jobs)
    plan = plan_remote(repo, fs, base, all_commits=all_commits, min_age_hours=min_age_hours, jobs=n_jobs)
    return RemoteGc(name, fs, base, n_jobs, plan)


S3_DELETE_BATCH = 1000  # the most keys one S3 DeleteObjects request takes


def delete_remote(fs: Any, base: str, objects: dict[str, int], jobs: int) -> RemoteDeletion:
    """Delete `objects` (digest -> size), `jobs` at a time; one failure does not stop the rest.
    Prefix folders stay: a push in flight may be about to write into one. On S3, up to 1,000
    objects go in one request (see `_delete_s3_batch`)."""
    result = RemoteDeletion()
    lock = threading.Lock()
    progress = Progress("gc", len(objects))

    def deleted(digest: str) -> None:
        with lock:
            result.deleted += 1
            result.freed += objects[digest]
        progress.step(objects[digest])

    def remove(digest: str) -> None:
        try:
            fs.rm_file(remote_path(base, digest))
        except FileNotFoundError:  # gone already (another gc): nothing freed by this one
            progress.step(0)
            return
        deleted(digest)

    digests = sorted(objects)
    if _is_s3(fs):
        failures: list[str] = []
        batches = [digests[i : i + S3_DELETE_BATCH] for i in range(0, len(digests), S3_DELETE_BATCH)]
        result.failed = _run_parallel(
            batches, lambda batch: failures.extend(_delete_s3_batch(fs, base, batch, deleted)), jobs
        )
        result.failed += failures
    else:
        result.failed = _run_parallel(digests, remove, jobs)
    progress.close()
    return result


def _is_s3(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "s3" in protocols and hasattr(fs, "call_s3") and hasattr(fs, "split_path")


def _delete_s3_batch(fs: Any, base: str, digests: list[str], deleted: Callable[[str], None]) -> list[str]:
    """One DeleteObjects request for up to 1,000 objects: 10,000 objects are 10 requests,
    not 10,000. Quiet mode is off, so S3 answers for every key and each outcome is counted
    (S3 also reports a key that was already gone as deleted). A request that fails as a
    whole fails each of its objects, reported as one line."""
    by_key: dict[str, str] = {}
    bucket = ""
    for digest in digests:
        bucket, key, _version = fs.split_path(remote_path(base, digest))
        by_key[key] = digest
    try:
        answer = fs.call_s3(
            "delete_objects", Bucket=bucket, Delete={"Objects": [{"Key": k} for k in by_key], "Quiet": False}
        )
    except Exception as exc:
        why = str(exc).splitlines()[0] if str(exc) else ""
        return [f"{len(digests)} objects from {digests[0][:12]}: {type(exc).__name__}: {why}"]
    finally:
        fs.invalidate_cache(base)
    for item in answer.get("Deleted", []):
        if item.get("Key") in by_key:
            deleted(by_key[item["Key"]])
    return [
        f"{by_key.get(item.get('Key', ''), item.get('Key', ''))[:12]}: {item.get('Code', 'error')}: "
        f"{item.get('Message', '')}"
        for item in answer.get("Errors", [])
    ]
