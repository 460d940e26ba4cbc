"""Where a dataset version's bytes come from: the working tree, the index, or a commit.

A file tracked in git directly is read from its blob (written to a temp file for DuckDB;
its content id is the blob id). A dataset with a pointer file `PATH.mlci` is read from the
local data cache (content id `<algo>:<hash>`). In the working tree, a plain file is read in
place. Symlinks and paths leaving the repository are refused (usage errors).

A dataset whose path is a folder is one table: its data files (`Shard`s) of one format, in
sorted order. Its content id is stable: the pointer's manifest hash (an mlci folder pointer,
a `.dvc` file or a `dvc.lock` output), or for a folder tracked in git directly its tree id
(`git:<tree>`, computed the way git would, also for the index and the working tree).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo

if TYPE_CHECKING:
    from mlci_tui.data.pointer import Pointer

WORKTREE = "working tree"
INDEX = "index"
POINTER_SUFFIX = ".mlci"


class Unavailable(CheckFailed):
    """The version's content is named but not here (a pointer whose object is not cached)."""


class Absent(Unavailable):
    """The version holds neither the dataset nor its pointer."""


@dataclass(frozen=True)
class Shard:
    """One data file of a folder dataset."""

    path: str  # repo-relative: names the file in messages and failure samples
    local: Path  # the file DuckDB reads (in place, a cache object, or a blob's temp copy)
    size: int


@dataclass
class Content:
    path: str  # the dataset's repo-relative path
    local: Path  # the file DuckDB reads (a folder dataset: the folder, or where its files are)
    content_hash: str  # git:<blob or tree id> or <algo>:<hash>
    rev: str  # "working tree", "index" or a commit id
    size: int
    via: str  # file, git, pointer or dvc
    files: list[Shard] | None = None  # a folder dataset: its data files, in the order they are read
    format: str | None = None  # a folder dataset: the format of its data files (None: it has none)

    @property
    def is_folder(self) -> bool:
        return self.files is not None

    @property
    def read(self) -> Path | list[Path]:
        """What DuckDB reads: the file, or a folder's data files in order."""
        return self.local if self.files is None else [f.local for f in self.files]


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


def _parse_pointer(text: bytes, pointer_path: str) -> Pointer:
    from mlci_tui.data.pointer import parse_pointer

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{pointer_path}: not a pointer file (not UTF-8 text)") from None
    return parse_pointer(decoded, pointer_path)


def _pointer(repo: Repo, pointer: Pointer, path: str, rev: str, *, need_cache: bool = True) -> Content:
    from mlci_tui.data.cache import DataCache

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


def version_at(repo: Repo, rev: str | None) -> str:
    """Where `--rev REV` reads a dataset: that commit's id, or WORKTREE without a REV."""
    if rev is None:
        return WORKTREE
    commit = repo.commit_of(rev)
    if commit is None:
        raise InputError(f"--rev {rev}: not a commit in this repository")
    return commit


