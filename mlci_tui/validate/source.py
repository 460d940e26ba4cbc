"""Where a dataset version's bytes come from: the working tree, the index, or a commit.

A file tracked in git directly is read from its blob (written to a temp file for DuckDB;
its content id is the blob id). A dataset with a pointer file `PATH.mlci` is read from the
local data cache (content id `<algo>:<hash>`). In the working tree, a plain file is read in
place. Symlinks and paths leaving the repository are refused (usage errors).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo

WORKTREE = "working tree"
INDEX = "index"
POINTER_SUFFIX = ".mlci"


class Unavailable(CheckFailed):
    """The version's content is named but not here (a pointer whose object is not cached)."""


class Absent(Unavailable):
    """The version holds neither the dataset nor its pointer."""


@dataclass
class Content:
    path: str  # the dataset's repo-relative path
    local: Path  # the file DuckDB reads
    content_hash: str  # git:<blob id> or <algo>:<hash>
    rev: str  # "working tree", "index" or a commit id
    size: int
    via: str  # file, git or pointer


def _entries(repo: Repo, where: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """path -> (mode, oid) in the index or a commit."""
    out: dict[str, tuple[str, str]] = {}
    if where == INDEX:
        proc = repo.run("ls-files", "-s", "-z", "--", *paths, check=False)
        for item in proc.stdout.split(b"\0"):
            if item:
                meta, _, name = item.partition(b"\t")
                mode, oid, _stage = meta.decode().split()
                out[name.decode("utf-8", "surrogateescape")] = (mode, oid)
    else:
        for entry in repo.ls_tree(where, paths):
            out[entry.path] = (entry.mode, entry.oid)
    return {p: v for p, v in out.items() if p in paths}


def _edited_worktree_data(repo: Repo, path: str, tracked: Content) -> Content | None:
    """The working-tree file of a pointer dataset when it differs from what the pointer names.

    What a user validates before `mlci data add` is the file they edited, not the version the
    pointer still names. Unchanged files are recognised by the data stat cache (no re-hash).
    """
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.hashing import StatCache
    from mlci_tui.data.status import file_hash

    full = worktree_path(repo, path)
    if not full.is_file():
        return None
    algo, _, digest = tracked.content_hash.partition(":")
    stat_cache = StatCache(repo.state_dir)
    try:
        current = file_hash(repo.root, path, algo, stat_cache, DataCache.for_repo(repo.root))
    finally:
        stat_cache.save()
    if current is None or current == digest:
        return None
    return Content(path, full, f"{algo}:{current}", WORKTREE, full.stat().st_size, "file")


def _require_cached(repo: Repo, content: Content) -> Content:
    from mlci_tui.data.cache import DataCache

    digest = content.content_hash.partition(":")[2]
    if not DataCache.for_repo(repo.root).has(digest):
        raise Unavailable(
            f"{content.path}: content {content.content_hash[:20]} ({content.rev}) is not in the local data cache;"
            " run `mlci data pull`"
        )
    return content


def _pointer(repo: Repo, text: bytes, pointer_path: str, path: str, rev: str, *, need_cache: bool = True) -> Content:
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.pointer import parse_pointer

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{pointer_path}: not a pointer file (not UTF-8 text)") from None
    pointer = parse_pointer(decoded, pointer_path)
    if pointer.is_dir:
        raise InputError(f"{pointer_path}: names a folder; validation reads single files (csv, parquet, jsonl)")
    cache = DataCache.for_repo(repo.root)
    content_hash = pointer.content_id
    content = Content(path, cache.object_path(pointer.hash), content_hash, rev, pointer.size, "pointer")
    return _require_cached(repo, content) if need_cache else content


def _blob_to_file(repo: Repo, oid: str, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        proc = subprocess.run(["git", "cat-file", "blob", oid], cwd=repo.root, stdout=out, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise InputError(f"cannot read git object {oid[:12]}: {proc.stderr.decode('utf-8', 'replace').strip()}")
    return target.stat().st_size


def worktree_path(repo: Repo, path: str) -> Path:
    """The working-tree file of `path`, refusing symlinks (along the way too) and escapes."""
    root = repo.root.resolve()
    full = repo.root / path
    probe = repo.root
    for part in Path(path).parts:
        probe = probe / part
        if probe.is_symlink():
            raise InputError(f"{path}: {probe.relative_to(repo.root)} is a symlink; mlci reads no data through a link")
    resolved = full.resolve()
    if root != resolved and root not in resolved.parents:
        raise InputError(f"{path}: outside the repository")
    return full


# Below this size a blob is copied / a file hashed outright: the checks that avoid it cost a few git processes.
LARGE = 8 * 2**20


def _index_oid_if_clean(repo: Repo, path: str) -> str | None:
    """The index's blob id of `path` when the working-tree file is known to hold exactly it.

    `git diff-files` compares the file's stat data with the index entry (and the content when
    the entry is racily clean), so a large unchanged file is not read to learn its id."""
    entries = _entries(repo, INDEX, [path])
    if path not in entries or entries[path][0] not in ("100644", "100755"):
        return None
    if repo.run("diff-files", "--quiet", "--", path, check=False).returncode != 0:
        return None
    return entries[path][1]


def _worktree_copy_of(repo: Repo, path: str, oid: str) -> Path | None:
    """The working-tree file, when it holds the same bytes as blob `oid` (so DuckDB reads it in
    place instead of a temp copy of the blob): it is unchanged against the index entry, which
    names `oid`, its size is the blob's, and no clean/smudge filter or line-end conversion
    applies to it. Only for large blobs; None otherwise."""
    try:
        full = worktree_path(repo, path)
        if not full.is_file() or full.stat().st_size < LARGE:
            return None  # a small file (the hook's usual case) costs no git process here
    except (InputError, OSError):
        return None
    size = repo.run("cat-file", "-s", oid, check=False)
    if size.returncode != 0 or full.stat().st_size != int(size.stdout or -1) or _index_oid_if_clean(repo, path) != oid:
        return None
    attrs = repo.text("check-attr", "filter", "text", "eol", "--", path, check=False)
    if any(not line.endswith((": unspecified", ": unset")) for line in attrs.splitlines()):
        return None
    return full


def resolve(repo: Repo, path: str, where: str, scratch: Path) -> Content:
    """The version of dataset `path` at `where` (WORKTREE, INDEX or a commit id)."""
    pointer_path = path + POINTER_SUFFIX
    if where == WORKTREE:
        ptr = worktree_path(repo, pointer_path)
        if ptr.is_file():
            content = _pointer(repo, ptr.read_bytes(), pointer_path, path, where, need_cache=False)
            edited = _edited_worktree_data(repo, path, content)
            return edited or _require_cached(repo, content)
        full = worktree_path(repo, path)
        if not full.exists():
            raise InputError(f"{path}: no such file in the working tree (nor a pointer {pointer_path})")
        if not full.is_file():
            raise InputError(f"{path}: not a file; validation reads single files (csv, parquet, jsonl)")
        size = full.stat().st_size
        oid = (_index_oid_if_clean(repo, path) if size >= LARGE else None) or repo.text(
            "hash-object", "--", path
        ).strip()
        return Content(path, full, f"git:{oid}", where, size, "file")
    entries = _entries(repo, where, [path, pointer_path])
    label = where if where == INDEX else where[:12]
    for name in (pointer_path, path):
        if name not in entries:
            continue
        mode, oid = entries[name]
        if mode == "120000":
            raise InputError(f"{name}: is a symlink in {label}; mlci reads no data through a link")
        if mode == "160000":
            raise InputError(f"{name}: is a submodule, not a dataset")
        if name == pointer_path:
            return _pointer(repo, repo.cat_blobs([oid]).get(oid, b""), pointer_path, path, where)
        in_place = _worktree_copy_of(repo, path, oid)
        if in_place is not None:
            return Content(path, in_place, f"git:{oid}", where, in_place.stat().st_size, "file")
        suffix = Path(path).suffix
        target = scratch / f"{oid}{suffix}"
        size = target.stat().st_size if target.exists() else _blob_to_file(repo, oid, target)
        return Content(path, target, f"git:{oid}", where, size, "git")
    raise Absent(f"{path}: not in {label} (neither the file nor {pointer_path})")


def staged_dataset_paths(repo: Repo, paths: list[str]) -> list[str]:
    """Which of the datasets `paths` have staged content that differs from HEAD."""
    wanted = []
    for p in paths:
        wanted += [p, p + POINTER_SUFFIX]
    proc = repo.run("diff", "--cached", "--name-only", "-z", "--no-renames", "--", *wanted, check=False)
    changed = {p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p}
    return [p for p in paths if p in changed or p + POINTER_SUFFIX in changed]


def clean_scratch(scratch: Path) -> None:
    for child in scratch.glob("*"):
        try:
            os.unlink(child)
        except OSError:
            pass
