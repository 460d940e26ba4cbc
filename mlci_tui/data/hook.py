"""What post-checkout and post-merge do for data: check out the versions the new HEAD names,
from the local cache only (hooks never use the network), keeping unsaved local changes."""

from __future__ import annotations

import sys

from mlci_tui.data.checkout import checkout
from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display


def checkout_cached() -> None:
    try:
        repo = Repo.find()
        result = checkout(repo.root, repo.state_dir)
    except MlciError as exc:
        print(f"mlci: warning: data checkout skipped: {display(str(exc))}", file=sys.stderr)
        return
    if result.written or result.removed:
        print(f"mlci: data: {len(result.written)} files checked out, {len(result.removed)} removed", file=sys.stderr)
    for path in result.kept:
        print(
            f"mlci: data: {display(path)} kept (unsaved local change; `mlci data checkout --force` discards it)",
            file=sys.stderr,
        )
    if result.not_cached:
        print(
            f"mlci: data: {len(result.not_cached)} datasets not in the local cache (`mlci data pull` fetches them)",
            file=sys.stderr,
        )