def resolve(repo: Repo, path: str, where: str, scratch: Path, fmt: str | None = None) -> Content:
    """The version of dataset `path` at `where` (WORKTREE, INDEX or a commit id).

    `fmt` is the dataset's declared format: for a folder, which of its files are data (None:
    the format its data files share)."""
    pointer_path = path + POINTER_SUFFIX
    if where == WORKTREE:
        ptr = worktree_path(repo, pointer_path)
        if ptr.is_file():
            pointer = _parse_pointer(ptr.read_bytes(), pointer_path)
            if pointer.is_dir:
                return _worktree_pointer_folder(repo, pointer, fmt)
            content = _pointer(repo, pointer, path, where, need_cache=False)
            edited = _edited_worktree_data(repo, path, content)
            return edited or _require_cached(repo, content)
        full = worktree_path(repo, path)
        if full.is_dir():
            dvc = _dvc_pointer(repo, path, WORKTREE)
            if dvc is not None and dvc.is_dir:
                return _worktree_pointer_folder(repo, dvc, fmt)
            return _worktree_folder(repo, path, fmt)
        if not full.exists():
            dvc = _dvc_pointer(repo, path, WORKTREE)
            if dvc is not None:
                return _cached_pointer_data(repo, dvc, where, fmt)
            raise InputError(f"{path}: no such file or folder in the working tree (nor a pointer {pointer_path})")
        if not full.is_file():
            raise InputError(f"{path}: not a file or folder; validation reads csv, parquet or jsonl data")
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
            pointer = _parse_pointer(repo.cat_blobs([oid]).get(oid, b""), pointer_path)
            if pointer.is_dir:
                return _cached_pointer_data(repo, pointer, where, fmt)
            return _pointer(repo, pointer, path, where)
        if mode == "040000":
            return _git_folder(repo, path, where, oid, scratch, fmt)
        in_place = _worktree_copy_of(repo, path, oid)
        if in_place is not None:
            return Content(path, in_place, f"git:{oid}", where, in_place.stat().st_size, "file")
        suffix = Path(path).suffix
        target = scratch / f"{oid}{suffix}"
        size = target.stat().st_size if target.exists() else _blob_to_file(repo, oid, target)
        return Content(path, target, f"git:{oid}", where, size, "git")
    if where == INDEX and _folder_entries(repo, INDEX, path):
        return _git_folder(repo, path, where, None, scratch, fmt)
    dvc = _dvc_pointer(repo, path, where)
    if dvc is not None:
        return _cached_pointer_data(repo, dvc, where, fmt)
    raise Absent(f"{path}: not in {label} (neither the file nor {pointer_path})")


# ------------------------------------------------------------------------------ folders
# a folder's data files by extension; other files (_SUCCESS, .crc, README) are not data
DATA_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
TEXT_TABLES = {"csv", "tsv"}  # one reader: a declared csv reads .tsv files too (its delimiter is configured)


def _file_format(name: str) -> str | None:
    return DATA_SUFFIXES.get(Path(name).suffix.lower())


def select_shards(folder: str, names: list[str], declared: str | None) -> tuple[str | None, list[str]]:
    """A folder's data files (names relative to it), sorted, and their format.

    Files and folders named `_*` or `.*` are a writer's bookkeeping (`_SUCCESS`, `_metadata`,
    `.part-0.parquet.crc`, `_temporary/`), never data. Data files of two formats are a usage
    error naming both; so is a declared format the data files do not have."""
    by_format: dict[str, list[str]] = {}
    for name in names:
        if any(part.startswith(("_", ".")) for part in name.split("/")):
            continue
        found = _file_format(name)
        if found is not None:
            by_format.setdefault(found, []).append(name)
    if len(by_format) > 1:
        (fa, a), (fb, b) = sorted(by_format.items())[:2]
        raise InputError(
            f"{folder}: holds data files of two formats ({folder}/{min(a)} is {fa}, {folder}/{min(b)} is {fb});"
            " a folder dataset is one table of one format: move the others out"
        )
    found = next(iter(by_format), None)
    if declared and found and found != declared and not {found, declared} <= TEXT_TABLES:
        raise InputError(
            f"{folder}: declared format {declared}, but its data files are {found} (e.g. {folder}/{min(by_format[found])})"
        )
    return declared or found, sorted(by_format.get(found, [])) if found else []


def _folder_entries(repo: Repo, where: str, path: str) -> dict[str, tuple[str, str]]:
    """name inside the folder -> (mode, oid) of every file under folder `path` in the index or a commit."""
    prefix = path + "/"
    out: dict[str, tuple[str, str]] = {}
    if where == INDEX:
        proc = repo.run("ls-files", "-s", "-z", "--", prefix, check=False)
        for item in proc.stdout.split(b"\0"):
            if item:
                meta, _, name = item.partition(b"\t")
                mode, oid, stage = meta.decode().split()
                rel = name.decode("utf-8", "surrogateescape")
                if rel.startswith(prefix) and stage == "0":
                    out[rel[len(prefix) :]] = (mode, oid)
    else:
        for entry in repo.ls_tree(where, [prefix], recursive=True):
            if entry.path.startswith(prefix):
                out[entry.path[len(prefix) :]] = (entry.mode, entry.oid)
    return out


