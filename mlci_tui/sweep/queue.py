"""The queue's state (folded from ledger events) and the local leases of running trials.

The ledger is the queue: `QueueState` reads sweep and trial events once through the
DuckDB cache, then only the records appended since (a `git diff-tree` of the ledger tip),
so a coordinator polling for changes costs two git processes, not a cache rebuild.
Leases and heartbeats are local files under `.git/mlci/queue/<sweep_id>/`, never events:
a lease is claimed with an exclusive create, kept alive by touching it, and expires when
its holder's process is gone or its heartbeat is older than the lease time.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci_tui.errors import InputError
from mlci_tui.file_lock import pid_alive  # also the sweep modules' `queue.pid_alive`
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query.sweeps import sweep_events
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.ledger.tip_watch import ledger_ref_files, stat_signature
from mlci_tui.sweep.events import Sweep, Trial, fold

DEFAULT_LEASE_SECONDS = 60.0


def lease_seconds() -> float:
    try:
        return float(os.environ.get("MLCI_SWEEP_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
    except ValueError:
        return DEFAULT_LEASE_SECONDS


def load_events(repo: Repo) -> tuple[str, list[dict[str, Any]]]:
    """(ledger tip, every sweep and trial event), through the read core."""
    return sweep_events(repo)


class QueueState:
    """Every sweep's state, kept current by reading only the ledger records added since."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.store = LedgerStore(repo)
        self.tip, self.events = load_events(repo)
        self.sweeps = fold(self.events)
        self._ref_files = ledger_ref_files(repo, self.store)
        self._signature = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[object, ...]:
        return stat_signature(self._ref_files)

    def refresh(self, force: bool = False) -> bool:
        """Re-fold when the ledger moved; True when it did.

        A coordinator calls this every few tens of milliseconds: the ref files are stat'ed
        and git is asked for the tip only when they changed (or every 2 s, for ref stores
        a stat cannot see; or when `force`d). State is replaced only once everything is read:
        a Ctrl-C that lands mid-read leaves the old signature, so the next call reads again
        (setting the signature first left a stale fold that looked current).
        """
        signature = self._stat()
        now = time.monotonic()
        if not force and signature == self._signature and now - self._checked < 2.0:
            return False
        tip = self.store.tip() or ""
        moved = tip != self.tip
        if moved:
            added = self.store.added_between(self.tip, tip) if self.tip else None
            if added is None:
                tip, events = load_events(self.repo)
            else:
                new = [r for r in self.store.load_entries(added) if r.get("type") in ("sweep", "trial")]
                events = self.events + new
            sweeps = fold(events)
            self.tip, self.events, self.sweeps = tip, events, sweeps
        self._signature, self._checked = signature, now
        return moved

    def find(self, ref: str) -> Sweep:
        return find_sweep(self.sweeps, ref)


def find_sweep(sweeps: dict[str, Sweep], ref: str) -> Sweep:
    """A sweep by name (the newest of that name) or by id prefix (at least 4 characters)."""
    named = [s for s in sweeps.values() if s.name == ref]
    if named:
        return max(named, key=lambda s: s.created)
    if len(ref) >= 4:
        matches = [s for s in sweeps.values() if s.sweep_id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            listed = ", ".join(f"{s.sweep_id[:8]} ({s.name})" for s in matches)
            raise InputError(f"sweep {ref!r} is ambiguous: {listed}")
    known = ", ".join(sorted({s.name for s in sweeps.values()})) or "none yet"
    raise InputError(f"no sweep named {ref!r} (sweeps: {known}); create it with `mlci sweep create {ref}`")


def find_trial(sweeps: dict[str, Sweep], ref: str) -> tuple[Sweep, Trial]:
    """A trial by id prefix (at least 4 characters) or as SWEEP-NUMBER (e.g. lr-search-3)."""
    head, _, num = ref.rpartition("-")
    if head and num.isdigit():
        try:
            sweep = find_sweep(sweeps, head)
        except InputError:
            sweep = None
        if sweep is not None:
            for trial in sweep.trials.values():
                if trial.number == int(num):
                    return sweep, trial
    if len(ref) >= 4:
        found = [(s, t) for s in sweeps.values() for t in s.trials.values() if t.trial_id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if found:
            raise InputError(f"trial {ref!r} is ambiguous: " + ", ".join(t.trial_id[:10] for _s, t in found))
    raise InputError(f"no trial {ref!r} (give a trial id prefix or SWEEP-NUMBER, see `mlci sweep status`)")


# ------------------------------------------------------------------ leases
@dataclass
class Lease:
    path: Path
    data: dict[str, Any]
    age: float  # seconds since the last heartbeat

    @property
    def trial_id(self) -> str:
        return self.path.name.removesuffix(".lease")


def queue_dir(repo: Repo, sweep_id: str) -> Path:
    return repo.state_dir / "queue" / sweep_id


def lease_path(repo: Repo, sweep_id: str, tid: str) -> Path:
    return queue_dir(repo, sweep_id) / f"{tid}.lease"


def claim(repo: Repo, sweep_id: str, tid: str, data: dict[str, Any]) -> Path | None:
    """Take the lease of a trial; None when another process holds it."""
    path = lease_path(repo, sweep_id, tid)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as out:
        json.dump({**data, "host": socket.gethostname(), "pid": os.getpid(), "claimed": time.time()}, out)
    return path


def update(path: Path, **fields: Any) -> None:
    """Rewrite a lease's holder details (atomic replace; also a heartbeat)."""
    data = read_lease_data(path) or {}
    data.update(fields)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def heartbeat(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def release(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def read_lease_data(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def leases(repo: Repo, sweep_id: str) -> list[Lease]:
    out = []
    now = time.time()
    for path in sorted(queue_dir(repo, sweep_id).glob("*.lease")):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        out.append(Lease(path, read_lease_data(path) or {}, now - mtime))
    return out


def expired(lease: Lease, seconds: float) -> str | None:
    """Why a lease is no longer held, or None while it is."""
    pid = lease.data.get("pid")
    if lease.data.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        return f"worker {lease.data.get('host')}:{pid} is gone"
    if lease.age > seconds:
        return f"no heartbeat for {lease.age:.0f} s (lease {seconds:.0f} s)"
    return None
