"""A trial's files beside the ledger: its full log and, when it fails, its checkpoints.

Both are content-addressed in the data cache, uploaded to the data remote when one is
configured, and linked from the trial's event (`log: {hash, size}`, `checkpoint: {hash,
size, nfiles}`), so `mlci sweep logs` shows a log from any clone, and a retry on another
machine (a Dask worker that cloned the project) resumes from the checkpoints the lost
attempt wrote. The last 4 KB of stderr stay in the event as before (docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlci_tui.errors import MlciError, first_line
from mlci_tui.gitio import Repo

MAX_LOG_BYTES = 256 * 1024 * 1024  # a runaway log is not uploaded whole; its tail stays in the event
MAX_CHECKPOINT_BYTES = 20 * 1024**3  # past this a lost attempt's checkpoints stay where they were written


def publish(repo: Repo, log: Path) -> dict[str, Any]:
    """Store `log` in the data cache and upload it to the default data remote, if one is
    configured: the fields the trial's end event links it by (`log`, or `log_error`). Never
    raises: a log that cannot be kept must not fail the trial."""
    try:
        size = log.stat().st_size
    except OSError:
        return {}
    if size == 0 or size > MAX_LOG_BYTES:
        return {}
    from mlci_tui.data.cache import DataCache

    try:
        cache = DataCache.for_repo(repo.root)
        digest, size = cache.add_file(log)
        link: dict[str, Any] = {"log": {"hash": digest, "size": size}}
        remote = _remote(repo)
        if remote is not None:
            from mlci_tui.data.add import parallel_jobs
            from mlci_tui.data.transfer import push

            fs, base, name = remote
            result = push(cache, [_pointer(digest, size)], fs, base, parallel_jobs(repo.root, None))
            if result.failed:
                link["log_error"] = f"not uploaded to {name}: {result.failed[0]}"
        return link
    except (MlciError, OSError) as exc:
        return {"log_error": first_line(exc)}


def fetch(repo: Repo, digest: str, size: int) -> Path | None:
    """The log named by `digest`: from the local data cache, else downloaded from the data
    remote into it; None when it is in neither."""
    from mlci_tui.data.cache import DataCache

    cache = DataCache.for_repo(repo.root)
    if not cache.has(digest):
        remote = _remote(repo)
        if remote is None:
            return None
        from mlci_tui.data.add import parallel_jobs
        from mlci_tui.data.transfer import fetch as fetch_objects

        fs, base, _name = remote
        fetch_objects(cache, [_pointer(digest, size)], fs, base, parallel_jobs(repo.root, None))
    return cache.object_path(digest) if cache.has(digest) else None


def publish_checkpoint(repo: Repo, folder: Path) -> dict[str, Any]:
    """Store the checkpoint folder a failed attempt leaves (as a folder object: a manifest and
    its files) and upload it: the `checkpoint` link of the trial's `failed` event. Never raises."""
    from mlci_tui.data.workspace import walk_folder

    try:
        if not folder.is_dir():
            return {}
        files = walk_folder(folder.parent, folder.name)
        if not files or sum(st.st_size for _n, st in files) > MAX_CHECKPOINT_BYTES:
            return {}
        from mlci_tui.data.cache import DataCache

        cache = DataCache.for_repo(repo.root)
        entries = [(name, *cache.add_file(folder / name)) for name, _st in files]
        manifest = cache.add_manifest(entries)
        link: dict[str, Any] = {
            "checkpoint": {"hash": manifest, "size": sum(s for _n, _h, s in entries), "nfiles": len(entries)}
        }
        remote = _remote(repo)
        if remote is not None:
            from mlci_tui.data.add import parallel_jobs
            from mlci_tui.data.transfer import push

            fs, base, name = remote
            result = push(cache, [_folder(link["checkpoint"])], fs, base, parallel_jobs(repo.root, None))
            if result.failed:
                link["checkpoint_error"] = f"not uploaded to {name}: {result.failed[0]}"
        return link
    except (MlciError, OSError) as exc:
        return {"checkpoint_error": first_line(exc)}


def restore_checkpoint(repo: Repo, link: dict[str, Any], folder: Path) -> bool:
    """Put the checkpoints a lost attempt uploaded into `folder` (when it holds none, as on a
    worker that never ran the trial); False when they are in neither the cache nor the remote."""
    if folder.is_dir() and any(folder.iterdir()):
        return True  # this machine ran an earlier attempt: its own files are the newest
    from mlci_tui.data.cache import DataCache

    cache = DataCache.for_repo(repo.root)
    pointer = _folder(link)
    if not cache.folder_complete(pointer.hash):
        remote = _remote(repo)
        if remote is None:
            return False
        from mlci_tui.data.add import parallel_jobs
        from mlci_tui.data.transfer import fetch as fetch_objects

        fs, base, _name = remote
        fetch_objects(cache, [pointer], fs, base, parallel_jobs(repo.root, None))
        if not cache.folder_complete(pointer.hash):
            return False
    import shutil

    for name, digest, _size in cache.manifest(pointer.hash):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache.object_path(digest), target)
    return True


def _pointer(digest: str, size: int) -> Any:
    from mlci_tui.data.cache import algo_of
    from mlci_tui.data.pointer import Pointer

    return Pointer(path=f"trial-logs/{digest[:12]}.log", algo=algo_of(digest), hash=digest, size=size)


def _folder(link: dict[str, Any]) -> Any:
    from mlci_tui.data.cache import algo_of
    from mlci_tui.data.pointer import Pointer

    digest = str(link["hash"])
    return Pointer(
        path=f"trial-checkpoints/{digest[:12]}",
        algo=algo_of(digest),
        hash=digest,
        size=int(link["size"]),
        nfiles=int(link["nfiles"]),
    )


def _remote(repo: Repo) -> tuple[Any, str, str] | None:
    from mlci_tui.data.remotes import open_default_remote
    from mlci_tui.errors import ConfigError

    try:
        return open_default_remote(repo.root)
    except ConfigError:  # a remote declared wrongly: the trial is not the place to say so
        return None
