"""Git objects read through one long-lived `git cat-file --batch` process.

Walking a 1,000-commit history with one `ls-tree` and one `cat-file` process per commit
costs two process starts per commit. Here one process serves every tree and blob, and
subtrees are cached by object id: most commits share nearly all of their trees, so only
the trees a commit changed are read again. `prefetch_paths` fills the caches ahead through
`gitio.Repo.cat_blobs` (one batched process per tree depth).

Why this is not in gitio.py: gitio reads known object ids in one-shot batches (`cat_blobs`),
which is what every other module needs and what the prefetch here uses. The interactive
process, the raw tree parser and the per-id tree cache serve only a walk over many commits'
trees; gitio is imported on the hook path and shared by every module, so the importer keeps
them.
"""

from __future__ import annotations

from collections import OrderedDict

from mlci_tui.errors import GitError
from mlci_tui.gitio import PIPE, GitChild, Repo, parse_raw_tree, start_git
from mlci_tui.values import Frozen

TYPE_CHECKING = False  # not `from typing import ...`: the commit hooks read through this module
if TYPE_CHECKING:
    from typing import IO

TREE_MODE = "40000"
SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"


class Entry(Frozen):
    __slots__ = ("mode", "oid")
    mode: str
    oid: str

    def __init__(self, mode: str, oid: str) -> None:
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "oid", oid)

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE

    @property
    def is_blob(self) -> bool:
        return self.mode not in (TREE_MODE, SYMLINK_MODE, GITLINK_MODE)


class ObjectReader:
    """Trees and blobs by id; trees parsed once and kept (they are small and shared)."""

    def __init__(self, repo: Repo, blob_cache: int = 4096) -> None:
        self.repo = repo
        self._proc: GitChild | None = None
        self._trees: dict[str, dict[str, Entry]] = {}
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._blob_cache = blob_cache

    @property
    def blob_capacity(self) -> int:
        return self._blob_cache

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait()
            self._proc.stdout.close()
            self._proc = None

    def _read(self, oid: str) -> tuple[str, bytes] | None:
        got = self.read(oid)
        return None if got is None else (got[1], got[2])

    def read(self, name: str) -> tuple[str, str, bytes] | None:
        """(object id, type, bytes) of any name `git cat-file` resolves (`HEAD^{commit}`,
        `REF:path`, an id); None when it names nothing. Capture resolves its revisions here,
        in the one process, instead of a `git rev-parse` each."""
        if "\n" in name:
            return None
        if self._proc is None:
            self._proc = start_git(["cat-file", "--batch"], self.repo.toplevel, stdin=PIPE)
        stdin: IO[bytes] | None = self._proc.stdin
        stdout: IO[bytes] | None = self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
        stdin.flush()
        header = stdout.readline()
        if not header:
            raise GitError("git cat-file stopped unexpectedly")
        parts = header.split()
        if len(parts) != 3 or not parts[2].isdigit():
            return None  # "<name> missing" (or ambiguous; a name may hold spaces): not in this clone
        size = int(parts[2])
        data = stdout.read(size + 1)[:size]
        return parts[0].decode(), parts[1].decode(), data

    def blob(self, oid: str) -> bytes | None:
        cached = self._blobs.get(oid)
        if cached is not None:
            self._blobs.move_to_end(oid)
            return cached
        got = self._read(oid)
        if got is None or got[0] != "blob":
            return None
        self._remember(oid, got[1])
        return got[1]

    def _remember(self, oid: str, data: bytes) -> None:
        self._blobs[oid] = data
        if len(self._blobs) > self._blob_cache:
            self._blobs.popitem(last=False)

    def tree(self, oid: str) -> dict[str, Entry]:
        """Name → entry of one tree object (not recursive); a commit id gives its root tree."""
        cached = self._trees.get(oid)
        if cached is not None:
            return cached
        got = self._read(oid)
        if got is None:
            return {}
        kind, data = got
        if kind == "commit":
            line = data.split(b"\n", 1)[0]
            root = line.split()[1].decode() if line.startswith(b"tree ") else ""
            entries = self.tree(root) if root else {}
            self._trees[oid] = entries
            return entries
        if kind != "tree":
            return {}
        entries = parse_tree(data)
        self._trees[oid] = entries
        return entries

    def prefetch_paths(self, roots: list[str], paths: list[str]) -> None:
        """Read the trees and blobs at `paths` under every root tree, one batch per tree depth.

        One `git cat-file --batch --buffer` process per level instead of one round trip per
        object: a history's commits mostly differ in the same few files.
        """
        pending = [(root, path.split("/")) for root in roots for path in paths]
        blobs: list[str] = []
        while pending:
            missing = list(dict.fromkeys(tree for tree, _ in pending if tree not in self._trees))
            if missing:
                found = self.repo.cat_blobs(missing)
                for oid in missing:
                    data = found.get(oid)
                    self._trees[oid] = parse_tree(data) if data is not None else {}
            following = []
            for tree, parts in pending:
                entry = self._trees[tree].get(parts[0])
                if entry is None:
                    continue
                if len(parts) == 1:
                    if entry.is_blob and entry.oid not in self._blobs:
                        blobs.append(entry.oid)
                elif entry.is_tree:
                    following.append((entry.oid, parts[1:]))
            pending = following
        blobs = list(dict.fromkeys(blobs))[: self._blob_cache]
        for oid, data in self.repo.cat_blobs(blobs).items():
            self._remember(oid, data)

    def lookup(self, root: str, path: str) -> Entry | None:
        """The entry at `path` (slash-separated) under tree or commit `root`."""
        entries = self.tree(root)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None
        for part in parts[:-1]:
            entry = entries.get(part)
            if entry is None or not entry.is_tree:
                return None
            entries = self.tree(entry.oid)
        return entries.get(parts[-1])

    def walk(self, root: str, prefix: str = "") -> list[tuple[str, Entry]]:
        """Every blob under `prefix` (a folder path, or '' for the whole tree), sorted by path."""
        if prefix:
            top = self.lookup(root, prefix.rstrip("/"))
            if top is None:
                return []
            if not top.is_tree:
                return [(prefix.rstrip("/"), top)]
            start = top.oid
            base = prefix.rstrip("/") + "/"
        else:
            start, base = root, ""
        out: list[tuple[str, Entry]] = []
        stack = [(start, base)]
        while stack:
            tree, at = stack.pop()
            for name, entry in self.tree(tree).items():
                if entry.is_tree:
                    stack.append((entry.oid, f"{at}{name}/"))
                else:
                    out.append((f"{at}{name}", entry))
        return sorted(out)


def parse_tree(data: bytes) -> dict[str, Entry]:
    """A raw tree object: name → entry."""
    return {name: Entry(mode, oid) for mode, name, oid in parse_raw_tree(data)}
