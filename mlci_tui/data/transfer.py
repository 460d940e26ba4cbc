"""`mlci data push/fetch/pull`: move only the objects the other side lacks, through fsspec.

The remote has the cache's layout (`<base>/ab/cdef...`). What the remote holds is listed
once; downloads are verified against their hash before they enter the cache, and uploads
to a local folder are renamed into place, so neither side ever holds a half-written object.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlci_tui.data.add import parallel_jobs
from mlci_tui.data.cache import DataCache, algo_of, parse_manifest
from mlci_tui.data.hashing import hash_file
from mlci_tui.data.pointer import Pointer
from mlci_tui.data.remotes import open_remote
from mlci_tui.data.status import select, workspace_pointers
from mlci_tui.errors import CheckFailed, MlciError


@dataclass
class TransferResult:
    transferred: int = 0
    bytes: int = 0
    present: int = 0  # already on the other side
    missing: list[str] = field(default_factory=list)  # objects neither side has (hash prefixes with dataset)
    failed: list[str] = field(default_factory=list)


class Progress:
    """Objects and bytes moved, with the rate, as Rich's progress bar on stderr; only on a
    terminal (`progress.py`). Bytes advance as fsspec reports them (`callback`), so one large
    upload moves too; an object's rest is counted when it is done."""

    def __init__(self, verb: str, total: int, total_bytes: int | None = None) -> None:
        from mlci_tui.progress import transfer_bar

        self.lock = threading.Lock()
        self.bar = transfer_bar(verb, total, total_bytes) if total > 0 else None

    def callback(self) -> Any:
        """An fsspec callback for one object's transfer (None off a terminal)."""
        if self.bar is None:
            return None
        from fsspec.callbacks import Callback

        bar, lock = self.bar, self.lock

        class _Bytes(Callback):
            sent = 0

            def relative_update(self, inc: int = 1) -> None:
                with lock:
                    self.sent += inc
                    bar.advance_bytes(inc)

        return _Bytes()

    def step(self, size: int, callback: Any = None) -> None:
        if self.bar is None:
            return
        with self.lock:
            self.bar.advance_bytes(max(0, size - (getattr(callback, "sent", 0) or 0)))
            self.bar.advance_object()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def remote_path(base: str, digest: str) -> str:
    return f"{base}/{digest[:2]}/{digest[2:]}"


def remote_objects(fs: Any, base: str) -> set[str]:
    """Every object the remote holds (one listing)."""
    return set(remote_object_infos(fs, base))


def remote_object_infos(fs: Any, base: str) -> dict[str, dict[str, Any]]:
    """Every object the remote holds, as `remote_objects` names them, with its listing entry
    (size, modification time): still one listing. gc needs the sizes and ages. A local folder
    is read with scandir (10,000 objects: 0.2 s here, against 0.5 s through fsspec's find)."""
    if _is_local(fs):
        found: dict[str, dict[str, Any]] = {}
        try:
            prefixes = [e for e in os.scandir(base) if len(e.name) == 2 and e.is_dir()]
        except OSError:
            return {}
        for prefix in prefixes:
            for e in os.scandir(prefix.path):
                if "." not in e.name and e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    found[prefix.name + e.name] = {"size": st.st_size, "mtime": st.st_mtime, "type": "file"}
        return found
    try:
        infos = fs.find(base, detail=True)
    except (FileNotFoundError, OSError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for path, info in infos.items():
        parts = str(path).rstrip("/").rsplit("/", 2)
        if len(parts) == 3 and len(parts[1]) == 2 and "." not in parts[2] and info.get("type", "file") == "file":
            out[parts[1] + parts[2]] = info
    return out


def _protocol(fs: Any) -> str:
    return str(fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0])


def _is_local(fs: Any) -> bool:
    return _protocol(fs) in ("file", "local")


def _listable(fs: Any) -> bool:
    """http(s) remotes cannot be listed: each object is requested, a 404 means missing."""
    return _protocol(fs) not in ("http", "https")


def _run_parallel(items: list[Any], work: Callable[[Any], None], jobs: int) -> list[str]:
    errors: list[str] = []

    def guarded(item: Any) -> None:
        try:
            work(item)
        except MlciError as exc:
            errors.append(str(exc))
        except Exception as exc:  # a network or permission error on one object: report it, go on
            errors.append(f"{str(item)[:12]}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    if jobs <= 1 or len(items) <= 1:
        for item in items:
            guarded(item)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(guarded, items))
    return errors


def local_objects(cache: DataCache, pointers: Iterable[Pointer]) -> tuple[dict[str, int], list[str]]:
    """(hash -> size) of every object the pointers need, from the local cache; and what is absent."""
    need: dict[str, int] = {}
    absent: list[str] = []
    for p in pointers:
        if not cache.has(p.hash):
            absent.append(f"{p.path} ({p.hash[:12]})")
            continue
        if p.is_dir:
            need[p.hash] = os.path.getsize(cache.object_path(p.hash))
            for name, digest, size in cache.manifest(p.hash):
                if cache.has(digest):
                    need[digest] = size
                else:
                    absent.append(f"{p.path}/{name} ({digest[:12]})")
        else:
            need[p.hash] = p.size
    return need, absent


