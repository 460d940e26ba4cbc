"""`mlci data add`: hash a file or folder into the cache, write its pointer, ignore the data in git.

Usable from Python (`add_paths`), also for content already fetched to a temp path (what
`mlci data import-url` does): the content is moved into the cache and placed at PATH.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlci_tui import config
from mlci_tui.data.cache import SMALL_FILE, DataCache
from mlci_tui.data.hashing import BIG_FILE, StatCache, hash_file
from mlci_tui.data.link import place
from mlci_tui.data.pointer import POINTER_SUFFIX, Pointer, dump_pointer, format_of
from mlci_tui.data.workspace import atomic_write, ensure_ignored, ignore_pattern, repo_relpath, walk_folder
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo, git

LINKED = ("hardlink", "symlink")  # link modes in which the working file is the cached object


def data_settings(root: Path) -> dict[str, Any]:
    """The `data:` config section of the working tree's mlci.yaml (defaults without one)."""
    return dict(config.load(root).data["data"])


def default_jobs() -> int:
    return min(32, 4 * (os.cpu_count() or 1))


def parallel_jobs(root: Path, jobs: int | None) -> int:
    """How many transfers run at once: `-j`, else data.jobs, else `default_jobs()`."""
    return jobs or data_settings(root)["jobs"] or default_jobs()


def add_paths(
    root: Path,
    paths: list[str],
    *,
    link: str | None = None,
    algo: str | None = None,
    jobs: int | None = None,
    fetched: Mapping[str, Path] | None = None,
    sources: Mapping[str, tuple[str | None, str | None]] | None = None,
    cwd: Path | None = None,
    state_dir: Path | None = None,
) -> list[Pointer]:
    """Track `paths` (relative to `cwd`, default the current folder); returns their pointers.

    `fetched` maps a path to a temp file or folder already holding its new content (moved
    into the cache, then placed at the path); `sources` maps a path to (source_url,
    source_version) written into its pointer.
    """
    root = Path(root)
    settings = data_settings(root)
    link = link or settings["link"]
    algo = algo or settings["hash"]
    jobs = jobs or settings["jobs"] or default_jobs()
    fetched = {repo_relpath(root, k, cwd or root): Path(v) for k, v in (fetched or {}).items()}
    sources = {repo_relpath(root, k, cwd or root): v for k, v in (sources or {}).items()}
    rels = [_checked(root, p, cwd, fetched) for p in paths]
    if len(set(rels)) != len(rels):
        raise InputError("the same path is given twice")
    _refuse_tracked(root, rels)
    for rel in rels:  # a path .gitignore cannot hold is refused before anything is written
        ignore_pattern(rel)
    if state_dir is None:
        state_dir = Repo.find(root).state_dir
    stat_cache = StatCache(state_dir)
    cache = DataCache.for_repo(root, algo)
    pointers = []
    try:
        for rel in rels:
            if rel in fetched:
                _take_fetched(root, rel, fetched[rel])
            src_url, src_version = sources.get(rel, (None, None))
            if (root / rel).is_dir():
                pointer = _add_folder(root, rel, cache, stat_cache, algo, link, jobs)
            else:
                pointer = _add_file(root, rel, cache, stat_cache, algo, link)
            if src_url is not None or src_version is not None:
                pointer = Pointer(**{**pointer.__dict__, "source_url": src_url, "source_version": src_version})
            atomic_write(root / (rel + POINTER_SUFFIX), dump_pointer(pointer).encode())
            pointers.append(pointer)
    finally:
        stat_cache.save()
    ensure_ignored(root, rels)
    return pointers


def _checked(root: Path, user_path: str, cwd: Path | None, fetched: Mapping[str, Path]) -> str:
    if user_path.endswith(POINTER_SUFFIX):
        raise InputError(f"{user_path}: is a pointer file; add the data it names instead")
    rel = repo_relpath(root, user_path, cwd)
    if rel not in fetched and not (root / rel).exists():
        raise InputError(f"{user_path}: no such file or folder")
    return rel


