"""`mlci data status`: each dataset in the working tree against its pointer, and whether its
content is in the local cache. Unchanged files are never re-hashed (the stat cache)."""

from __future__ import annotations

import os
import stat as stat_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui.data.cache import DataCache
from mlci_tui.data.dvc import dvc_manifest, read_dvc_pointers
from mlci_tui.data.hashing import StatCache, signature
from mlci_tui.data.pointer import POINTER_SUFFIX, Pointer
from mlci_tui.data.workspace import list_pointer_files, read_pointer_file, walk_folder
from mlci_tui.errors import InputError

Manifest = list[tuple[str, str, int]]


@dataclass
class DatasetStatus:
    path: str
    pointer_file: str
    origin: str  # mlci, dvc, dvc.lock
    hash: str
    status: str  # unchanged, modified, missing (not in the working tree), unknown
    in_cache: bool | None  # content (every file of a folder) in the local cache; None: not known
    changes: list[tuple[str, str]] = field(default_factory=list)  # folder: (relpath, added|removed|modified)

    def row(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "pointer": self.pointer_file,
            "origin": self.origin,
            "hash": self.hash,
            "status": self.status,
            "in_cache": self.in_cache,
            "changes": [{"path": p, "change": c} for p, c in self.changes],
        }


def workspace_pointers(root: Path) -> list[tuple[str, Pointer]]:
    """(pointer file, pointer) for every dataset the working tree names; a bad pointer raises."""
    found: list[tuple[str, Pointer]] = []
    for rel in list_pointer_files(root):
        if not (root / rel).exists() and not (root / rel).is_symlink():
            continue  # deleted in the working tree, still in the index
        if rel.endswith(POINTER_SUFFIX):
            found.append((rel, read_pointer_file(root, rel)))
        else:
            if (root / rel).is_symlink():
                raise InputError(f"{rel}: is a symlink; pointer files must be regular files")
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
            found.extend((rel, p) for p in read_dvc_pointers(text, rel))
    return found


def select(pointers: list[tuple[str, Pointer]], targets: list[str] | None) -> list[tuple[str, Pointer]]:
    """Only the datasets named by `targets` (dataset paths, pointer files or folders holding them)."""
    if not targets:
        return pointers
    out: list[tuple[str, Pointer]] = []
    for t in targets:
        t = t.rstrip("/")
        hits = [(f, p) for f, p in pointers if t in (p.path, f) or p.path.startswith(t + "/") or (t == "." or t == "")]
        if not hits:
            raise InputError(f"{t}: no dataset pointer names this path")
        out.extend(h for h in hits if h not in out)
    return out


def file_hash(root: Path, rel: str, algo: str, stat_cache: StatCache, cache: DataCache) -> str | None:
    """The working file's hash (None when absent); a symlink into the cache is its object."""
    path = root / rel
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if os.path.islink(path):
        return cache_link_target(path, cache, rel)
    return stat_cache.hash(rel, path, algo, st)


def cache_link_target(path: Path, cache: DataCache, rel: str) -> str:
    target = Path(os.path.realpath(path))
    try:
        inner = target.relative_to(Path(os.path.realpath(cache.root)))
    except ValueError:
        raise InputError(f"{rel}: is a symlink out of the data cache; mlci tracks no data through a link") from None
    return "".join(inner.parts)


def folder_hashes(
    root: Path,
    rel: str,
    algo: str,
    stat_cache: StatCache,
    cache: DataCache,
    files: list[tuple[str, os.stat_result]] | None = None,
) -> dict[str, str] | None:
    base = root / rel
    if not base.is_dir():
        return None
    out: dict[str, str] = {}
    base_s = os.fspath(base)
    for name, st in files if files is not None else walk_folder(root, rel, allow_links=True):
        full = f"{rel}/{name}"
        if stat_mod.S_ISLNK(st.st_mode):
            out[name] = cache_link_target(Path(f"{base_s}/{name}"), cache, full)
        else:
            out[name] = stat_cache.get(full, st, algo) or stat_cache.hash(full, f"{base_s}/{name}", algo, st)
    return out


def manifest_for(root: Path, pointer: Pointer, cache: DataCache) -> Manifest | None:
    if pointer.origin != "mlci":
        return dvc_manifest(root, pointer.hash)
    if not cache.has(pointer.hash):
        return None
    return cache.manifest(pointer.hash)


def dataset_status(root: Path, pointer_file: str, p: Pointer, cache: DataCache, stat_cache: StatCache) -> DatasetStatus:
    out = DatasetStatus(p.path, pointer_file, p.origin, p.hash, "unchanged", None)
    if not p.is_dir:
        current = file_hash(root, p.path, p.algo, stat_cache, cache)
        if p.origin == "mlci":
            out.in_cache = cache.has(p.hash)
        if current is None:
            out.status = "missing"
        elif current != p.hash:
            out.status = "modified"
        return out
    if (root / p.path).exists() and not (root / p.path).is_dir():
        out.status = "modified"
        return out
    files = walk_folder(root, p.path, allow_links=True, sort=False) if (root / p.path).is_dir() else None
    sig = signature(files) if files is not None else None
    if sig is not None and stat_cache.folder_matches(p.path, p.algo, p.hash, sig):
        if p.origin == "mlci":
            out.in_cache = cache.folder_complete(p.hash)
        return out  # unchanged since it last matched: no per-file lookups, no manifest read
    present = folder_hashes(root, p.path, p.algo, stat_cache, cache, files)
    manifest = manifest_for(root, p, cache)
    if manifest is None:
        out.in_cache = False if p.origin == "mlci" else None
        out.status = "missing" if present is None else "unknown"
        return out
    if p.origin == "mlci":
        out.in_cache = cache.folder_complete(p.hash)
    if present is None:
        out.status = "missing"
        return out
    wanted = {n: h for n, h, _s in manifest}
    if wanted == present:
        if sig is not None and not any(stat_mod.S_ISLNK(st.st_mode) for _n, st in files or []):
            stat_cache.folder_matched(p.path, p.algo, p.hash, sig)
        return out
    for name in sorted(set(wanted) | set(present)):
        if name not in present:
            out.changes.append((name, "removed"))
        elif name not in wanted:
            out.changes.append((name, "added"))
        elif present[name] != wanted[name]:
            out.changes.append((name, "modified"))
    if out.changes:
        out.status = "modified"
    return out


def status(root: Path, state_dir: Path, targets: list[str] | None = None) -> list[DatasetStatus]:
    pointers = select(workspace_pointers(root), targets)
    cache = DataCache.for_repo(root)
    stat_cache = StatCache(state_dir)
    try:
        return [dataset_status(root, f, p, cache, stat_cache) for f, p in pointers]
    finally:
        stat_cache.save()