def push(cache: DataCache, pointers: list[Pointer], fs: Any, base: str, jobs: int) -> TransferResult:
    if not _listable(fs):
        raise MlciError(f"{_protocol(fs)} remotes are read-only: fetch and pull from them, push elsewhere")
    need, absent = local_objects(cache, pointers)
    result = TransferResult(missing=absent)
    there = remote_objects(fs, base)
    todo = [(d, s) for d, s in need.items() if d not in there]
    result.present = len(need) - len(todo)
    progress = Progress("push", len(todo), sum(size for _, size in todo))
    local = _is_local(fs)
    dirs_made: set[str] = set()
    lock = threading.Lock()

    def upload(item: tuple[str, int]) -> None:
        digest, size = item
        target = remote_path(base, digest)
        parent = target.rsplit("/", 1)[0]
        if local:
            with lock:
                if parent not in dirs_made:
                    fs.makedirs(parent, exist_ok=True)
                    dirs_made.add(parent)
            tmp = f"{target}.tmp-{os.urandom(4).hex()}"
            fs.put_file(str(cache.object_path(digest)), tmp)
            fs.mv(tmp, target)
            callback = None
        else:
            callback = progress.callback()
            fs.put_file(str(cache.object_path(digest)), target, **({"callback": callback} if callback else {}))
        with lock:
            result.transferred += 1
            result.bytes += size
        progress.step(size, callback)

    result.failed = _run_parallel(todo, upload, jobs)
    progress.close()
    return result


DOWNLOAD_ATTEMPTS = 2  # an object whose bytes do not hash to its name is fetched once more, then refused


def fetch(cache: DataCache, pointers: list[Pointer], fs: Any, base: str, jobs: int) -> TransferResult:
    """Download what the local cache lacks: folder manifests first, then the files they list."""
    result = TransferResult()
    there: set[str] | None = None
    lock = threading.Lock()

    def download_all(wanted: dict[str, str], verb: str) -> None:
        nonlocal there
        todo = [d for d in wanted if not cache.has(d)]
        result.present += len(wanted) - len(todo)
        if not todo:
            return
        if there is None and _listable(fs):
            there = remote_objects(fs, base)
        if there is not None:
            absent = [d for d in todo if d not in there]
            result.missing.extend(f"{wanted[d]} ({d[:12]})" for d in absent)
            todo = [d for d in todo if d in there]
        progress = Progress(verb, len(todo))

        def download(digest: str) -> None:
            tmp = cache._tmp()
            callback = progress.callback()
            try:
                for attempt in range(DOWNLOAD_ATTEMPTS):  # a transfer garbled in flight is fetched again
                    try:
                        fs.get_file(remote_path(base, digest), str(tmp), **({"callback": callback} if callback else {}))
                    except FileNotFoundError:
                        with lock:
                            result.missing.append(f"{wanted[digest]} ({digest[:12]})")
                        return
                    if hash_file(tmp, algo_of(digest)) == digest:
                        break
                    if attempt == DOWNLOAD_ATTEMPTS - 1:
                        raise CheckFailed(
                            f"{wanted[digest]}: object {digest[:12]} on the remote is corrupt (hash differs)"
                        )
                size = tmp.stat().st_size
                cache._install(tmp, digest)
            finally:
                if tmp.exists():
                    tmp.unlink()
            with lock:
                result.transferred += 1
                result.bytes += size
            progress.step(size, callback)

        result.failed.extend(_run_parallel(todo, download, jobs))
        progress.close()

    files = {p.hash: p.path for p in pointers if not p.is_dir}
    manifests = {p.hash: p.path for p in pointers if p.is_dir}
    download_all(manifests, "fetch")
    for digest, path in manifests.items():
        if cache.has(digest):
            rows = parse_manifest(cache.object_path(digest).read_bytes(), path)
            for name, h, _size in rows:
                files.setdefault(h, f"{path}/{name}")
    download_all(files, "fetch")
    return result


def sync(
    root: Path,
    verb: Literal["push", "fetch"],
    targets: list[str] | None,
    remote: str | None,
    jobs: int | None,
    settings: dict[str, Any] | None = None,
) -> tuple[TransferResult, str]:
    """`mlci data push|fetch`: move the objects that the mlci pointers `targets` name (None: all)
    to or from the remote `remote` (None: data.remote); returns the result and the remote's name.
    DVC-tracked datasets are left to DVC."""
    pointers = [p for _f, p in select(workspace_pointers(root), targets) if p.origin == "mlci"]
    fs, base, name = open_remote(root, remote, settings)  # settings: see open_remote
    move = push if verb == "push" else fetch
    return move(DataCache.for_repo(root), pointers, fs, base, parallel_jobs(root, jobs)), name
