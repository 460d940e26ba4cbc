"""What the commit being made changes, as staged: the files the pre-commit hook has to check.

The pre-commit hook asks git once for the staged changes (`git diff --cached --raw`: path,
mode and blob of each), and that answer is also where the files it checks are found: a
params or metrics file the commit does not change passed when it was committed. So the hook
starts no `git ls-files` per pattern (`sources.IndexSource`: three of them for the default
files), and reads the config and the blobs through one `git cat-file --batch`
(`importers.objects.ObjectReader`): 3 git processes where there were 8. When the commit
changes the config, the files it names may be others: the whole index is checked then
(`IndexSource`).
"""

from __future__ import annotations

from mlci_tui.gitio import Repo, TreeEntry
from mlci_tui.importers.objects import ObjectReader
from mlci_tui.sources import IndexSource

SUBMODULE_MODE = "160000"


def parse_raw_diff(raw: bytes) -> list[TreeEntry]:
    """`git diff --raw --no-abbrev -z --no-renames` output: `:old_mode new_mode old_oid new_oid status\\0path\\0` each."""
    fields = raw.split(b"\0")
    entries = []
    for meta, path in zip(fields[::2], fields[1::2]):
        parts = meta.decode("ascii", "replace").split()
        if len(parts) < 5 or not path:
            continue
        mode, oid = parts[1], parts[3]
        kind = "commit" if mode == SUBMODULE_MODE else "blob"
        entries.append(TreeEntry(mode, kind, oid, path.decode("utf-8", "surrogateescape")))
    return entries


class StagedSource(IndexSource):
    """An `IndexSource` that holds only the staged changes, listed from the hook's one diff, and
    reads their blobs through the hook's one `git cat-file --batch` (which read the config too)."""

    def __init__(self, repo: Repo, entries: list[TreeEntry], objects: ObjectReader) -> None:
        super().__init__(repo)
        self._entries.update((e.path, e) for e in entries)
        self.objects = objects

    def _list(self, patterns: list[str]) -> None:
        """Nothing to list: the staged entries were given."""

    def sizes(self, paths: list[str]) -> dict[str, int]:
        return {p: len(self.objects.blob(self._entries[p].oid) or b"") for p in paths}

    def read_many(self, paths: list[str]) -> dict[str, bytes]:
        blobs = {p: self.objects.blob(self._entries[p].oid) for p in paths}
        return {p: data for p, data in blobs.items() if data is not None}
