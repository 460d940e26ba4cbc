"""One exclusive lock on a file, for steps that must not run at once across processes.

`flock` is released by the kernel when its holder dies, so a killed process never leaves
the lock held (a lock file left behind is only a name).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block; waits for it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; callers' own checks narrow the race
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` on this machine still runs: a lock's or a lease's holder, a writer
    that may have been killed mid-way. A zombie (killed, not yet reaped) runs nothing."""
    import os

    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
