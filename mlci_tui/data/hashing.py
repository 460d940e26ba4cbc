"""Content hashes (BLAKE3 by default, md5 for DVC) and the stat cache that avoids re-hashing.

The stat cache (`.git/mlci/data-stat.json`) maps a repo-relative path to the (inode,
mtime_ns, size, algo) it had when last hashed and the hash it got: a file whose stat is
unchanged is never read again. It is a cache: lost or corrupt, it is rebuilt by hashing.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from pathlib import Path
from typing import Any

from mlci_tui.data.workspace import atomic_write, read_small

BIG_FILE = 16 << 20  # above this, BLAKE3 hashes with all cores (mmap)
STAT_CACHE = "data-stat.json"
DIR_SIGS = "data-dirsig.json"


def hash_bytes(data: bytes, algo: str) -> str:
    if algo == "md5":
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    from blake3 import blake3

    return blake3(data).hexdigest()


def hash_file(path: str | os.PathLike[str], algo: str, size: int | None = None) -> str:
    """Hash a file's content; big files use BLAKE3's multithreaded mmap hashing."""
    if size is None:
        size = os.path.getsize(path)
    if algo == "md5":
        with open(path, "rb") as f:
            return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
    from blake3 import blake3

    if size >= BIG_FILE:
        h = blake3(max_threads=blake3.AUTO)
        h.update_mmap(os.fspath(path))
        return h.hexdigest()
    return blake3(read_small(path)).hexdigest()


class StatCache:
    """(inode, mtime_ns, size, algo) -> hash, per repo-relative path."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STAT_CACHE
        self._entries: dict[str, list[object]] | None = None  # read on first use
        self.dirty = False
        self.dir_path = state_dir / DIR_SIGS
        self._dirs: dict[str, list[str]] | None = None
        self._dirs_dirty = False

    @property
    def entries(self) -> dict[str, list[object]]:
        if self._entries is None:
            self._entries = _load_json(self.path)
        return self._entries

    # A folder's signature: a hash of every file's (name, inode, mtime, size). When it and the
    # pointer's hash are what they were when the folder last matched its pointer, the folder is
    # unchanged without a look at any per-file entry or the manifest.
    def folder_matches(self, rel: str, algo: str, digest: str, signature: str) -> bool:
        if self._dirs is None:
            self._dirs = _load_json(self.dir_path)
        return self._dirs.get(rel) == [algo, digest, signature]

    def folder_matched(self, rel: str, algo: str, digest: str, signature: str) -> None:
        if self._dirs is None:
            self._dirs = _load_json(self.dir_path)
        if self._dirs.get(rel) != [algo, digest, signature]:
            self._dirs[rel] = [algo, digest, signature]
            self._dirs_dirty = True

    def get(self, rel: str, st: os.stat_result, algo: str) -> str | None:
        entry = self.entries.get(rel)
        if (
            entry is not None
            and len(entry) == 5
            and entry[0] == st.st_ino
            and entry[1] == st.st_mtime_ns
            and entry[2] == st.st_size
            and entry[3] == algo
        ):
            return str(entry[4])
        return None

    def put(self, rel: str, st: os.stat_result, algo: str, digest: str) -> None:
        new = [st.st_ino, st.st_mtime_ns, st.st_size, algo, digest]
        if self.entries.get(rel) != new:
            self.entries[rel] = new
            self.dirty = True

    def hash(self, rel: str, path: str | os.PathLike[str], algo: str, st: os.stat_result | None = None) -> str:
        st = st or os.stat(path)
        digest = self.get(rel, st, algo)
        if digest is None:
            digest = hash_file(path, algo, st.st_size)
            self.put(rel, st, algo, digest)
        return digest

    def save(self) -> None:
        if self.dirty:
            self.dirty = not _save_json(self.path, self.entries)
        if self._dirs_dirty and self._dirs is not None:
            self._dirs_dirty = not _save_json(self.dir_path, self._dirs)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _save_json(path: Path, doc: dict[str, Any]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(doc, separators=(",", ":")).encode())
        return True
    except OSError:
        return False  # a cache: failing to save costs a re-hash later, nothing else


def signature(entries: list[tuple[str, os.stat_result]]) -> str:
    """What a folder's files look like on disk (names, inodes, mtimes, sizes), as one short hash."""
    h = hashlib.blake2b(digest_size=16)
    h.update("\0".join([n for n, _st in entries]).encode("utf-8", "surrogateescape"))
    numbers = array("q", [v for _n, st in entries for v in (st.st_ino, st.st_mtime_ns, st.st_size)])
    h.update(numbers.tobytes())
    return h.hexdigest()
