"""A trial's files beside the ledger: its full log and its checkpoints.

Both are content-addressed in the data cache, uploaded to the data remote when one is
configured, and linked from the trial's event (`log: {hash, size}`, a failed attempt's
`checkpoint: {hash, size, nfiles}`), so `mlci sweep logs` shows a log from any clone.
Checkpoints are also uploaded while the trial runs (sweep/checkpoint_watch.py), each upload
named on the remote as the trial's latest, so a retry on another machine resumes even after
a worker killed outright (a spot VM gone) uploaded nothing at its end. The last 4 KB of
stderr stay in the event as before (docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlci_tui.errors import MlciError, first_line
from mlci_tui.gitio import Repo

MAX_LOG_BYTES = 256 * 1024 * 1024  # a runaway log is not uploaded whole; its tail stays in the event
MAX_CHECKPOINT_BYTES = 20 * 1024**3  # past this a lost attempt's checkpoints stay where they were written
Settings = dict[str, Any] | None  # a `data:` config section (a Dask worker's clone has no working tree config)
LATEST_DIR = "mlci-checkpoints"  # on the data remote: <trial id>.json names the trial's newest checkpoint


def publish(repo: Repo, log: Path, settings: Settings = None) -> dict[str, Any]:
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
        remote = _remote(repo, settings)
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


def publish_checkpoint(
    repo: Repo, folder: Path, trial_id: str | None = None, settings: Settings = None
) -> dict[str, Any]:
    """Store the checkpoint folder a failed attempt leaves (as a folder object: a manifest and
    its files) and upload it: the `checkpoint` link of the trial's `failed` event. With
    `trial_id`, the link is also the trial's latest snapshot on the remote. Never raises."""
    return store_checkpoint(repo, folder, trial_id, settings)[0]


def store_checkpoint(
    repo: Repo, folder: Path, trial_id: str | None = None, settings: Settings = None
) -> tuple[dict[str, Any], list[str]]:
    """(the link fields, the objects this call added to the local cache) of a checkpoint folder
    stored and uploaded: what `publish_checkpoint` and the running trial's snapshots share.

    Uploaded with a `trial_id`, the link is written to the remote as that trial's latest
    snapshot (`mlci-checkpoints/<trial id>.json`), where a retry on any clone finds it."""
    from mlci_tui.data.workspace import walk_folder

    try:
        if not folder.is_dir():
            return {}, []
        files = walk_folder(folder.parent, folder.name)
        if not files or sum(st.st_size for _n, st in files) > MAX_CHECKPOINT_BYTES:
            return {}, []
        from mlci_tui.data.cache import DataCache
        from mlci_tui.data.hashing import hash_file

        cache = DataCache.for_repo(repo.root)
        added: list[str] = []
        entries = []
        for name, st in files:
            digest = hash_file(folder / name, cache.algo, st.st_size)
            if not cache.has(digest):
                added.append(digest)
            entries.append((name, *cache.add_file(folder / name, digest, size=st.st_size)))
        manifest = cache.add_manifest(entries)
        link: dict[str, Any] = {
            "checkpoint": {"hash": manifest, "size": sum(s for _n, _h, s in entries), "nfiles": len(entries)}
        }
        remote = _remote(repo, settings)
        if remote is not None:
            from mlci_tui.data.add import parallel_jobs
            from mlci_tui.data.transfer import push

            fs, base, name = remote
            result = push(cache, [_folder(link["checkpoint"])], fs, base, parallel_jobs(repo.root, None))
            if result.failed:
                link["checkpoint_error"] = f"not uploaded to {name}: {result.failed[0]}"
            elif trial_id is not None:
                _write_latest(fs, base, trial_id, link["checkpoint"])
        return link, added
    except (MlciError, OSError) as exc:
        return {"checkpoint_error": first_line(exc)}, []


def _latest_path(base: str, trial_id: str) -> str:
    """Where a trial's newest uploaded checkpoint is named (beside the objects, never one of them:
    object paths are `xx/yyyy` with no dot)."""
    return f"{base}/{LATEST_DIR}/{trial_id}.json"


def _write_latest(fs: Any, base: str, trial_id: str, link: dict[str, Any]) -> None:
    import json

    from mlci_tui.ledger.records import now_iso

    target = _latest_path(base, trial_id)
    fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(target, json.dumps({**link, "time": now_iso()}, sort_keys=True).encode())


def latest_checkpoint(repo: Repo, trial_id: str, settings: Settings = None) -> dict[str, Any] | None:
    """The newest checkpoint any attempt of the trial uploaded (while running or when it failed),
    as the remote names it; None without a data remote or when there is none."""
    import json

    remote = _remote(repo, settings)
    if remote is None:
        return None
    fs, base, _name = remote
    try:
        found = json.loads(fs.cat_file(_latest_path(base, trial_id)))
    except (OSError, ValueError):  # FileNotFoundError included: no snapshot yet
        return None
    if isinstance(found, dict) and {"hash", "size", "nfiles"} <= found.keys():
        return {k: found[k] for k in ("hash", "size", "nfiles")}
    return None


def restore_checkpoint(
    repo: Repo, link: dict[str, Any] | None, folder: Path, trial_id: str | None = None, settings: Settings = None
) -> bool:
    """Put the checkpoints an earlier attempt uploaded into `folder` (when it holds none, as on a
    worker that never ran the trial): the trial's latest snapshot on the remote (a worker killed
    outright uploaded it while running), else `link` (a failed attempt's); False when there is
    none, or it is in neither the cache nor the remote."""
    if folder.is_dir() and any(folder.iterdir()):
        return True  # this machine ran an earlier attempt: its own files are the newest
    link = (latest_checkpoint(repo, trial_id, settings) if trial_id else None) or link
    if not link:
        return False
    from mlci_tui.data.cache import DataCache

    cache = DataCache.for_repo(repo.root)
    pointer = _folder(link)
    if not cache.folder_complete(pointer.hash):
        remote = _remote(repo, settings)
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


def _remote(repo: Repo, settings: Settings = None) -> tuple[Any, str, str] | None:
    """The default data remote opened: from `settings` (a `data:` section) when given, else the
    working tree's config; None when there is none."""
    from mlci_tui.data.remotes import NoDataRemote, open_remote
    from mlci_tui.errors import ConfigError

    try:
        return open_remote(repo.root, None, settings)
    except NoDataRemote:
        return None
    except ConfigError:  # a remote declared wrongly: the trial is not the place to say so
        return None