def tree_id(entries: dict[str, tuple[str, str]]) -> str:
    """The id git gives the tree holding `entries` (name -> (mode, oid), names with `/` in
    subfolders), computed without writing any object: the same folder content gets the same
    id in the working tree, the index and a commit."""
    root: dict[str, object] = {}
    for name, value in entries.items():
        node = root
        parts = name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[parts[-1]] = value
    algo = "sha256" if entries and len(next(iter(entries.values()))[1]) == 64 else "sha1"

    def digest(node: dict[str, object]) -> str:
        items: list[tuple[bytes, bytes]] = []
        for name, value in node.items():
            raw = name.encode("utf-8", "surrogateescape")
            if isinstance(value, dict):
                items.append((raw + b"/", b"40000 " + raw + b"\0" + bytes.fromhex(digest(value))))
            else:
                mode, oid = cast("tuple[str, str]", value)
                items.append((raw, mode.lstrip("0").encode() + b" " + raw + b"\0" + bytes.fromhex(oid)))
        body = b"".join(entry for _key, entry in sorted(items))
        h = hashlib.new(algo)
        h.update(b"tree %d\0" % len(body))
        h.update(body)
        return h.hexdigest()

    return digest(root)


def _git_folder(repo: Repo, path: str, where: str, tree: str | None, scratch: Path, fmt: str | None) -> Content:
    """A folder tracked in git directly, at INDEX or a commit: its data blobs copied to scratch."""
    label = where if where == INDEX else where[:12]
    entries = _folder_entries(repo, where, path)
    for name, (mode, _oid) in sorted(entries.items()):
        if mode == "120000":
            raise InputError(f"{path}/{name}: is a symlink in {label}; mlci reads no data through a link")
        if mode == "160000":
            raise InputError(f"{path}/{name}: is a submodule, not data")
    found, names = select_shards(path, list(entries), fmt)
    tree = tree or tree_id(entries)
    base = scratch / f"tree-{tree}"
    missing = [n for n in names if not (base / n).is_file()]
    for start in range(0, len(missing), 256):
        chunk = missing[start : start + 256]
        blobs = repo.cat_blobs([entries[n][1] for n in chunk])
        for n in chunk:
            target = base / n
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blobs.get(entries[n][1], b""))
    shards = [Shard(f"{path}/{n}", base / n, (base / n).stat().st_size) for n in names]
    return Content(path, base, f"git:{tree}", where, sum(s.size for s in shards), "git", shards, found)


def _worktree_folder(repo: Repo, path: str, fmt: str | None) -> Content:
    """A plain folder in the working tree, read in place; its id is the tree id git would give
    it (blob ids from the index for files git sees unchanged, hashed for the others)."""
    from mlci_tui.data.workspace import walk_folder

    full = worktree_path(repo, path)
    files = walk_folder(repo.root, path)  # refuses any symlink in the folder
    index = _folder_entries(repo, INDEX, path)
    proc = repo.run("diff-files", "--name-only", "-z", "--", path + "/", check=False)
    dirty = {p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p}
    entries: dict[str, tuple[str, str]] = {}
    rehash = []
    for name, st in files:
        if name in index and f"{path}/{name}" not in dirty and index[name][0] in ("100644", "100755"):
            entries[name] = index[name]
        else:
            rehash.append((name, "100755" if st.st_mode & 0o100 else "100644"))
    if rehash:
        listing = "".join(f"{path}/{name}\n" for name, _mode in rehash).encode("utf-8", "surrogateescape")
        oids = repo.run("hash-object", "--stdin-paths", input=listing).stdout.decode().split()
        for (name, mode), oid in zip(rehash, oids):
            entries[name] = (mode, oid)
    found, names = select_shards(path, [n for n, _st in files], fmt)
    sizes = dict(files)
    shards = [Shard(f"{path}/{n}", full / n, sizes[n].st_size) for n in names]
    tree = tree_id(entries)
    return Content(path, full, f"git:{tree}", WORKTREE, sum(s.size for s in shards), "file", shards, found)


