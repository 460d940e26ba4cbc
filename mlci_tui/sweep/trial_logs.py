"""A trial's full log beside the ledger: content-addressed in the data cache, uploaded to the
data remote, and linked from the trial's end event (`log: {hash, size}`), so `mlci sweep
logs` shows it from any clone, not only on the machine that ran the trial. The last 4 KB of
stderr stay in the event as before (docs/sweeps.md, "Logs")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlci_tui.errors import MlciError, first_line
from mlci_tui.gitio import Repo

MAX_LOG_BYTES = 256 * 1024 * 1024  # a runaway log is not uploaded whole; its tail stays in the event


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


def _pointer(digest: str, size: int) -> Any:
    from mlci_tui.data.cache import algo_of
    from mlci_tui.data.pointer import Pointer

    return Pointer(path=f"trial-logs/{digest[:12]}.log", algo=algo_of(digest), hash=digest, size=size)


def _remote(repo: Repo) -> tuple[Any, str, str] | None:
    from mlci_tui.data.remotes import open_remote
    from mlci_tui.errors import ConfigError

    try:
        return open_remote(repo.root, None)
    except ConfigError:
        return None
