"""`mlci data checkout`: make the working tree hold the versions the pointers name.

An unsaved local change (content that is in neither the pointer nor the cache) is never
overwritten or deleted without `force`: it is kept and reported. Every file is written
beside its target and renamed over it, so an interrupted checkout leaves whole files only.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlci_tui.data.add import data_settings
from mlci_tui.data.cache import DataCache
from mlci_tui.data.hashing import StatCache
from mlci_tui.data.link import place
from mlci_tui.data.pointer import Pointer
from mlci_tui.data.status import file_hash, folder_hashes, select, workspace_pointers
from mlci_tui.errors import InputError


def check_parent_inside(root: Path, rel: str) -> None:
    """A dataset's folder must not lead out of the repository through a symlinked directory."""
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(os.path.join(real_root, rel)))
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise InputError(f"{rel}: its folder leads outside the repository (a symlinked directory); nothing written")


@dataclass
class CheckoutResult:
    written: list[str] = field(default_factory=list)  # files (re)written
    removed: list[str] = field(default_factory=list)  # saved files no longer in a folder's version
    kept: list[str] = field(default_factory=list)  # unsaved local changes left alone (no --force)
    not_cached: list[str] = field(default_factory=list)  # datasets whose content is not in the cache


def _place(cache: DataCache, digest: str, root: Path, rel: str, link: str, stat_cache: StatCache, algo: str) -> None:
    dest = root / rel
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    place(cache, digest, dest, link)
    if link != "symlink":
        stat_cache.put(rel, os.stat(dest), algo, digest)


def checkout_pointer(
    root: Path,
    p: Pointer,
    cache: DataCache,
    stat_cache: StatCache,
    link: str,
    *,
    force: bool,
    result: CheckoutResult,
) -> None:
    check_parent_inside(root, p.path)
    if not p.is_dir:
        current = file_hash(root, p.path, p.algo, stat_cache, cache)
        if current == p.hash:
            return
        if not cache.has(p.hash):
            result.not_cached.append(p.path)
            return
        unsaved = (root / p.path).is_dir() or (current is not None and not cache.has(current))
        if unsaved and not force:
            result.kept.append(p.path)
            return
        _place(cache, p.hash, root, p.path, link, stat_cache, p.algo)
        result.written.append(p.path)
        return
    if not cache.has(p.hash):
        result.not_cached.append(p.path)
        return
    manifest = cache.manifest(p.hash)
    if not cache.has_all([h for _n, h, _s in manifest]):
        result.not_cached.append(p.path)
        return
    base = root / p.path
    if base.exists() and not base.is_dir():
        if not force and not cache.has(file_hash(root, p.path, p.algo, stat_cache, cache) or ""):
            result.kept.append(p.path)
            return
        base.unlink()
    present = folder_hashes(root, p.path, p.algo, stat_cache, cache) or {}
    wanted = {n: h for n, h, _s in manifest}
    for name, digest in wanted.items():
        have = present.get(name)
        if have == digest:
            continue
        rel = f"{p.path}/{name}"
        if have is not None and not force and not cache.has(have):
            result.kept.append(rel)
            continue
        _place(cache, digest, root, rel, link, stat_cache, p.algo)
        result.written.append(rel)
    for name, have in present.items():
        if name in wanted:
            continue
        rel = f"{p.path}/{name}"
        if not force and not cache.has(have):
            result.kept.append(rel)
            continue
        (root / rel).unlink()
        result.removed.append(rel)
    _prune_empty_dirs(base)


def _prune_empty_dirs(base: Path) -> None:
    for folder, _dirs, _files in sorted(os.walk(base), key=lambda x: -len(x[0])):
        if Path(folder) != base and not os.listdir(folder):
            os.rmdir(folder)


def checkout(
    root: Path,
    state_dir: Path,
    targets: list[str] | None = None,
    *,
    force: bool = False,
    link: str | None = None,
) -> CheckoutResult:
    link = link or data_settings(root)["link"]
    pointers = [(f, p) for f, p in select(workspace_pointers(root), targets) if p.origin == "mlci"]
    cache = DataCache.for_repo(root)
    stat_cache = StatCache(state_dir)
    result = CheckoutResult()
    try:
        for _f, p in pointers:
            checkout_pointer(root, p, cache, stat_cache, link, force=force, result=result)
    finally:
        stat_cache.save()
    return result
