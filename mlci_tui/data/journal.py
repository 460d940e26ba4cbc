"""Crash safety for the data commands: a journal per process, its temp files, and recovery.

A data command that makes temp files (an add, a checkout, a download) first writes a journal,
`.mlci/journal/<id>.json`, and holds a lock (`flock`) on it while it runs. Every temp file it
makes carries its id: `.mlci/tmp/<id>/...`, `.mlci/cache/tmp/<id>.<random>`, or, when
`.mlci/tmp` is on another device than the data, `.NAME.<id>.mlci-tmp` beside the file (a
folder noted in the journal). Before replacing a working file by a link to a cache object,
the journal notes (path, object), and before setting a folder aside it notes where.

The next data command (`DataCache.for_repo`: add, status, checkout, gc, push, fetch...)
lists the journal folder, one `os.listdir` when there is nothing to do. A journal whose lock
is free belongs to a process that died: its noted working paths that are missing are put
back from the cache, its folders set aside are moved back, its temp files are removed, then
the journal. Temp files named by no journal are removed too (their process finished or
died); the temp files of versions before journals (`.mlci/cache/tmp/<32 hex>`, which may hold
the only copy of a file a killed add moved) are left to `mlci data gc`, which puts one whose
content a kept version names back in the cache and removes the others older than an hour.

`MLCI_FAULT=POINT[:N]` (internal, for tests) kills the process with SIGKILL the N-th time
(default 1st) the add path passes POINT; read once, so it costs nothing when unset.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

JOURNAL_DIR = "journal"  # under .mlci/
TMP_DIR = "tmp"  # .mlci/tmp: working-side temp files
TEMP_SUFFIX = ".mlci-tmp"  # beside a working file, when .mlci/tmp is on another device
STALE_SECONDS = 3600  # a half-created journal (`.<id>.new`) older than this is a dead one's

# The points the add path passes, in order (MLCI_FAULT): a temp file in the cache made from the
# working file; the object installed; the links about to be made noted in the journal; a temp
# link beside (or for) a working file; the working file replaced; all data cached, the pointers
# not written yet.
FAULT_POINTS = ("after-cache-tmp", "after-cache", "after-journal", "after-tmp-link", "after-replace", "before-pointer")
_FAULT_POINT, _, _FAULT_NTH = (os.environ.get("MLCI_FAULT") or "").partition(":")
_fault_hits: dict[str, int] = {}
_fault_lock = threading.Lock()


def fault(point: str) -> None:
    """Die here (SIGKILL: no cleanup runs) the N-th time the process passes `point`, when
    MLCI_FAULT=POINT[:N] names it: the tests' kill switch (one comparison when unset)."""
    if point != _FAULT_POINT:
        return
    with _fault_lock:
        _fault_hits[point] = _fault_hits.get(point, 0) + 1
        if _fault_hits[point] >= int(_FAULT_NTH or 1):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def ensure_state_dir(mlci: Path) -> None:
    """`.mlci/` exists and ignores itself (`mlci init` or not)."""
    if not mlci.is_dir():
        mlci.mkdir(parents=True, exist_ok=True)
    ignore = mlci / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# mlci's local data cache and credentials: never committed\n*\n")


