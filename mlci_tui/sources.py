"""Where params and metrics files are read from: a commit, the index, or the working tree.

Hooks read what git holds (docs/contracts.md: decision 2): a commit capture reads the commit's own
blobs, the pre-commit check reads the staged blobs. Only `mlci record` reads the working
tree. Symlinks and paths that leave the repository are refused everywhere.
"""

from __future__ import annotations

import fnmatch
import os

from mlci_tui.errors import ConfigError, InputError
from mlci_tui.gitio import Repo, TreeEntry, parse_ls_tree

TYPE_CHECKING = False  # not `from typing import ...`: the commit hooks match patterns through this module
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Protocol
else:
    Protocol = object  # FileSource is a structural type for mypy, a plain base at run time

GLOB_CHARS = "*?["


def check_pattern(pattern: str) -> None:
    if pattern.startswith("/") or os.path.isabs(pattern) or ".." in pattern.split("/"):
        raise ConfigError(f"mlci.yaml: {pattern!r}: paths must stay inside the repository")


def literal_prefix(pattern: str) -> str:
    """The directory part of a glob before its first wildcard: what git can list cheaply."""
    cut = min((pattern.find(c) for c in GLOB_CHARS if c in pattern), default=-1)
    if cut < 0:
        return pattern
    head = pattern[:cut]
    return head[: head.rfind("/") + 1]


def matches(pattern: str, path: str) -> bool:
    if not any(c in pattern for c in GLOB_CHARS):
        return path == pattern or path.startswith(pattern.rstrip("/") + "/")
    if "**" in pattern:
        return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.replace("**/", ""))
    return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")


class FileSource(Protocol):
    label: str

    def find(self, patterns: Iterable[str], refused: list[str] | None = None) -> list[str]: ...

    def read_many(self, paths: list[str]) -> dict[str, bytes]: ...

    def sizes(self, paths: list[str]) -> dict[str, int]: ...


class TreeSource:
    """Files of a commit or tree, read from git objects (no checkout)."""

    def __init__(self, repo: Repo, treeish: str, label: str = "commit") -> None:
        self.repo = repo
        self.treeish = treeish
        self.label = label
        self._entries: dict[str, TreeEntry] = {}

    def _list(self, patterns: list[str]) -> None:
        prefixes = sorted({literal_prefix(p) for p in patterns})
        if "" in prefixes:
            prefixes = []
        for entry in self.repo.ls_tree(self.treeish, prefixes, recursive=True):
            self._entries[entry.path] = entry

    def find(self, patterns: Iterable[str], refused: list[str] | None = None) -> list[str]:
        """Paths matching `patterns`. A symlink raises InputError, or with `refused` is
        skipped and its message appended there (a capture that warns and goes on)."""
        patterns = list(patterns)
        for p in patterns:
            check_pattern(p)
        self._list(patterns)
        found = []
        for path, entry in self._entries.items():
            if any(matches(p, path) for p in patterns):
                if entry.mode == "120000":
                    _refuse(InputError(f"{path}: is a symlink; mlci reads no file through a link"), refused)
                    continue
                if entry.kind == "blob":
                    found.append(path)
        return sorted(found)

    def sizes(self, paths: list[str]) -> dict[str, int]:
        oids = {self._entries[p].oid: p for p in paths}
        return {oids[o]: s for o, s in self.repo.blob_sizes(list(oids)).items()}

    def read_many(self, paths: list[str]) -> dict[str, bytes]:
        blobs = self.repo.cat_blobs([self._entries[p].oid for p in paths])
        return {p: blobs[self._entries[p].oid] for p in paths}

    def oid(self, path: str) -> str | None:
        entry = self._entries.get(path)
        return entry.oid if entry else None


class IndexSource(TreeSource):
    """The staged version of files: what the commit being made will hold."""

    def __init__(self, repo: Repo, treeish: str = ":index", label: str = "index") -> None:
        super().__init__(repo, treeish, label)

    def _list(self, patterns: list[str]) -> None:
        prefixes = sorted({literal_prefix(p) for p in patterns})
        if "" in prefixes:
            prefixes = []
        proc = self.repo.run("ls-files", "-s", "-z", "--", *prefixes)
        for item in proc.stdout.split(b"\0"):
            if not item:
                continue
            meta, _, path = item.partition(b"\t")
            mode, oid, _stage = meta.decode().split()
            entry = TreeEntry(mode, "commit" if mode == "160000" else "blob", oid, path.decode())
            self._entries[entry.path] = entry


class WorkdirSource:
    """The working tree, for `mlci record` (metrics are often untracked there)."""

    def __init__(self, root: Path, label: str = "working tree") -> None:
        self.root = root
        self.label = label

    def find(self, patterns: Iterable[str], refused: list[str] | None = None) -> list[str]:
        found: set[str] = set()
        root = self.root.resolve()
        for pattern in patterns:
            check_pattern(pattern)
            if not any(c in pattern for c in GLOB_CHARS):
                candidates = [self.root / pattern]
                if candidates[0].is_dir() and not candidates[0].is_symlink():
                    candidates = [p for p in candidates[0].rglob("*")]
            else:
                candidates = list(self.root.glob(pattern))
            for path in candidates:
                if path.is_symlink():
                    link = path.relative_to(self.root)
                    _refuse(InputError(f"{link}: is a symlink; mlci reads no file through a link"), refused)
                    continue
                if not path.is_file():
                    continue
                resolved = path.resolve()
                if root not in resolved.parents:
                    _refuse(InputError(f"{path}: outside the repository"), refused)
                    continue
                rel = resolved.relative_to(root).as_posix()
                if any(part.is_symlink() for part in path.parents if root in part.resolve().parents):
                    _refuse(InputError(f"{rel}: is inside a symlinked folder; refused"), refused)
                    continue
                found.add(rel)
        return sorted(found)

    def sizes(self, paths: list[str]) -> dict[str, int]:
        return {p: (self.root / p).stat().st_size for p in paths}

    def read_many(self, paths: list[str]) -> dict[str, bytes]:
        return {p: (self.root / p).read_bytes() for p in paths}


def _refuse(error: InputError, refused: list[str] | None) -> None:
    if refused is None:
        raise error
    if str(error) not in refused:
        refused.append(str(error))


def list_tree_paths(repo: Repo, treeish: str, prefix: str) -> list[str]:
    proc = repo.run("ls-tree", "-r", "-z", "--full-tree", "--name-only", treeish, "--", prefix, check=False)
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


__all__ = [
    "FileSource",
    "IndexSource",
    "TreeSource",
    "WorkdirSource",
    "matches",
    "literal_prefix",
    "parse_ls_tree",
    "list_tree_paths",
]