def _dvc_pointer(repo: Repo, path: str, where: str) -> Pointer | None:
    """The output named `path` of `PATH.dvc` or of a `dvc.lock` in one of its parent folders."""
    from mlci_tui.data.dvc import read_dvc_pointers

    parts = path.split("/")
    names = [path + ".dvc"] + ["/".join([*parts[:i], "dvc.lock"]) for i in range(len(parts) - 1, -1, -1)]
    texts: dict[str, bytes] = {}
    if where == WORKTREE:
        for name in names:
            try:
                full = worktree_path(repo, name)
            except InputError:
                continue
            if full.is_file():
                texts[name] = full.read_bytes()
    else:
        entries = _entries(repo, where, names)
        blobs = repo.cat_blobs([oid for mode, oid in entries.values() if mode in ("100644", "100755")])
        texts = {n: blobs[oid] for n, (_mode, oid) in entries.items() if oid in blobs}
    for name in names:
        if name in texts:
            for pointer in read_dvc_pointers(texts[name].decode("utf-8", "replace"), name):
                if pointer.path == path:
                    return pointer
    return None


def _dvc_object(root: Path, digest: str) -> Path | None:
    from mlci_tui.data.dvc import DVC_CACHE_DIRS

    for folder in DVC_CACHE_DIRS:
        candidate = root / folder / digest[:2] / digest[2:]
        if candidate.is_file():
            return candidate
    return None


def _cached_pointer_data(repo: Repo, pointer: Pointer, rev: str, fmt: str | None) -> Content:
    """A pointer's version read from the cache that holds it: mlci's (`.mlci/cache`) or DVC's
    (`.dvc/cache`), objects read in place. Unavailable when the listing or a data file is not there."""
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.dvc import dvc_manifest

    path, label = pointer.path, rev if rev in (WORKTREE, INDEX) else rev[:12]
    fetch = "run `mlci data pull`" if pointer.origin == "mlci" else "run `dvc pull`"
    if not pointer.is_dir:  # a DVC-tracked file (an mlci pointer to a file takes `_pointer`)
        obj = _dvc_object(repo.root, pointer.hash)
        if obj is None:
            raise Unavailable(f"{path}: content {pointer.content_id[:20]} ({label}) is not in DVC's cache; {fetch}")
        return Content(path, obj, pointer.content_id, rev, obj.stat().st_size, "dvc")
    cache = DataCache.for_repo(repo.root)
    if pointer.origin == "mlci":
        manifest = cache.manifest(pointer.hash) if cache.has(pointer.hash) else None
    else:
        manifest = dvc_manifest(repo.root, pointer.hash)
    if manifest is None:
        raise Unavailable(
            f"{path}: folder {pointer.content_id[:20]} ({label}): its file listing is not in the local cache; {fetch}"
        )
    by_name = {n: (h, size) for n, h, size in manifest}
    found, names = select_shards(path, list(by_name), fmt)
    shards = []
    for n in names:
        digest, size = by_name[n]
        obj = cache.object_path(digest) if pointer.origin == "mlci" and cache.has(digest) else None
        obj = obj or (_dvc_object(repo.root, digest) if pointer.origin != "mlci" else None)
        if obj is None:
            raise Unavailable(
                f"{path}/{n}: file of folder {pointer.content_id[:20]} ({label}) is not in the local cache; {fetch}"
            )
        shards.append(Shard(f"{path}/{n}", obj, size))
    via = "pointer" if pointer.origin == "mlci" else "dvc"
    local = cache.root if pointer.origin == "mlci" else repo.root / ".dvc" / "cache"
    return Content(path, local, pointer.content_id, rev, sum(s.size for s in shards), via, shards, found)


