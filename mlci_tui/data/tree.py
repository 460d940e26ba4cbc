"""Datasets a commit or the index names: mlci pointers, `.dvc` files and `dvc.lock` outputs,
read from git objects (what git holds, not the working tree)."""

from __future__ import annotations

from mlci_tui.constants import POINTER_SUFFIX
from mlci_tui.errors import InputError, MlciError
from mlci_tui.gitio import Repo, TreeEntry

TYPE_CHECKING = False  # the post-commit capture asks every commit: the parsers load when a pointer is there
if TYPE_CHECKING:
    from mlci_tui.data.pointer import Pointer

DVC_LOCK = "dvc.lock"


def is_pointer_name(path: str) -> bool:
    return path.endswith((POINTER_SUFFIX, ".dvc")) or path.rsplit("/", 1)[-1] == DVC_LOCK


def _entries(repo: Repo, treeish: str) -> list[TreeEntry]:
    if treeish in (":", ":index"):
        proc = repo.run("ls-files", "-s", "-z")
        out = []
        for item in proc.stdout.split(b"\0"):
            if not item:
                continue
            meta, _, path = item.partition(b"\t")
            mode, oid, _stage = meta.decode().split()
            out.append(TreeEntry(mode, "blob", oid, path.decode("utf-8", "surrogateescape")))
        return out
    return repo.ls_tree(treeish, recursive=True)


def iter_pointers(repo: Repo, treeish: str, *, strict: bool = True, warnings: list[str] | None = None) -> list[Pointer]:
    """Every dataset pointer in `treeish` (a commit, tree, or ":" for the index).

    A bad pointer (symlink, `../` path, unparseable) raises InputError; with `strict=False`
    it is skipped and its message appended to `warnings`.
    """
    entries = [e for e in _entries(repo, treeish) if is_pointer_name(e.path)]
    if not entries:
        return []
    from mlci_tui.data.dvc import read_dvc_pointers
    from mlci_tui.data.pointer import parse_pointer

    found: list[Pointer] = []
    bad: list[str] = []
    good = []
    for e in entries:
        if e.mode == "120000":
            bad.append(f"{e.path}: is a symlink; pointer files must be regular files")
        elif e.kind == "blob":
            good.append(e)
    blobs = repo.cat_blobs([e.oid for e in good])
    for e in good:
        try:
            text = blobs.get(e.oid, b"").decode("utf-8")
        except UnicodeDecodeError:
            bad.append(f"{e.path}: not UTF-8 text; not a pointer file")
            continue
        try:
            if e.path.endswith(POINTER_SUFFIX):
                found.append(parse_pointer(text, e.path))
            else:
                found.extend(read_dvc_pointers(text, e.path))
        except MlciError as exc:
            bad.append(str(exc))
    if bad:
        if strict:
            raise InputError(bad[0])
        if warnings is not None:
            warnings.extend(bad)
    return sorted(found, key=lambda p: p.path)


def dataset_hashes(repo: Repo, treeish: str, warnings: list[str] | None = None) -> dict[str, str]:
    """path -> content hash for the run record's `datasets` field (never raises on a bad pointer)."""
    return {p.path: p.content_id for p in iter_pointers(repo, treeish, strict=False, warnings=warnings)}
