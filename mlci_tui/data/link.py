"""Placing a cached object in the working tree: reflink, copy, hardlink or symlink, atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlci_tui.data.cache import DataCache, reflink
from mlci_tui.data.journal import active, fault

MODES = ("auto", "reflink", "copy", "hardlink", "symlink")
_real_roots: dict[str, str] = {}  # cache root -> its real path (symlink targets are absolute)


def place(cache: DataCache, digest: str, dest: Path, mode: str) -> None:
    """Make `dest` hold object `digest`: a whole file or link made under a temp name (the
    process's journal's: `.mlci/tmp/` on the same device, else beside `dest`), then renamed over
    `dest`, so `dest` holds the old content or the new, never nothing."""
    src = cache.object_path(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = active(cache.root.parent).temp_for(dest)
    try:
        if mode == "hardlink":
            try:
                os.link(src, tmp)
            except OSError:
                _copy(src, tmp, try_reflink=True)
        elif mode == "symlink":
            os.symlink(_real_object_path(cache, digest), tmp)
        else:
            _copy(src, tmp, try_reflink=mode in ("auto", "reflink"))
        fault("after-tmp-link")
        os.replace(tmp, dest)
        fault("after-replace")
        if mode == "hardlink":  # `dest` was already this object: rename() did nothing, tmp is still there
            _unlink(tmp)
    except BaseException:
        _unlink(tmp)
        raise


def _real_object_path(cache: DataCache, digest: str) -> str:
    real = _real_roots.get(cache._root_s)
    if real is None:
        real = _real_roots[cache._root_s] = os.path.realpath(cache.root)
    return f"{real}/{digest[:2]}/{digest[2:]}"


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _copy(src: Path, tmp: Path, *, try_reflink: bool) -> None:
    if not (try_reflink and reflink(src, tmp)):
        shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
