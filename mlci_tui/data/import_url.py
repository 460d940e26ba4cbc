"""`mlci data import-url URL PATH` and `mlci data update [PATH...]`: datasets that come from elsewhere.

The content is fetched through fsspec (http(s), s3, gs, az, local paths, memory) into a temp
file under `.git/mlci/`, then tracked exactly as `mlci data add` tracks a file (`add_paths`
with `fetched=`), and the pointer records where it came from (`source_url`) and which
version of the source it was (`source_version`): the ETag when the source gives one, else
its modification time, else `hash:` of the content. `update` asks the source for that
version first and downloads only when it changed; a source without an ETag or mtime is
downloaded and compared by hash. Nothing is replaced until the download is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci_tui.data.add import add_paths, data_settings
from mlci_tui.data.config_schema import secret_in_url
from mlci_tui.data.hashing import hash_bytes, hash_file
from mlci_tui.data.pointer import POINTER_SUFFIX, Pointer
from mlci_tui.data.status import select, workspace_pointers
from mlci_tui.data.workspace import read_pointer_file, repo_relpath
from mlci_tui.errors import CheckFailed, InputError, first_line
from mlci_tui.sanitize import display

VERSION_KEYS = (("ETag", "etag"), ("etag", "etag"), ("VersionId", "version"), ("generation", "generation"))
MTIME_KEYS = ("Last-Modified", "LastModified", "last_modified", "mtime", "updated", "modified")


@dataclass
class Change:
    path: str
    url: str
    status: str  # added, updated, unchanged
    old_version: str | None = None
    new_version: str | None = None
    old_hash: str | None = None
    new_hash: str | None = None
    old_size: int | None = None
    new_size: int | None = None

    def line(self) -> str:
        if self.status == "added":
            return f"{self.path}: imported from {self.url} ({self.new_size:,} bytes, {self.new_version})"
        if self.status == "unchanged":
            return f"{self.path}: unchanged ({self.new_version or self.old_version})"
        parts = [f"{self.path}: updated from {self.url}"]
        if self.old_version != self.new_version:
            parts.append(f"version {self.old_version} -> {self.new_version}")
        if self.old_hash != self.new_hash:
            parts.append(f"hash {(self.old_hash or '-')[:12]} -> {(self.new_hash or '-')[:12]}")
        if self.old_size != self.new_size:
            parts.append(f"size {self.old_size:,} -> {self.new_size:,} bytes")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_url(url: str) -> str:
    """A URL whose text may be committed: no user info, no signed query, a scheme fsspec knows."""
    why = secret_in_url(url)
    if why:
        raise InputError(
            f"{display(url[:80])}: {why}; the URL is committed in the pointer file: "
            "give credentials through the environment instead"
        )
    return url


def _fs(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - a core dependency
        raise InputError("fsspec is not installed") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
        return fs, str(path)
    except (ImportError, ValueError) as exc:
        raise InputError(f"{display(url)}: cannot open this URL: {display(str(exc))}") from None


def source_version(info: dict[str, Any]) -> str | None:
    """The version the source reports for an object: ETag (or version id), else mtime; None without one."""
    for key, label in VERSION_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            return f"{label}:{str(value).strip()}"
    for key in MTIME_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            return f"mtime:{value}"
    return None


def _info(fs: Any, path: str, url: str) -> dict[str, Any]:
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise CheckFailed(f"{display(url)}: not found at the source") from None
    except Exception as exc:  # noqa: BLE001 - every filesystem raises its own errors
        raise CheckFailed(f"{display(url)}: cannot read the source: {display(first_line(exc))}") from None
    return dict(info) if isinstance(info, dict) else {}


def _download(fs: Any, path: str, url: str, tmp_dir: Path, is_dir: bool) -> Path:
    target = tmp_dir / "content"
    try:
        if is_dir:
            fs.get(path.rstrip("/") + "/", str(target), recursive=True)
        else:
            fs.get_file(path, str(target))
    except Exception as exc:  # noqa: BLE001
        raise CheckFailed(f"{display(url)}: download failed: {display(first_line(exc))}") from None
    if not target.exists():
        raise CheckFailed(f"{display(url)}: download produced nothing")
    return target


def _content_hash(path: Path, algo: str) -> str:
    return hash_file(path, algo, path.stat().st_size)


def import_one(
    root: Path, url: str, dest: str, *, state_dir: Path, old: Pointer | None = None, force: bool = False
) -> Change:
    """Fetch `url` to `dest` (repo-relative) and track it; with `old`, only when the source changed."""
    check_url(url)
    fs, path = _fs(url)
    info = _info(fs, path, url)
    is_dir = info.get("type") == "directory"
    version = source_version(info) if not is_dir else None
    same = old is not None and version is not None and version == old.source_version
    if same and old is not None and not force and (root / dest).exists():
        return Change(dest, url, "unchanged", old.source_version, version, old.hash, old.hash, old.size, old.size)
    tmp_root = state_dir / "import-tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=tmp_root))
    try:
        fetched = _download(fs, path, url, tmp_dir, is_dir)
        algo = old.algo if old is not None else str(data_settings(root)["hash"])
        if version is None:
            version = "hash:" + (_content_hash(fetched, algo) if not is_dir else _tree_hash(fetched, algo))
        if old is not None and not force and version == old.source_version and (root / dest).exists():
            return Change(dest, url, "unchanged", old.source_version, version, old.hash, old.hash, old.size, old.size)
        (pointer,) = add_paths(
            root,
            [dest],
            algo=algo,
            fetched={dest: fetched},
            sources={dest: (url, version)},
            cwd=root,
            state_dir=state_dir,
        )
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    if old is None:
        return Change(dest, url, "added", None, version, None, pointer.hash, None, pointer.size)
    status = "updated" if pointer.hash != old.hash else "unchanged"
    return Change(dest, url, status, old.source_version, version, old.hash, pointer.hash, old.size, pointer.size)


def _tree_hash(folder: Path, algo: str) -> str:
    """A version for a folder source without one: the hash of its sorted (name, content hash) list."""
    lines = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            full = Path(dirpath) / name
            lines.append(f"{full.relative_to(folder).as_posix()}\t{_content_hash(full, algo)}")
    return hash_bytes("\n".join(sorted(lines)).encode(), algo)


def imported_pointers(root: Path, targets: list[str] | None) -> list[Pointer]:
    """Pointers in the working tree that record a source URL (only those `targets` name, when given)."""
    pointers = [(f, p) for f, p in workspace_pointers(root) if f.endswith(POINTER_SUFFIX)]
    chosen = select(pointers, targets or None)
    if targets:
        missing = [p.path for _f, p in chosen if not p.source_url]
        if missing:
            raise InputError(f"{missing[0]}: was not imported from a URL (`mlci data import-url`); nothing to update")
    return [p for _f, p in chosen if p.source_url]


def import_dataset(root: Path, url: str, user_path: str, *, state_dir: Path, cwd: Path, force: bool = False) -> Change:
    """`mlci data import-url`: a new dataset from `url` at the path the user typed. An existing
    pointer or file there is refused without `force`: `update` is what refreshes an import."""
    dest = repo_relpath(root, user_path, cwd)
    pointer_file = root / (dest + POINTER_SUFFIX)
    if pointer_file.exists() and not force:
        raise InputError(f"{dest}{POINTER_SUFFIX} exists: `mlci data update {dest}` refreshes it (or pass --force)")
    if (root / dest).exists() and not force:
        raise InputError(f"{dest}: exists; pass --force to replace it with the imported content")
    return import_one(root, url, dest, state_dir=state_dir)


def update_imports(root: Path, user_paths: list[str], *, state_dir: Path, cwd: Path) -> list[Change]:
    """`mlci data update`: re-import the datasets `user_paths` name (none: every imported one)
    whose source changed; one change each, in pointer order."""
    targets = [repo_relpath(root, t, cwd) for t in user_paths] if user_paths else None
    changes = []
    for pointer in imported_pointers(root, targets):
        assert pointer.source_url is not None
        old = read_pointer_file(root, pointer.pointer_path)
        changes.append(import_one(root, pointer.source_url, pointer.path, state_dir=state_dir, old=old))
    return changes
