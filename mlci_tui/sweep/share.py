"""Results reach the ledger remote as a sweep goes (`push: auto`, the default, when a ledger remote exists).

The coordinator pushes the ledger at most every PUSH_EVERY seconds while trials finish,
and once at the end (also after Ctrl-C), so a team sees the sweep without anyone running
`mlci ledger push`. A failed push warns and the sweep goes on: the records stay local and
the next push takes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep.events import Sweep

PUSH_EVERY = 10.0  # seconds


def remote_for(repo: Repo, setting: object) -> str | None:
    """The remote to push to for `push:` auto / true / false: auto means the ledger remote, when it exists."""
    from mlci_tui import config as config_mod

    if setting is False or setting == "false":
        return None
    remote = config_mod.load(repo.root).remote
    exists = repo.run("remote", "get-url", remote, check=False).returncode == 0
    if setting is True or setting == "true":
        if not exists:
            raise MlciError(
                f"push: true, but the ledger remote {remote!r} does not exist (git remote add {remote} URL)"
            )
        return remote
    return remote if exists else None


@dataclass
class Sharing:
    repo: Repo
    remote: str | None
    say: Callable[[str], None]
    pushed_tip: str | None = None
    last: float = 0.0

    @classmethod
    def of(cls, repo: Repo, sweep: Sweep, say: Callable[[str], None]) -> Sharing:
        return cls(
            repo, remote_for(repo, sweep.spec.get("push", "auto")), say, LedgerStore(repo).tip(), time.monotonic()
        )

    def maybe_push(self) -> None:
        if self.remote and time.monotonic() - self.last >= PUSH_EVERY:
            self.push()

    def push(self, final: bool = False) -> None:
        if not self.remote:
            return
        self.last = time.monotonic()
        tip = LedgerStore(self.repo).tip()
        if tip == self.pushed_tip:
            return
        from mlci_tui.ledger import sync

        try:
            result = sync.push(self.repo, self.remote)
        except MlciError as exc:
            self.say(f"warning: ledger push to {self.remote} failed ({exc}); the results stay here until the next push")
            return
        self.pushed_tip = result.local_tip
        if final:
            self.say(f"ledger pushed to {self.remote}")
