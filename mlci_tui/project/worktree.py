"""The working tree seen as git objects, so the one DVC reader reads what is on disk.

`mlci init` runs before the DVC files are committed, often: it asks `DvcReader` what
`dvc.yaml` declares through this stand-in for `ObjectReader`, whose object ids are paths.
Only what git would see is listed (tracked files and untracked ones not ignored), so a
declared file that exists but is ignored is told apart from one that is committed.
"""

from __future__ import annotations

from mlci_tui.gitio import Repo
from mlci_tui.importers.objects import TREE_MODE, Entry, ObjectReader

ROOT = "."
MAX_READ = 1024 * 1024  # DVC files and params files are small; a larger file is not read here


class WorktreeObjects(ObjectReader):
    """Trees and blobs of the working tree: a tree's id is its folder path (`.` the top)."""

    def __init__(self, repo: Repo) -> None:
        super().__init__(repo)
        self._dirs: dict[str, dict[str, Entry]] = {ROOT: {}}
        proc = repo.run("ls-files", "-z", "--cached", "--others", "--exclude-standard")
        for path in sorted(set(proc.stdout.decode("utf-8", "surrogateescape").split("\0"))):
            full = repo.root / path
            if not path or full.is_symlink() or not full.is_file():
                continue
            parts = path.split("/")
            for i in range(len(parts) - 1):
                folder = "/".join(parts[: i + 1])
                self._dirs.setdefault("/".join(parts[:i]) or ROOT, {})[parts[i]] = Entry(TREE_MODE, folder)
                self._dirs.setdefault(folder, {})
            self._dirs.setdefault("/".join(parts[:-1]) or ROOT, {})[parts[-1]] = Entry("100644", path)

    def tree(self, oid: str) -> dict[str, Entry]:
        return self._dirs.get(oid, {})

    def blob(self, oid: str) -> bytes | None:
        path = self.repo.root / oid
        try:
            if path.stat().st_size > MAX_READ:
                return None
            return path.read_bytes()
        except OSError:
            return None

    def prefetch_paths(self, roots: list[str], paths: list[str]) -> None:
        return None
