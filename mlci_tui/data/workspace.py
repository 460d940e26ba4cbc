"""The working tree side: user paths checked to stay in the repo, pointer files, .gitignore,
and the file helpers the data modules share: atomic writes (temp file + rename) so nothing
is ever half-written, and whole-file reads through a raw descriptor.

It imports neither the cache nor hashing, so both can import it at module level."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlci_tui.constants import POINTER_SUFFIX
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo, git

TYPE_CHECKING = False  # the commit hooks write their state files with atomic_write: the pointer parser loads on use
if TYPE_CHECKING:
    from mlci_tui.data.pointer import Pointer

DVC_SUFFIX = ".dvc"
DVC_LOCK = "dvc.lock"
READ_CHUNK = 1 << 20


def repo_relpath(root: Path, user_path: str, cwd: Path | None = None, *, allow_link: bool = False) -> str:
    """A path the user typed, as a repo-relative posix path; refuses escapes, and symlinks unless
    `allow_link` (the caller checks where they point)."""
    cwd = cwd or Path.cwd()
    raw = Path(user_path)
    full = raw if raw.is_absolute() else cwd / raw
    full = Path(os.path.normpath(full))
    real_root = Path(os.path.realpath(root))
    if os.path.realpath(full) == str(real_root):
        raise InputError(f"{user_path}: is the repository itself; add the data files or folders in it")
    real_parent = Path(os.path.realpath(full.parent))
    try:
        rel_parent = real_parent.relative_to(real_root)
    except ValueError:
        raise InputError(f"{user_path}: outside the repository {root}") from None
    if full.name in ("", ".", ".."):
        raise InputError(f"{user_path}: not a file or folder mlci can track")
    rel = (rel_parent / full.name).as_posix()
    if rel.startswith("./"):
        rel = rel[2:]
    from mlci_tui.data.pointer import check_relpath

    check_relpath(rel, user_path)
    if not allow_link and (root / rel).is_symlink():
        raise InputError(f"{user_path}: is a symlink; mlci tracks no data through a link")
    return rel


def read_small(path: str | os.PathLike[str]) -> bytes:
    """A whole (small) file's bytes: a raw descriptor costs less than a buffered open on hot paths."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, READ_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def dataset_targets(root: Path, paths: list[str] | None, cwd: Path) -> list[str] | None:
    """The datasets PATH arguments name, repo-relative; None for every dataset (no PATH, or `.`
    at the repository root). A pointer file names its dataset, so `x.mlci` and `x` agree."""
    if not paths:
        return None
    out = []
    for p in paths:
        if p.rstrip("/") in ("", "."):
            rel = cwd.resolve().relative_to(root.resolve()).as_posix()
            if rel in ("", "."):
                return None
            out.append(rel)
        else:
            out.append(repo_relpath(root, p.removesuffix(POINTER_SUFFIX), cwd))
    return out


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path` and rename it in: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ignore_pattern(rel: str) -> str:
    """The .gitignore line that matches exactly `rel` (git's rules: `*?[\\` and trailing spaces
    escaped); a path with a line break cannot be one line, and is refused."""
    if "\n" in rel or "\r" in rel:
        raise InputError(f"{rel!r}: a path with a line break cannot be ignored safely; rename it")
    escaped = re.sub(r"([*?\[\\])", r"\\\1", rel)
    stripped = escaped.rstrip(" ")
    return "/" + stripped + "\\ " * (len(escaped) - len(stripped))


def ensure_ignored(root: Path, rels: list[str]) -> list[str]:
    """Add `/REL` lines to the root .gitignore for paths not listed yet; returns what was added."""
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.rstrip("\n") for line in text.splitlines()}
    patterns = [ignore_pattern(r) for r in dict.fromkeys(rels)]
    missing = [p for p in patterns if p not in present and p[1:] not in present]
    if missing:
        prefix = "" if not text or text.endswith("\n") else "\n"
        atomic_write(path, (text + prefix + "\n".join(missing) + "\n").encode())
    return missing


def read_pointer_file(root: Path, rel: str) -> Pointer:
    path = root / rel
    if path.is_symlink():
        raise InputError(f"{rel}: is a symlink; pointer files must be regular files")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{rel}: not UTF-8 text; not a pointer file") from None
    from mlci_tui.data.pointer import parse_pointer

    return parse_pointer(text, rel)


def list_pointer_files(root: Path) -> list[str]:
    """Pointer files (.mlci), `.dvc` files and dvc.lock in the working tree, tracked or not (not ignored)."""
    proc = git(
        ["ls-files", "-z", "-c", "-o", "--exclude-standard", "--", f"*{POINTER_SUFFIX}", f"*{DVC_SUFFIX}", "*dvc.lock"],
        root,
    )
    names = [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
    # `.mlci` and `.dvc` themselves (the state folders, listed when one is a symlink) name no dataset
    return sorted(
        n
        for n in dict.fromkeys(names)
        if (n.endswith((POINTER_SUFFIX, DVC_SUFFIX)) and n.split("/")[-1] not in (POINTER_SUFFIX, DVC_SUFFIX))
        or n.split("/")[-1] == DVC_LOCK
    )


def walk_folder(
    root: Path, rel: str, *, allow_links: bool = False, sort: bool = True
) -> list[tuple[str, os.stat_result]]:
    """Every regular file under a dataset folder: (relpath inside the folder, stat), sorted by
    name unless `sort` is false (then in directory order, stable while the folder is unchanged).

    Symlinks are refused, except with `allow_links` (files checked out in symlink mode; the
    caller checks they point into the cache)."""
    out: list[tuple[str, os.stat_result]] = []
    base = root / rel
    stack = [("", str(base))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                name = prefix + entry.name
                if entry.is_file(follow_symlinks=False):
                    out.append((name, entry.stat(follow_symlinks=False)))
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((name + "/", entry.path))
                elif entry.is_symlink():
                    if allow_links and not entry.is_dir():
                        out.append((name, entry.stat(follow_symlinks=False)))
                        continue
                    raise InputError(f"{rel}/{name}: is a symlink; mlci tracks no data through a link")
    if sort:
        out.sort(key=lambda x: x[0])
    return out


def pointers_at(repo: Repo, rev: str, paths: list[str] | None = None) -> tuple[list[Pointer], list[str]]:
    """The mlci pointers commit `rev` holds (those at `paths`, else every one), read from git
    objects, never the working tree; and a line for each file that is not a pointer."""
    from mlci_tui.data.pointer import parse_pointer

    if paths is None:
        entries = [e for e in repo.ls_tree(rev, recursive=True) if e.path.endswith(POINTER_SUFFIX)]
    else:
        entries = repo.ls_tree(rev, paths) if paths else []
    entries = [e for e in entries if e.kind == "blob" and e.path.rsplit("/", 1)[-1] != POINTER_SUFFIX]
    blobs = repo.cat_blobs([e.oid for e in entries])
    pointers, problems = [], []
    for entry in entries:
        try:
            pointers.append(parse_pointer(blobs[entry.oid].decode("utf-8"), entry.path))
        except (InputError, UnicodeDecodeError, KeyError) as exc:
            problems.append(f"{entry.path} at {rev[:12]}: not a pointer file ({exc})")
    return pointers, problems
