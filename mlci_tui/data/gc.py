"""`mlci data gc`: delete cached objects no version worth keeping names.

Kept: what the working tree, the index, and the tip of every local branch and tag name
(with `all_commits`, every commit reachable from them), plus the files those folder
manifests list. Pointers are read from git objects, not checked out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlci_tui.data.cache import DataCache
from mlci_tui.data.pointer import Pointer
from mlci_tui.data.status import workspace_pointers
from mlci_tui.data.tree import iter_pointers
from mlci_tui.gitio import Repo


@dataclass
class GcResult:
    kept: int
    removed: int
    freed: int


def referenced(repo: Repo, *, all_commits: bool = False) -> list[Pointer]:
    pointers = [p for _f, p in workspace_pointers(repo.root)]
    pointers += iter_pointers(repo, ":", strict=False)
    if all_commits:
        revs = repo.text("rev-list", "--all", "--exclude=refs/mlci*", "--branches", "--tags").split()
    else:
        revs = repo.text("for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags").split()
    for rev in dict.fromkeys(revs):
        pointers += iter_pointers(repo, rev, strict=False)
    return [p for p in pointers if p.origin == "mlci"]


def gc(repo: Repo, *, all_commits: bool = False, dry_run: bool = False) -> GcResult:
    cache = DataCache.for_repo(repo.root)
    keep: set[str] = set()
    for p in referenced(repo, all_commits=all_commits):
        keep.add(p.hash)
        if p.is_dir and cache.has(p.hash):
            keep.update(h for _n, h, _s in cache.manifest(p.hash))
    removed = freed = 0
    if not dry_run:
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


def cache_of(root: Path) -> DataCache:
    return DataCache.for_repo(root)
