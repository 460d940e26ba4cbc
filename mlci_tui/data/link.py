"""Placing a cached object in the working tree: reflink, copy, hardlink or symlink, atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlci_tui.data.cache import DataCache, reflink

MODES = ("auto", "reflink", "copy", "hardlink", "symlink")


def place(cache: DataCache, digest: str, dest: Path, mode: str) -> None:
    """Make `dest` hold object `digest`: written beside it, then renamed over it (never half-written)."""
    src = cache.object_path(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.mlci-tmp")
    try:
        if mode == "hardlink":
            try:
                os.link(src, tmp)
            except OSError:
                _copy(src, tmp, try_reflink=True)
        elif mode == "symlink":
            os.symlink(src.resolve(), tmp)
        else:
            _copy(src, tmp, try_reflink=mode in ("auto", "reflink"))
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _copy(src: Path, tmp: Path, *, try_reflink: bool) -> None:
    if not (try_reflink and reflink(src, tmp)):
        shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