def _worktree_pointer_folder(repo: Repo, pointer: Pointer, fmt: str | None) -> Content:
    """A pointer's folder in the working tree: read in place. Its id is the pointer's when its
    files are the ones the pointer lists (a stat signature or the stat cache spares re-hashing),
    else the manifest hash `mlci data add` would record for it. No folder here: the cached version."""
    from mlci_tui.data.cache import DataCache, manifest_bytes
    from mlci_tui.data.dvc import dvc_manifest
    from mlci_tui.data.hashing import StatCache, hash_bytes, signature
    from mlci_tui.data.status import folder_hashes
    from mlci_tui.data.workspace import walk_folder

    path = pointer.path
    full = worktree_path(repo, path)
    if not full.is_dir():
        if full.exists():
            raise InputError(f"{path}: its pointer names a folder, but the working tree holds a file here")
        return _cached_pointer_data(repo, pointer, WORKTREE, fmt)
    cache = DataCache.for_repo(repo.root)
    files = walk_folder(repo.root, path, allow_links=True)  # links: checked to lead into the cache below
    stat_cache = StatCache(repo.state_dir)
    try:
        sig = signature(files)
        same = stat_cache.folder_matches(path, pointer.algo, pointer.hash, sig) and not any(
            os.path.islink(full / n) for n, _st in files
        )
        if not same:
            present = folder_hashes(repo.root, path, pointer.algo, stat_cache, cache, files) or {}
            if pointer.origin == "mlci":
                listed = cache.manifest(pointer.hash) if cache.has(pointer.hash) else None
            else:
                listed = dvc_manifest(repo.root, pointer.hash)
            same = listed is not None and {n: h for n, h, _s in listed} == present
        content_hash = pointer.content_id
        if not same:  # edited (or not comparable): what `mlci data add` would name it
            hashes = folder_hashes(repo.root, path, "blake3", stat_cache, cache, files) or {}
            rows = [(n, hashes[n], os.stat(full / n).st_size) for n, _st in files]
            content_hash = "blake3:" + hash_bytes(manifest_bytes(rows), "blake3")
    finally:
        stat_cache.save()
    found, names = select_shards(path, [n for n, _st in files], fmt)
    shards = [Shard(f"{path}/{n}", full / n, os.stat(full / n).st_size) for n in names]
    return Content(path, full, content_hash, WORKTREE, sum(s.size for s in shards), "file", shards, found)


def touches(path: str, staged: list[str]) -> bool:
    """Whether a staged change concerns dataset `path`: its file, its pointer (`.mlci` or
    `.dvc`), a `dvc.lock` in a folder above it (it may name the path as an output), or (a
    folder) a file under it."""
    prefix = path + "/"
    pointers = {path, path + POINTER_SUFFIX, path + ".dvc", *_dvc_locks(path)}
    return any(p in pointers or p.startswith(prefix) for p in staged)


def _dvc_locks(path: str) -> list[str]:
    """The `dvc.lock` files that could name `path` as a stage output: one in each folder above it."""
    parts = path.split("/")[:-1]
    return [posixpath.join(*parts[:i], "dvc.lock") for i in range(len(parts) + 1)]


def present(repo: Repo, where: str, paths: list[str]) -> set[str]:
    """Which datasets `paths` the index (INDEX) or a commit holds: as a file, a pointer, a DVC
    record, or a folder with files in it. (A dataset a commit deletes has nothing to check.)"""
    wanted = []
    for p in paths:
        wanted += [p, p + POINTER_SUFFIX, p + ".dvc", *_dvc_locks(p)]
    if where == INDEX:
        proc = repo.run("ls-files", "-z", "--", *wanted, check=False)
    else:
        proc = repo.run("ls-tree", "-r", "-z", "--name-only", "--full-tree", where, "--", *wanted, check=False)
    names = [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return {p for p in paths if touches(p, names)}


def clean_scratch(scratch: Path) -> None:
    import shutil

    for child in scratch.glob("*"):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)  # a folder's blobs (tree-<id>/)
            continue
        try:
            os.unlink(child)
        except OSError:
            pass