class Journal:
    """One process's journal for one repository's `.mlci/`, created on first use."""

    def __init__(self, mlci: Path) -> None:
        self.mlci = mlci
        self.root = mlci.parent
        self.id = os.urandom(8).hex()
        self.path = mlci / JOURNAL_DIR / f"{self.id}.json"
        self.tmp_dir = mlci / TMP_DIR / self.id
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._same_device: dict[str, bool] = {}
        self._tmp_dev: int | None = None
        self._noted_dirs: set[str] = set()
        self._noted = False

    def _open(self) -> int:
        if self._fd is None:
            ensure_state_dir(self.mlci)
            (self.mlci / JOURNAL_DIR).mkdir(exist_ok=True)
            new = self.mlci / JOURNAL_DIR / f".{self.id}.new"  # recovery lists *.json only
            fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            _lock(fd)
            os.write(fd, _line({"op": self.id, "pid": os.getpid(), "started": time.time()}))
            os.replace(new, self.path)
            self._fd = fd
            # only now, with the journal locked in place: a temp folder named by no journal is removed
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self._tmp_dev = os.stat(self.tmp_dir).st_dev
        return self._fd

    def _write(self, entries: list[dict[str, Any]]) -> None:
        if entries:
            with self._lock:
                os.write(self._open(), b"".join(_line(e) for e in entries))
                self._noted = True

    def cache_temp(self, cache_root: str) -> Path:
        """A fresh temp name in the cache's `tmp/` (same device as the objects), owned by this journal."""
        with self._lock:
            self._open()
        folder = f"{cache_root}/tmp"
        os.makedirs(folder, exist_ok=True)
        return Path(f"{folder}/{self.id}.{os.urandom(8).hex()}")

    def temp_for(self, dest: Path) -> Path:
        """A fresh temp name on `dest`'s device, for a whole file or link renamed over `dest`:
        in `.mlci/tmp/<id>/` when that is on the same device, else beside `dest`."""
        with self._lock:
            self._open()
        parent = os.path.dirname(dest)
        same = self._same_device.get(parent)
        if same is None:
            same = self._same_device[parent] = os.stat(parent).st_dev == self._tmp_dev
        if same:
            return self.tmp_dir / os.urandom(8).hex()
        if parent not in self._noted_dirs:
            self._write([{"dir": os.path.relpath(parent, self.root)}])
            self._noted_dirs.add(parent)
        return Path(f"{parent}/.{os.path.basename(dest)}.{self.id}{TEMP_SUFFIX}")

    def note_links(self, items: list[tuple[str, str, str]]) -> None:
        """Before working files are replaced: (repo-relative path, object, link mode) each, so a
        missing one is put back from the cache if this process dies."""
        self._write([{"link": rel, "object": digest, "mode": mode} for rel, digest, mode in items])

    def note_aside(self, rel: str, aside: Path) -> None:
        """Before `rel` is moved to `aside` to make room: put back if this process dies."""
        self._write([{"aside": rel, "at": os.path.relpath(aside, self.root)}])

    def close(self, *, replay: bool = False) -> None:
        """Remove this journal's temp files, then the journal (after putting back what it noted,
        with `replay`: an operation that failed half-way)."""
        if self._fd is None:
            return
        if replay and self._noted:
            _replay(self.root, _read_entries(self.path))
        _remove_temps(self.root, self.id, [e["dir"] for e in _read_entries(self.path) if "dir" in e])
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        self._noted = False
        self._noted_dirs.clear()


_active: dict[str, Journal] = {}
_active_lock = threading.Lock()


def active(mlci: Path) -> Journal:
    """This process's journal for `mlci` (`.mlci/`); removed at exit, or by `finish`."""
    key = os.fspath(mlci)
    journal = _active.get(key)
    if journal is None:
        with _active_lock:  # an add's hashing threads may ask first, together
            journal = _active.get(key)
            if journal is None:
                if not _active:
                    atexit.register(_close_all)
                journal = _active[key] = Journal(mlci)
    return journal


def finish(mlci: Path, *, replay: bool = False) -> None:
    """Close this process's journal for `mlci`, if it has one: its temp files and record go.
    It stays the active one while it closes, so what its replay puts back uses its temp folder."""
    key = os.fspath(mlci)
    journal = _active.get(key)
    if journal is not None:
        try:
            journal.close(replay=replay)
        finally:
            _active.pop(key, None)


def _close_all() -> None:
    for key in list(_active):
        finish(Path(key), replay=True)


# ---------------------------------------------------------------------------- recovery
_checked: set[str] = set()


def recover_once(repo_root: Path) -> None:
    """What dead processes left in this repository, cleaned up once per process: the hot path
    costs one `os.listdir` of `.mlci/journal` (none when the folder is absent)."""
    key = os.fspath(repo_root)
    if key in _checked:
        return
    _checked.add(key)
    try:
        names = os.listdir(f"{key}/.mlci/{JOURNAL_DIR}")
    except OSError:
        return
    if names:
        recover(repo_root)


def recover(repo_root: Path) -> int:
    """Replay every dead journal under `repo_root/.mlci` and remove every temp file no live
    journal owns; returns how many journals were replayed."""
    mlci = repo_root / ".mlci"
    folder = mlci / JOURNAL_DIR
    own = {j.id for j in _active.values()}
    replayed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    for name in names:
        path = folder / name
        if name.endswith(".new"):
            if _age(path) > STALE_SECONDS:
                path.unlink(missing_ok=True)
            continue
        op = name.removesuffix(".json")
        if op in own or not name.endswith(".json"):
            continue
        fd = _try_lock(path)
        if fd is None:
            continue  # alive: its process holds the lock
        try:
            entries = _read_entries(path)
            _replay(repo_root, entries)
            _remove_temps(repo_root, op, [e["dir"] for e in entries if "dir" in e])
            path.unlink(missing_ok=True)
            replayed += 1
        finally:
            os.close(fd)
    _remove_orphan_temps(mlci, _live_ids(folder))
    return replayed


