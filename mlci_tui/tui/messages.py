"""Messages that workers post and screens handle: one class per answer, so no handler switches on strings.

Workers never touch widgets: they compute in a thread and `post_answer`. Every answer to a
query carries the `generation` of its request, so a handler can drop one that a newer
request overtook; its `value` is typed by its class (`RunsLoaded.value` is a `ViewResult`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from textual.message import Message

from mlci_tui.ledger.query.compare import CompareResult
from mlci_tui.ledger.query.detail import RunDetail
from mlci_tui.ledger.query.groups import Group
from mlci_tui.ledger.query.runs_view import ViewResult
from mlci_tui.sanitize import display
from mlci_tui.tui.widgets.plot import Chart

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

T = TypeVar("T")


class LedgerChanged(Message):
    """The ledger ref moved (a commit was captured, a note written, a sweep trial finished)."""

    def __init__(self, tip: str) -> None:
        super().__init__()
        self.tip = tip


class LedgerConflicts(Message):
    """How many records have an unresolved second body (`conflicts/` in the ledger) at a tip."""

    def __init__(self, count: int, first: str | None) -> None:
        super().__init__()
        self.count = count
        self.first = first


class DataDiffLoaded(Message):
    """The run's datasets diffed against the baseline's versions: (title, lines) per dataset."""

    def __init__(self, generation: int, baseline: str, diffs: list[tuple[str, list[str]]]) -> None:
        super().__init__()
        self.generation = generation
        self.baseline = baseline
        self.diffs = diffs


class Answer(Message, Generic[T]):
    """The answer to the request numbered `generation`."""

    def __init__(self, generation: int, value: T) -> None:
        super().__init__()
        self.generation = generation
        self.value = value


class QueryFailed(Answer[str]):
    """A query failed; the value is a message for the user (already sanitised)."""


class RunsLoaded(Answer[ViewResult]):
    """The runs view the runs screen asked for."""


class RunsFailed(QueryFailed):
    pass


class RunsProgress(Answer[str]):
    """What a slow runs query is doing (reading new records into the cache)."""


class DetailLoaded(Answer[RunDetail | None]):
    """One run in full; None when it is no longer in the ledger (redacted)."""


class DetailFailed(QueryFailed):
    pass


class NoteOrTagWritten(Answer[str]):
    """A note or tag reached the ledger; the value says what was done."""


class WriteFailed(QueryFailed):
    pass


class CompareLoaded(Answer[CompareResult]):
    pass


class CompareFailed(QueryFailed):
    pass


class GroupsLoaded(Answer[dict[str, Group]]):
    """Each shown run's group of repeats (`groups.load_groups`): the run and compare screens."""


class GroupsFailed(QueryFailed):
    pass


class PlotLoaded(Answer[tuple[str | None, Chart]]):
    """The metric plotted (the one chosen when none was asked for) and its chart."""


class PlotFailed(QueryFailed):
    pass


class SweepsLoaded(Answer[Any]):
    """Every sweep, folded from the ledger (`sweep.queue.QueueState.sweeps`)."""


class SweepsFailed(QueryFailed):
    pass


def post_answer(
    target: MessagePump,
    generation: int,
    loaded: Callable[[int, T], Answer[T]],
    failed: Callable[[int, str], QueryFailed],
    load: Callable[[], T],
    expected: tuple[type[Exception], ...] = (),
) -> None:
    """Run `load` (in the calling worker) and post its value as `loaded`, or its error as `failed`
    (an `expected` error by its message alone, any other with its type)."""
    try:
        value = load()
    except expected as exc:
        target.post_message(failed(generation, display(str(exc))))
        return
    except Exception as exc:
        target.post_message(failed(generation, display(f"{type(exc).__name__}: {exc}")))
        return
    target.post_message(loaded(generation, value))
