"""The content-addressed cache `.mlci/cache/`: one read-only file per object, named by hash.

Objects are files' contents, or a folder's manifest (canonical JSON listing relpath, hash,
size per file), whose hash is the folder's hash. Writes go to a temp file in the cache and
are renamed into place, so an interrupted add never leaves a half-written object. Temp files
belong to the process's journal (`journal.py`), so the next command removes what a killed
one left.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mlci_tui.data.hashing import hash_bytes, hash_file
from mlci_tui.data.journal import active, ensure_state_dir, fault, recover_once
from mlci_tui.data.workspace import read_small
from mlci_tui.errors import InputError

CACHE_DIR = ".mlci/cache"
SMALL_FILE = 1 << 20
FICLONE = 0x40049409
Manifest = list[tuple[str, str, int]]


def algo_of(digest: str) -> str:
    return "md5" if len(digest) == 32 else "blake3"


def reflink(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> bool:
    """Copy-on-write clone (btrfs, xfs); False where the filesystem cannot."""
    try:
        import fcntl  # lazy: POSIX only; without it (ImportError) there is no reflink, as on OSError

        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        return True
    except (OSError, ImportError):
        try:
            os.unlink(dst)
        except OSError:
            pass
        return False


class DataCache:
    """Objects under `root` (normally `<repo>/.mlci/cache`): `root/ab/cdef...`.

    Hot paths (thousands of small files) use plain strings and raw file descriptors: pathlib
    and buffered I/O cost more than the system calls themselves here."""

    def __init__(self, root: Path, algo: str = "blake3") -> None:
        self.root = Path(root)
        self.algo = algo
        self._root_s = os.fspath(self.root)
        self._reflink_ok: bool | None = None
        self._dirs: set[str] = set()
        self._known: set[str] | None = None
        self._copied: set[str] = set()  # objects copied by `link_in`, their folders not yet synced

    @classmethod
    def for_repo(cls, repo_root: Path, algo: str = "blake3") -> DataCache:
        """The repository's cache, after what a killed data command left there is cleaned up
        (once per process; one `os.listdir` when there is nothing to do)."""
        recover_once(Path(repo_root))
        return cls(repo_root / CACHE_DIR, algo)

    def object_path(self, digest: str) -> Path:
        return Path(f"{self._root_s}/{digest[:2]}/{digest[2:]}")

    def has(self, digest: str) -> bool:
        """A complete object: present and readable-marked (an object still being written, or
        left by an interrupted write, has mode 0200 and counts as absent)."""
        if self._known is not None and digest in self._known:
            return True
        try:
            return os.stat(f"{self._root_s}/{digest[:2]}/{digest[2:]}").st_mode & 0o444 == 0o444
        except OSError:
            return False

    def has_all(self, digests: list[str]) -> bool:
        """Whether every object is cached; many at once are answered from one listing."""
        if len(digests) > 256 and self._known is None:
            self._known = set(self.iter_objects())
        return all(self.has(d) for d in digests)

    def folder_complete(self, digest: str) -> bool:
        """Whether a folder's manifest and every file it lists are cached. A marker file
        remembers a positive answer (gc drops the markers), so status need not list the cache."""
        marker = f"{self._root_s}/complete/{digest}"
        if os.path.exists(marker):
            return True
        if not self.has(digest) or not self.has_all([h for _n, h, _s in self.manifest(digest)]):
            return False
        os.makedirs(f"{self._root_s}/complete", exist_ok=True)
        open(marker, "wb").close()
        return True

    def forget_complete(self) -> None:
        shutil.rmtree(f"{self._root_s}/complete", ignore_errors=True)

    def _ensure_root(self) -> None:
        if not self.root.is_dir():
            ensure_state_dir(self.root.parent)
            self.root.mkdir(parents=True, exist_ok=True)

    def _prefix_dir(self, digest: str) -> str:
        folder = f"{self._root_s}/{digest[:2]}"
        if folder not in self._dirs:
            self._ensure_root()
            os.makedirs(folder, exist_ok=True)
            self._dirs.add(folder)
        return folder

    def _tmp(self) -> Path:
        """A fresh temp name in `tmp/`, owned by this process's journal."""
        self._ensure_root()
        return active(self.root.parent).cache_temp(self._root_s)

    def _install(self, tmp: Path, digest: str) -> Path:
        """Rename a finished temp file into place, read-only. An existing object wins."""
        os.chmod(tmp, 0o444)
        dest = self.object_path(digest)
        if self.has(digest):
            tmp.unlink()
            return dest
        self._prefix_dir(digest)
        os.replace(tmp, dest)
        return dest

    def add_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store `data` under its final name, created write-only (mode 0200) and marked
        read-only (0444) only once whole: a half-written object never counts as present, and
        small files cost one directory entry each (no temp file and rename)."""
        digest = digest or hash_bytes(data, self.algo)
        if self.has(digest):
            return digest
        final = f"{self._prefix_dir(digest)}/{digest[2:]}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(final, flags, 0o200)
        except FileExistsError:  # left by an interrupted write (has() said it is incomplete)
            os.unlink(final)
            fd = os.open(final, flags, 0o200)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o444)
        except BaseException:
            os.close(fd)
            os.unlink(final)
            raise
        os.close(fd)
        return digest

    def add_file(
        self, path: str | os.PathLike[str], digest: str | None = None, *, size: int | None = None
    ) -> tuple[str, int]:
        """Put a copy of a file's content in the cache: (hash, size)."""
        if size is None:
            size = os.stat(path).st_size
        if digest is None and size < SMALL_FILE:
            data = read_small(path)
            return self.add_bytes(data), len(data)
        path = Path(path)
        digest = digest or hash_file(path, self.algo, size)
        if self.has(digest):
            return digest, size
        tmp = self._tmp()
        if not self._try_reflink(path, tmp):
            shutil.copyfile(path, tmp)
        self._install(tmp, digest)
        return digest, size

    def link_in(self, path: str, digest: str) -> bool:
        """Make the working file `path` (hashed as `digest`) the object without moving or copying
        it: a new hard link in `tmp/`, renamed into place, so the working path is never gone and
        the file becomes read-only (hardlink mode's promise). Where no hard link can be made
        (another device), a copy, on disk (fsync) before it counts. True when the working file is
        the object now."""
        tmp = self._tmp()
        try:
            os.link(path, tmp)
            linked = True
        except OSError:
            if not self._try_reflink(path, tmp):
                shutil.copyfile(path, tmp)
            _fsync(tmp)
            linked = False
        fault("after-cache-tmp")
        try:
            self._install(tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fault("after-cache")
        if not linked:
            self._copied.add(digest)
        return linked

    def sync_copied(self) -> None:
        """Make the folders of the objects `link_in` copied durable (fsync) before working files
        are replaced by links to them: the cache is then on another filesystem, whose writes
        are not ordered with the working tree's, so after a power cut a link could otherwise
        point at nothing. (A hard-linked object shares the working file's blocks, and one
        filesystem's journal orders its name before the rename that follows.)"""
        for folder in sorted({f"{self._root_s}/{d[:2]}" for d in self._copied}):
            _fsync(folder)
        self._copied.clear()

    def _try_reflink(self, src: str | os.PathLike[str], dst: Path) -> bool:
        if self._reflink_ok is False:
            return False
        ok = reflink(src, dst)
        self._reflink_ok = ok
        return ok

    # ------------------------------------------------------------------ folder manifests
    def add_manifest(self, entries: Manifest) -> str:
        return self.add_bytes(manifest_bytes(entries))

    def manifest(self, digest: str) -> Manifest:
        path = self.object_path(digest)
        try:
            return parse_manifest(path.read_bytes(), str(path))
        except FileNotFoundError:
            raise InputError(
                f"folder manifest {digest[:12]} is not in the local cache (run `mlci data fetch`)"
            ) from None

    def iter_objects(self) -> list[str]:
        out: list[str] = []
        if not self.root.is_dir():
            return out
        for sub in os.scandir(self.root):
            if len(sub.name) == 2 and sub.is_dir():
                out.extend(sub.name + e.name for e in os.scandir(sub.path) if "." not in e.name)
        return out


def _fsync(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def manifest_bytes(entries: Manifest) -> bytes:
    rows = sorted(entries)
    return (json.dumps({"files": [list(r) for r in rows]}, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


def parse_manifest(raw: bytes, where: str) -> Manifest:
    try:
        doc = json.loads(raw)
        rows = [(str(r[0]), str(r[1]), int(r[2])) for r in doc["files"]]
    except (ValueError, KeyError, TypeError, IndexError):
        raise InputError(f"{where}: not a folder manifest") from None
    for rel, _h, _s in rows:
        if rel.startswith("/") or ".." in rel.split("/"):
            raise InputError(f"{where}: manifest entry {rel!r} leaves its folder")
    return rows
