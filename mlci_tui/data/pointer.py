"""The pointer file `PATH.mlci`: what git holds for a dataset (hash, size, file count, format).

The format is a few `key: value` lines (valid YAML, but read without a YAML library so the
hooks stay light). Strings that need quoting are written as JSON strings. The dataset path
inside is relative to the pointer's folder, like DVC's `.dvc` files, and may not leave it
upward: a pointer naming `../x` or an absolute path is refused.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass

from mlci_tui.constants import POINTER_SUFFIX as POINTER_SUFFIX  # re-exported: defined for the hook path
from mlci_tui.errors import InputError

ALGOS = ("blake3", "md5")
HASH_LEN = {"blake3": 64, "md5": 32}
FORMATS = ("csv", "parquet", "jsonl")
_HEX = re.compile(r"[0-9a-f]+")
_KEYS = ("path", "algo", "hash", "size", "nfiles", "format", "source_url", "source_version")
HEADER = "# mlci dataset pointer: commit this file; the data is in .mlci/cache and the remote (`mlci data pull`)"


@dataclass(frozen=True)
class Pointer:
    """A dataset version. `path` is repo-relative (posix); `nfiles` is None for a single file."""

    path: str
    algo: str
    hash: str
    size: int
    nfiles: int | None = None
    format: str | None = None
    source_url: str | None = None
    source_version: str | None = None
    origin: str = "mlci"  # mlci, dvc (a .dvc file) or dvc.lock: only mlci pointers are written

    @property
    def is_dir(self) -> bool:
        return self.nfiles is not None

    @property
    def pointer_path(self) -> str:
        return self.path + POINTER_SUFFIX

    @property
    def content_id(self) -> str:
        """`algo:hash`: how runs, validations and promotions name a version (md5 and BLAKE3 never mix)."""
        return f"{self.algo}:{self.hash}"


def format_of(path: str) -> str | None:
    """csv, parquet or jsonl from the file name; None for anything else (and for folders)."""
    name = path.lower()
    for suffix, fmt in ((".csv", "csv"), (".tsv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return None


def check_relpath(path: str, where: str) -> str:
    """A repo-relative posix path that stays inside the repository, normalised; else InputError."""
    if not path or "\x00" in path or "\\" in path:
        raise InputError(f"{where}: invalid dataset path {path!r}")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise InputError(f"{where}: dataset path {path!r} is absolute; it must be relative to the repository")
    parts = path.split("/")
    if ".." in parts:
        raise InputError(f"{where}: dataset path {path!r} leaves its folder (`..`); paths must stay inside the repo")
    norm = posixpath.normpath(path)
    if norm in (".", "") or norm.split("/")[0] == ".mlci" or ".git" in norm.split("/"):
        raise InputError(f"{where}: dataset path {path!r} is not a dataset mlci can track")
    return norm


def check_hash(algo: str, value: str, where: str) -> str:
    if algo not in ALGOS:
        raise InputError(f"{where}: unknown hash algorithm {algo!r} (one of {', '.join(ALGOS)})")
    if len(value) != HASH_LEN[algo] or not _HEX.fullmatch(value):
        raise InputError(f"{where}: hash {value[:80]!r} is not a {algo} hex digest")
    return value


def parse_pointer(text: str, where: str) -> Pointer:
    """Read a pointer file's text; `where` is the pointer's repo-relative path (names errors)."""
    if not where.endswith(POINTER_SUFFIX):
        raise InputError(f"{where}: a pointer file's name ends with {POINTER_SUFFIX}")
    values: dict[str, str | int | None] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or key not in _KEYS:
            raise InputError(f"{where}:{n}: unknown line {raw[:60]!r} (keys: {', '.join(_KEYS)})")
        if key in values:
            raise InputError(f"{where}:{n}: {key} given twice")
        values[key] = _scalar(value, f"{where}:{n}")
    for key in ("path", "algo", "hash", "size"):
        if values.get(key) is None:
            raise InputError(f"{where}: missing `{key}`")
    name = values["path"]
    if not isinstance(name, str):
        raise InputError(f"{where}: path must be a string")
    folder = posixpath.dirname(where)
    path = check_relpath(posixpath.join(folder, name) if folder else name, where)
    if ".." in name.split("/"):
        raise InputError(f"{where}: dataset path {name!r} leaves its folder (`..`)")
    algo, digest = str(values["algo"]), str(values["hash"])
    check_hash(algo, digest, where)
    size, nfiles = values["size"], values.get("nfiles")
    if not isinstance(size, int) or size < 0:
        raise InputError(f"{where}: size must be a non-negative integer")
    if nfiles is not None and (not isinstance(nfiles, int) or nfiles < 0):
        raise InputError(f"{where}: nfiles must be a non-negative integer")
    fmt = values.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    src, ver = values.get("source_url"), values.get("source_version")
    return Pointer(
        path=path,
        algo=algo,
        hash=digest,
        size=size,
        nfiles=nfiles,
        format=fmt,
        source_url=None if src is None else str(src),
        source_version=None if ver is None else str(ver),
    )


def _scalar(value: str, where: str) -> str | int | None:
    if value in ("", "null", "~"):
        return None
    if value.startswith('"'):
        try:
            out = json.loads(value)
        except ValueError:
            raise InputError(f"{where}: badly quoted string {value[:60]!r}") from None
        if not isinstance(out, str):
            raise InputError(f"{where}: expected a string")
        return out
    if value.isdigit():
        return int(value)
    return value


def _quote(value: str) -> str:
    plain = re.fullmatch(r"[A-Za-z0-9_./+=@-][A-Za-z0-9_./+=@ -]*", value) and not value.endswith(" ")
    if plain and not value.isdigit() and value.lower() not in ("null", "true", "false", "yes", "no", "on", "off"):
        return value
    return json.dumps(value, ensure_ascii=True)


def dump_pointer(p: Pointer) -> str:
    """The text of `p`'s pointer file (the path written relative to the pointer's folder)."""
    lines = [HEADER, f"path: {_quote(posixpath.basename(p.path))}", f"algo: {p.algo}", f"hash: {p.hash}"]
    lines.append(f"size: {p.size}")
    if p.nfiles is not None:
        lines.append(f"nfiles: {p.nfiles}")
    if p.format is not None:
        lines.append(f"format: {p.format}")
    if p.source_url is not None:
        lines.append(f"source_url: {_quote(p.source_url)}")
    if p.source_version is not None:
        lines.append(f"source_version: {_quote(p.source_version)}")
    return "\n".join(lines) + "\n"
