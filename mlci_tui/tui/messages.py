"""Messages that workers post and screens handle: one class per answer, so no handler switches on strings.

Workers never touch widgets. Every answer to a query carries the `generation` of the request,
so a handler can drop an answer that a newer request overtook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from mlci_tui.ledger.query.compare import CompareResult
    from mlci_tui.ledger.query.detail import RunDetail
    from mlci_tui.ledger.query.runs_view import ViewResult
    from mlci_tui.tui.widgets.plot import Chart


class LedgerChanged(Message):
    """The ledger ref moved (a commit was captured, a note written, a sweep trial finished)."""

    def __init__(self, tip: str) -> None:
        super().__init__()
        self.tip = tip


class Answer(Message):
    """An answer to the request numbered `generation`."""

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class QueryFailed(Answer):
    """A query failed; `error` is a message for the user (already sanitised). Each screen has its own kind."""

    def __init__(self, generation: int, error: str) -> None:
        super().__init__(generation)
        self.error = error


class RunsLoaded(Answer):
    def __init__(self, generation: int, result: ViewResult) -> None:
        super().__init__(generation)
        self.result = result


class RunsFailed(QueryFailed):
    pass


class RunsProgress(Answer):
    """What a slow runs query is doing (reading new records into the cache)."""

    def __init__(self, generation: int, note: str) -> None:
        super().__init__(generation)
        self.note = note


class DetailLoaded(Answer):
    """One run in full; None when it is no longer in the ledger (redacted)."""

    def __init__(self, generation: int, detail: RunDetail | None) -> None:
        super().__init__(generation)
        self.detail = detail


class DetailFailed(QueryFailed):
    pass


class NoteOrTagWritten(Message):
    """A note or tag reached the ledger; `text` says what was done."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class WriteFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class CompareLoaded(Answer):
    def __init__(self, generation: int, result: CompareResult) -> None:
        super().__init__(generation)
        self.result = result


class CompareFailed(QueryFailed):
    pass


class PlotLoaded(Answer):
    def __init__(self, generation: int, metric: str | None, chart: Chart) -> None:
        super().__init__(generation)
        self.metric = metric
        self.chart = chart


class PlotFailed(QueryFailed):
    pass


class SweepsLoaded(Answer):
    def __init__(self, generation: int, sweeps: Any) -> None:
        super().__init__(generation)
        self.sweeps = sweeps


class SweepsFailed(QueryFailed):
    pass