def live_ids(repo_root: Path) -> set[str]:
    """Ids of the journals present (live, or dead and not yet replayed): their temp files stay."""
    return _live_ids(repo_root / ".mlci" / JOURNAL_DIR)


def _live_ids(folder: Path) -> set[str]:
    try:
        return {n.removesuffix(".json") for n in os.listdir(folder) if n.endswith(".json")}
    except OSError:
        return set()


def _replay(root: Path, entries: list[dict[str, Any]]) -> None:
    links = [e for e in entries if "link" in e]
    for e in entries:
        if "aside" in e:
            dest, aside = root / e["aside"], root / e["at"]
            if not os.path.lexists(aside):
                continue
            if not os.path.lexists(dest):
                os.replace(aside, dest)
            else:
                _rm(aside)
    if not links:
        return
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.link import MODES, place

    cache = DataCache(root / ".mlci" / "cache")
    for e in links:
        dest = root / e["link"]
        if e["mode"] in MODES and not os.path.lexists(dest) and cache.has(e["object"]):
            place(cache, e["object"], dest, e["mode"])


def _remove_temps(root: Path, op: str, dirs: list[str]) -> None:
    mlci = root / ".mlci"
    _rm(mlci / TMP_DIR / op)
    cache_tmp = mlci / "cache" / "tmp"
    for name in _listdir(cache_tmp):
        if name.startswith(op + "."):
            _rm(cache_tmp / name)
    suffix = f".{op}{TEMP_SUFFIX}"
    for rel in dict.fromkeys(dirs):
        folder = root / rel
        for name in _listdir(folder):
            if name.endswith(suffix):
                _rm(folder / name)


def _remove_orphan_temps(mlci: Path, live: set[str]) -> None:
    """Temp files whose journal is gone: their process finished or died, so nothing needs them.
    Names without an id (versions before journals) are left for gc (`salvage_legacy_temps`)."""
    for name in _listdir(mlci / TMP_DIR):
        if name not in live:
            _rm(mlci / TMP_DIR / name)
    cache_tmp = mlci / "cache" / "tmp"
    for name in _listdir(cache_tmp):
        op, dot, _rest = name.partition(".")
        if dot and op not in live:
            _rm(cache_tmp / name)


def remove_stray_temps(root: Path, folders: list[str], trees: list[str]) -> int:
    """`.*.mlci-tmp` files no present journal owns, in these repo-relative `folders` and in
    `trees` (with their subfolders): left beside working files by a killed command, or by
    versions before journals. Returns how many were removed."""
    live = live_ids(root)
    removed = 0
    places = [root / rel for rel in folders]
    for rel in trees:
        places += [Path(folder) for folder, _dirs, _files in os.walk(root / rel)]
    for folder in places:
        for name in _listdir(folder):
            owner = name[: -len(TEMP_SUFFIX)].rpartition(".")[2]
            if name.startswith(".") and name.endswith(TEMP_SUFFIX) and owner not in live:
                _rm(folder / name)
                removed += 1
    return removed


# ---------------------------------------------------------------------------- helpers
def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


def _read_entries(path: Path) -> list[dict[str, Any]]:
    """The journal's entries; a line cut short by a kill is skipped."""
    out: list[dict[str, Any]] = []
    try:
        raw = path.read_bytes()
    except OSError:
        return out
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and _safe(entry):
            out.append(entry)
    return out


def _safe(entry: dict[str, Any]) -> bool:
    """Paths in a journal stay inside the repository (the journal is local, but never trusted blindly)."""
    for key in ("link", "aside", "at", "dir"):
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or os.path.isabs(value) or ".." in Path(value).parts:
            return False
    return "link" not in entry or isinstance(entry.get("object"), str) and isinstance(entry.get("mode"), str)


def _lock(fd: int) -> None:
    try:
        import fcntl  # lazy: POSIX only
    except ImportError:
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the journal's lock, or None while its process lives."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        import fcntl  # lazy: POSIX only
    except ImportError:  # no locks: a journal older than a day is taken as dead
        if _age(path) > 24 * STALE_SECONDS:
            return fd
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    try:  # the owner may have finished (and removed it) between our open and our lock
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def _age(path: Path) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _rm(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
