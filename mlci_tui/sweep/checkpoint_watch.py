"""Checkpoints uploaded while a trial runs, so a worker killed outright loses nothing.

A spot VM that vanishes (SIGKILL of the worker and everything under it) cannot upload its
trial's `MLCI_CHECKPOINT_DIR` when the attempt ends. The runner asks `CheckpointWatch.check`
every half second while the command runs: when the folder changed and has then been quiet
for QUIET seconds, and the last upload is at least `checkpoint_interval` old (default 60 s),
it is stored as a content-addressed folder object and uploaded to the data remote in a
background thread, and the remote names it the trial's latest snapshot
(`trial_files.latest_checkpoint`), where a retry on any clone or Dask worker finds it.

Without a data remote nothing is uploaded (a retry on this machine finds the local folder).
The local cache keeps only the newest snapshot's objects this watch added: older ones are
removed once superseded, and all of them when the trial ends (the remote has them).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from mlci_tui.gitio import Repo

QUIET = 2.0  # seconds the folder must be unchanged before a snapshot (a checkpoint half written is not one)
DEFAULT_INTERVAL = 60.0  # seconds between two uploads at most (`checkpoint_interval`)
Signature = tuple[tuple[str, int, int], ...]


def signature(folder: Path) -> Signature:
    """(relative path, size, mtime ns) of every file under `folder`: what tells a change."""
    out: list[tuple[str, int, int]] = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            out.append((os.path.relpath(path, folder), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


class CheckpointWatch:
    """Uploads a trial's checkpoint folder as it changes (see the module docstring)."""

    def __init__(
        self, repo: Repo, trial_id: str, folder: Path, interval: float | None, settings: dict[str, Any] | None = None
    ) -> None:
        self.repo, self.trial_id, self.folder, self.settings = repo, trial_id, folder, settings
        self.interval = float(interval) if interval is not None else DEFAULT_INTERVAL
        self.enabled: bool | None = None  # decided at the first non-empty folder: is there a data remote
        self.seen: Signature = ()
        self.seen_at = 0.0
        self.uploaded: Signature = ()
        self.last_upload = float("-inf")
        self.thread: threading.Thread | None = None
        self.objects: list[list[str]] = []  # cache objects each upload added, oldest first
        self.uploads = 0

    def check(self) -> None:
        """Called by the runner's loop (a `stop` check that never stops): start an upload when due."""
        if self.enabled is False or (self.thread is not None and self.thread.is_alive()):
            return
        now = time.monotonic()
        if now - self.last_upload < self.interval:
            return
        current = signature(self.folder)
        if current != self.seen:
            self.seen, self.seen_at = current, now
            return
        if not current or current == self.uploaded or now - self.seen_at < QUIET:
            return
        if self.enabled is None:
            from mlci_tui.sweep.trial_files import _remote

            self.enabled = _remote(self.repo, self.settings) is not None
            if not self.enabled:
                return
        self.thread = threading.Thread(target=self._upload, args=(current,), daemon=True)
        self.thread.start()

    def _upload(self, current: Signature) -> None:
        from mlci_tui.sweep.trial_files import store_checkpoint

        link, added = store_checkpoint(self.repo, self.folder, self.trial_id, self.settings)
        self.last_upload = time.monotonic()
        self.objects.append(added)
        if "checkpoint" in link and "checkpoint_error" not in link:
            self.uploaded = current
            self.uploads += 1
            self._drop(keep_last=True)

    def _drop(self, *, keep_last: bool) -> None:
        """Remove from the local cache the objects of snapshots that a newer one superseded."""
        from mlci_tui.data.cache import DataCache

        cache = DataCache.for_repo(self.repo.root)
        while len(self.objects) > (1 if keep_last else 0):
            for digest in self.objects.pop(0):
                cache.object_path(digest).unlink(missing_ok=True)

    def close(self, wait: float = 30.0) -> dict[str, Any]:
        """At the trial's end: let an upload in flight finish (up to `wait` s), then drop this
        watch's cache objects; what it did, for the log."""
        if self.thread is not None:
            self.thread.join(timeout=wait)
        if self.thread is None or not self.thread.is_alive():
            self._drop(keep_last=False)
        return {"uploads": self.uploads}
