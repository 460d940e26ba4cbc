"""Progress of long work (imports, data transfers, sweeps) on stderr, drawn by Rich's progress bar.

Only on a terminal: a pipe, a CI log or a test reads no bar (and pays no Rich import). The
bars are Rich's own columns (counts, bytes, rate, time left), not hand-written counters.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def on_terminal() -> bool:
    """Whether a bar may be drawn: stderr is a terminal that is not `dumb`."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


class Bar:
    """One task on a started Rich `Progress`; `close` stops it and leaves its last line."""

    def __init__(self, progress: Any, task: Any, verb: str, objects: int | None) -> None:
        self.progress, self.task, self.verb, self.objects, self.done = progress, task, verb, objects, 0

    def advance_bytes(self, count: int) -> None:
        self.progress.advance(self.task, count)

    def advance_object(self) -> None:
        self.done += 1
        if self.objects is None:
            self.progress.advance(self.task, 1)
        else:
            self.progress.update(self.task, description=f"{self.verb} {self.done}/{self.objects}")

    def set(self, completed: int, total: int, detail: str) -> None:
        """Where a task stands now (a sweep: trials finished of all, and by state)."""
        self.progress.update(self.task, completed=completed, total=total, detail=detail)

    def print(self, text: str) -> None:
        """A line above the bar, as plain text (no Rich markup: the text may come from the data)."""
        from rich.text import Text

        self.progress.console.print(Text(text), highlight=False)

    def close(self) -> None:
        self.progress.stop()


def _start(columns: list[Any], description: str, total: float | None, verb: str, objects: int | None) -> Bar:
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(*columns, console=Console(file=sys.stderr), transient=False)
    task = progress.add_task(description, total=total, detail="")
    progress.start()
    return Bar(progress, task, verb, objects)


def transfer_bar(verb: str, objects: int, total_bytes: int | None) -> Bar | None:
    """`push 3/10 ━━━━━  1.2/4.0 GB  52 MB/s  0:00:54`; None off a terminal. Without
    `total_bytes` (a fetch knows only what it has received) the bar pulses."""
    if not on_terminal():
        return None
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    return _start([*columns, TimeRemainingColumn()], f"{verb} 0/{objects}", total_bytes, verb, objects)


def count_bar(verb: str, total: int) -> Bar | None:
    """`import dvc ━━━━━  120/1,000 commits  0:00:09`; None off a terminal."""
    if not on_terminal() or total <= 0:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    return _start(columns, verb, total, verb, None)


def state_bar(description: str, total: int) -> Bar | None:
    """`sweep lr-search ━━━━━  3/10  2 done, 1 failed, 2 running  0:01:12`; None off a terminal.
    The caller `set`s it as things finish and `print`s its lines above it."""
    if not on_terminal():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}")]
    return _start([*columns, TimeElapsedColumn()], description, total, description, None)