def _refuse_tracked(root: Path, rels: list[str]) -> None:
    proc = git(["ls-files", "-z", "--", *rels], root)
    tracked = [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
    if tracked:
        first = tracked[0]
        top = next((r for r in rels if first == r or first.startswith(r + "/")), first)
        raise InputError(f"{top}: is tracked by git; untrack it first with `git rm -r --cached {top}`")


def _take_fetched(root: Path, rel: str, tmp: Path) -> None:
    """Put fetched content at `rel`: a rename when it is a file on this filesystem."""
    dest = root / rel
    if dest.is_symlink():
        raise InputError(f"{rel}: is a symlink; mlci tracks no data through a link")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if tmp.is_dir():
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            os.replace(dest, old)
            shutil.move(str(tmp), dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            shutil.move(str(tmp), dest)
    else:
        try:
            os.replace(tmp, dest)
        except OSError:
            staged = dest.with_name(f".{dest.name}.fetched")
            shutil.copyfile(tmp, staged)
            os.replace(staged, dest)


def _hash_and_cache(
    path: str, rel: str, st: os.stat_result, cache: DataCache, stat_cache: StatCache, algo: str, move: bool = False
) -> str:
    """The file's hash, its content stored in the cache (one read for small files; copy and
    hash in parallel for big ones; with `move`, hashed then renamed into the cache)."""
    digest = stat_cache.get(rel, st, algo)
    if digest is not None and cache.has(digest):
        return digest
    if move:
        digest = digest or hash_file(path, algo, st.st_size)
        if not cache.has(digest):
            cache.add_file(path, digest, move=True, size=st.st_size)
        return digest
    if digest is None and st.st_size >= BIG_FILE:
        digest = _hash_while_copying(path, cache, algo, st.st_size)
    else:
        digest, _size = cache.add_file(path, digest, size=st.st_size)
    stat_cache.put(rel, st, algo, digest)
    return digest


def _hash_while_copying(path: str, cache: DataCache, algo: str, size: int) -> str:
    tmp = cache._tmp()
    copy_error: list[BaseException] = []

    def copy() -> None:
        try:
            if not cache._try_reflink(path, tmp):
                shutil.copyfile(path, tmp)
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the caller's thread
            copy_error.append(exc)

    worker = threading.Thread(target=copy)
    worker.start()
    try:
        digest = hash_file(path, algo, size)
    finally:
        worker.join()
    if copy_error:
        tmp.unlink(missing_ok=True)
        raise copy_error[0]
    cache._install(tmp, digest)
    return digest


def _link_back(
    root: Path, rel: str, cache: DataCache, digest: str, link: str, stat_cache: StatCache, algo: str
) -> None:
    """hardlink/symlink modes: the working file becomes a link to the (read-only) cached object."""
    if link not in LINKED:
        return
    dest = root / rel
    place(cache, digest, dest, link)
    if link == "hardlink":
        stat_cache.put(rel, os.stat(dest), algo, digest)


def _add_file(root: Path, rel: str, cache: DataCache, stat_cache: StatCache, algo: str, link: str) -> Pointer:
    path = root / rel
    st = os.stat(path)
    digest = _hash_and_cache(os.fspath(path), rel, st, cache, stat_cache, algo, link in LINKED)
    _link_back(root, rel, cache, digest, link, stat_cache, algo)
    return Pointer(path=rel, algo=algo, hash=digest, size=st.st_size, format=format_of(rel))


def _add_folder(
    root: Path, rel: str, cache: DataCache, stat_cache: StatCache, algo: str, link: str, jobs: int
) -> Pointer:
    files = walk_folder(root, rel)
    base = os.fspath(root / rel)

    def one(item: tuple[str, os.stat_result]) -> tuple[str, str, int]:
        name, st = item
        digest = _hash_and_cache(f"{base}/{name}", f"{rel}/{name}", st, cache, stat_cache, algo, link in LINKED)
        _link_back(root, f"{rel}/{name}", cache, digest, link, stat_cache, algo)  # at once: a moved file is back
        return name, digest, st.st_size

    big_files = sum(st.st_size for _n, st in files) >= SMALL_FILE * max(1, len(files))
    if len(files) > 1 and jobs > 1 and big_files:  # threads pay off for hashing big files only
        with ThreadPoolExecutor(max_workers=min(jobs, 4)) as pool:
            entries = list(pool.map(one, files, chunksize=64))
    else:
        entries = [one(f) for f in files]
    digest = cache.add_manifest(entries)
    formats = {format_of(name) for name, _h, _s in entries}
    fmt = formats.pop() if len(formats) == 1 else None
    return Pointer(
        path=rel,
        algo=algo,
        hash=digest,
        size=sum(s for _n, _h, s in entries),
        nfiles=len(entries),
        format=fmt,
    )
