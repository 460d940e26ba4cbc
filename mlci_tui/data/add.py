"""`mlci data add`: hash a file or folder into the cache, write its pointer, ignore the data in git.

Usable from Python (`add_paths`), also for content already fetched to a temp path (what
`mlci data import-url` does): the content is moved into the cache and placed at PATH.

Crash safety (hardlink and symlink modes): the working file is never moved. Its object is made
from it (a new hard link, or a copy where none can be made) and installed first; only then is
the working path replaced, by an atomic rename of a whole link made under a temp name, noted in
the journal beforehand. Killed at any instant, the content is under the working path or in a
whole cache object, and the next data command cleans up (`journal.py`).
"""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlci_tui import config
from mlci_tui.data.cache import SMALL_FILE, DataCache
from mlci_tui.data.hashing import BIG_FILE, StatCache, hash_file
from mlci_tui.data.journal import active, fault, finish
from mlci_tui.data.link import place
from mlci_tui.data.pointer import POINTER_SUFFIX, Pointer, dump_pointer, format_of
from mlci_tui.data.status import cache_link_target
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
    source_version) written into its pointer. Every path's data is cached, then the paths are
    ignored in git, then the pointers are written: a kill never leaves a pointer whose data
    `git add -A` would stage.
    """
    root = Path(root)
    settings = data_settings(root)
    link = link or settings["link"]
    algo = algo or settings["hash"]
    cache = DataCache.for_repo(root, algo)  # before any check: what a killed command left is put back
    jobs = jobs or settings["jobs"] or default_jobs()
    fetched = {repo_relpath(root, k, cwd or root): Path(v) for k, v in (fetched or {}).items()}
    sources = {repo_relpath(root, k, cwd or root): v for k, v in (sources or {}).items()}
    rels = [_checked(root, p, cwd, fetched, cache) for p in paths]
    if len(set(rels)) != len(rels):
        raise InputError("the same path is given twice")
    _refuse_tracked(root, rels)
    for rel in rels:  # a path .gitignore cannot hold is refused before anything is written
        ignore_pattern(rel)
    if state_dir is None:
        state_dir = Repo.find(root).state_dir
    stat_cache = StatCache(state_dir)
    pointers = []
    done = False
    try:
        for rel in rels:
            if rel in fetched:
                _take_fetched(root, rel, fetched[rel], cache)
            src_url, src_version = sources.get(rel, (None, None))
            if (root / rel).is_dir() and not (root / rel).is_symlink():
                pointer = _add_folder(root, rel, cache, stat_cache, algo, link, jobs)
            else:
                pointer = _add_file(root, rel, cache, stat_cache, algo, link)
            if src_url is not None or src_version is not None:
                pointer = Pointer(**{**pointer.__dict__, "source_url": src_url, "source_version": src_version})
            pointers.append(pointer)
        ensure_ignored(root, rels)
        fault("before-pointer")
        for pointer in pointers:
            atomic_write(root / (pointer.path + POINTER_SUFFIX), dump_pointer(pointer).encode())
        done = True
    finally:
        stat_cache.save()
        finish(cache.root.parent, replay=not done)
    return pointers


def _checked(root: Path, user_path: str, cwd: Path | None, fetched: Mapping[str, Path], cache: DataCache) -> str:
    if user_path.endswith(POINTER_SUFFIX):
        raise InputError(f"{user_path}: is a pointer file; add the data it names instead")
    rel = repo_relpath(root, user_path, cwd, allow_link=True)
    path = root / rel
    if path.is_symlink():  # a file checked out in symlink mode: its object; any other link is refused
        _link_object(path, rel, cache)
    elif rel not in fetched and not path.exists():
        raise InputError(f"{user_path}: no such file or folder")
    return rel


def _link_object(path: str | Path, rel: str, cache: DataCache) -> str:
    """The object a symlink into the cache names (symlink mode); a link elsewhere, or to an
    object the cache lacks, is refused."""
    digest = cache_link_target(Path(path), cache, rel)
    if not cache.has(digest):
        raise InputError(f"{rel}: is a symlink to object {digest[:12]}, which is not in the local cache")
    return digest


def _refuse_tracked(root: Path, rels: list[str]) -> None:
    proc = git(["ls-files", "-z", "--", *rels], root)
    tracked = [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
    if tracked:
        first = tracked[0]
        top = next((r for r in rels if first == r or first.startswith(r + "/")), first)
        raise InputError(f"{top}: is tracked by git; untrack it first with `git rm -r --cached {top}`")


def _take_fetched(root: Path, rel: str, tmp: Path, cache: DataCache) -> None:
    """Put fetched content at `rel`: a rename when it is on this filesystem, else a copy under
    a temp name renamed in. An old folder there is set aside (noted in the journal) for the
    instant between two renames."""
    dest = root / rel
    if dest.is_symlink():
        raise InputError(f"{rel}: is a symlink; mlci tracks no data through a link")
    dest.parent.mkdir(parents=True, exist_ok=True)
    journal = active(cache.root.parent)
    if tmp.is_dir():
        staged = journal.temp_for(dest)
        shutil.move(str(tmp), staged)
        if dest.exists():
            old = journal.temp_for(dest)
            journal.note_aside(rel, old)
            os.replace(dest, old)
            os.replace(staged, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staged, dest)
        return
    try:
        os.replace(tmp, dest)
    except OSError:
        staged = journal.temp_for(dest)
        shutil.copyfile(tmp, staged)
        os.replace(staged, dest)


def _hash_and_cache(path: str, rel: str, st: os.stat_result, cache: DataCache, stat_cache: StatCache, algo: str) -> str:
    """The file's hash, a copy of its content stored in the cache (one read for small files;
    copy and hash in parallel for big ones)."""
    digest = stat_cache.get(rel, st, algo)
    if digest is not None and cache.has(digest):
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


def _cache_one(
    root_s: str, rel: str, st: os.stat_result, cache: DataCache, stat_cache: StatCache, algo: str, link: str
) -> tuple[str, int, bool]:
    """A working file's (hash, size), its content in the cache, and whether the working file
    must still be replaced by what `link` makes of the object."""
    path = f"{root_s}/{rel}"
    if stat_mod.S_ISLNK(st.st_mode):  # checked out in symlink mode: already the object
        return _link_object(path, rel, cache), os.stat(path).st_size, link != "symlink"
    if link not in LINKED:
        return _hash_and_cache(path, rel, st, cache, stat_cache, algo), st.st_size, False
    digest = stat_cache.get(rel, st, algo) or hash_file(path, algo, st.st_size)
    stat_cache.put(rel, st, algo, digest)
    if not cache.has(digest):
        cache.link_in(path, digest)  # the working file becomes the object (or, on another device, is copied)
        return digest, st.st_size, link == "symlink"
    obj = os.stat(cache.object_path(digest))
    linked = (obj.st_ino, obj.st_dev) == (st.st_ino, st.st_dev) or obj.st_dev != st.st_dev
    return digest, st.st_size, link == "symlink" or not linked


def _relink(
    root: Path, todo: list[tuple[str, str]], cache: DataCache, stat_cache: StatCache, algo: str, link: str
) -> None:
    """Replace working files (repo-relative path, object) by what `link` makes of their objects,
    each atomically, after the journal notes them (put back if the process dies)."""
    if not todo:
        return
    cache.sync_copied()
    active(cache.root.parent).note_links([(r, d, link) for r, d in todo])
    fault("after-journal")
    for rel, digest in todo:
        dest = root / rel
        place(cache, digest, dest, link)
        if link != "symlink":
            stat_cache.put(rel, os.stat(dest), algo, digest)


def _add_file(root: Path, rel: str, cache: DataCache, stat_cache: StatCache, algo: str, link: str) -> Pointer:
    st = os.lstat(root / rel)
    digest, size, replace = _cache_one(os.fspath(root), rel, st, cache, stat_cache, algo, link)
    if replace:
        _relink(root, [(rel, digest)], cache, stat_cache, algo, link)
    return Pointer(path=rel, algo=algo, hash=digest, size=size, format=format_of(rel))


def _add_folder(
    root: Path, rel: str, cache: DataCache, stat_cache: StatCache, algo: str, link: str, jobs: int
) -> Pointer:
    files = walk_folder(root, rel, allow_links=True)
    base = os.fspath(root / rel)
    for name, st in files:  # links into the cache only, checked before anything changes
        if stat_mod.S_ISLNK(st.st_mode):
            _link_object(f"{base}/{name}", f"{rel}/{name}", cache)
    root_s = os.fspath(root)

    def one(item: tuple[str, os.stat_result]) -> tuple[str, str, int, bool]:
        name, st = item
        return (name, *_cache_one(root_s, f"{rel}/{name}", st, cache, stat_cache, algo, link))

    big_files = sum(st.st_size for _n, st in files) >= SMALL_FILE * max(1, len(files))
    if len(files) > 1 and jobs > 1 and big_files:  # threads pay off for hashing big files only
        with ThreadPoolExecutor(max_workers=min(jobs, 4)) as pool:
            results = list(pool.map(one, files, chunksize=64))
    else:
        results = [one(f) for f in files]
    _relink(root, [(f"{rel}/{n}", d) for n, d, _s, replace in results if replace], cache, stat_cache, algo, link)
    entries = [(n, d, s) for n, d, s, _r in results]
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
