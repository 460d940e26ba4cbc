"""Read DVC's `.dvc` files and `dvc.lock` outputs (read-only) as pointers mlci understands.

Only what status and validation need: path (repo-relative), md5, size, nfiles. A folder's
md5 ends in `.dir` in DVC; here the suffix is dropped and `nfiles` marks it as a folder.
Outputs outside the repository (URLs, `../` escapes) are left out.

A run's `datasets` are data, not what its stages produce (`split_datasets`): a `.dvc` pointer
(`dvc add`) is a dataset; a stage output (`dvc.lock`, an old `.dvc` stage file with `cmd`) is
one only when a stage depends on it (prepared data feeding training) and it is not a model file
(`MODEL_SUFFIXES`: evaluation reads `model.pkl`); else it is an output listed apart.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci_tui.data.pointer import HASH_LEN, Pointer, format_of
from mlci_tui.errors import InputError

# stage outputs in these formats are models even when a stage reads them (evaluate reads model.pkl)
MODEL_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".h5", ".keras", ".onnx", ".safetensors")
DVC_CACHE_DIRS = (".dvc/cache/files/md5", ".dvc/cache")  # DVC 3, then DVC 2


def _load_yaml(text: str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise InputError(f"{where}: invalid YAML: {first}") from None


def _out_pointer(out: Any, base: str, where: str, origin: str) -> Pointer | None:
    if not isinstance(out, dict):
        return None
    path, md5 = out.get("path"), out.get("md5")
    if isinstance(md5, int) and not isinstance(md5, bool):
        md5 = str(md5)  # an all-digit md5 written unquoted reads as a number
    if not isinstance(path, str) or not isinstance(md5, str) or "://" in path:
        return None
    if path.startswith("/"):
        raise InputError(f"{where}: output path {path!r} is absolute")
    full = posixpath.normpath(posixpath.join(base, path)) if base else posixpath.normpath(path)
    if full == ".." or full.startswith("../") or full.split("/")[0] in (".git", ".dvc"):
        raise InputError(f"{where}: output path {path!r} leaves the repository")
    is_dir = md5.endswith(".dir")
    digest = md5[:-4] if is_dir else md5
    if len(digest) != HASH_LEN["md5"]:
        raise InputError(f"{where}: output {path!r} has no valid md5")
    size = out.get("size")
    nfiles = out.get("nfiles")
    return Pointer(
        path=full,
        algo="md5",
        hash=digest,
        size=size if isinstance(size, int) else 0,
        nfiles=(nfiles if isinstance(nfiles, int) else 0) if is_dir else None,
        format=None if is_dir else format_of(full),
        origin=origin,
    )


def read_dvc_file(text: str, where: str) -> list[Pointer]:
    """The outputs of a `.dvc` file (`where`: its repo-relative path)."""
    doc = _load_yaml(text, where)
    if not isinstance(doc, dict):
        raise InputError(f"{where}: not a .dvc file (expected a mapping with `outs`)")
    base = posixpath.dirname(where)
    outs = doc.get("outs") or []
    return [p for out in outs if (p := _out_pointer(out, base, where, "dvc"))] if isinstance(outs, list) else []


def read_dvc_lock(text: str, where: str) -> list[Pointer]:
    """The outputs of every stage in a `dvc.lock` (`where`: its repo-relative path)."""
    doc = _load_yaml(text, where)
    if not isinstance(doc, dict):
        raise InputError(f"{where}: not a dvc.lock (expected a mapping with `stages`)")
    base = posixpath.dirname(where)
    stages = doc.get("stages") or {}
    found: list[Pointer] = []
    if isinstance(stages, dict):
        for stage in stages.values():
            outs = stage.get("outs") if isinstance(stage, dict) else None
            for out in outs or []:
                if p := _out_pointer(out, base, where, "dvc.lock"):
                    found.append(p)
    return found


@dataclass(frozen=True)
class DvcFile:
    """What one `.dvc` file or `dvc.lock` tracks, and what its stages depend on."""

    pointers: list[Pointer]
    deps: list[str]  # repository-relative paths its stages read
    stage: bool  # its outputs are made by a command (dvc.lock, a `.dvc` file with `cmd`)


def _deps(items: Any, base: str) -> list[str]:
    found = []
    for dep in items if isinstance(items, list) else []:
        path = dep.get("path") if isinstance(dep, dict) else dep
        if isinstance(path, str) and "://" not in path and not path.startswith("/"):
            found.append(posixpath.normpath(posixpath.join(base, path)) if base else posixpath.normpath(path))
    return found


def read_dvc_layout(text: str, where: str) -> DvcFile:
    """A `.dvc` file's or a `dvc.lock`'s outputs (as pointers) and its stages' dependencies."""
    pointers = read_dvc_pointers(text, where)
    doc = _load_yaml(text, where)  # already checked to be a mapping by read_dvc_pointers
    base = posixpath.dirname(where)
    if where.split("/")[-1] == "dvc.lock":
        stages = doc.get("stages")
        deps = [
            d
            for s in (stages.values() if isinstance(stages, dict) else [])
            if isinstance(s, dict)
            for d in _deps(s.get("deps"), base)
        ]
        return DvcFile(pointers, deps, True)
    return DvcFile(pointers, _deps(doc.get("deps"), base), "cmd" in doc)


def split_datasets(files: list[DvcFile]) -> tuple[dict[str, str], dict[str, str]]:
    """(datasets, outputs), path -> content hash: pointers and outputs some stage depends on
    are datasets; the other stage outputs (models, plots, metrics kept in DVC's cache) are outputs."""
    deps = {d for f in files for d in f.deps}

    def feeds_a_stage(path: str) -> bool:
        if path.lower().endswith(MODEL_SUFFIXES):
            return False  # a model an evaluation stage reads is still a model
        return any(d == path or d.startswith(path + "/") or path.startswith(d + "/") for d in deps)

    datasets: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for f in files:
        for p in f.pointers:
            if not f.stage or feeds_a_stage(p.path):
                datasets[p.path] = p.content_id
            else:
                outputs[p.path] = p.content_id
    outputs = {k: v for k, v in outputs.items() if k not in datasets}
    return dict(sorted(datasets.items())), dict(sorted(outputs.items()))


def read_dvc_pointers(text: str, where: str) -> list[Pointer]:
    return read_dvc_lock(text, where) if where.split("/")[-1] == "dvc.lock" else read_dvc_file(text, where)


def dvc_manifest(root: Path, digest: str) -> list[tuple[str, str, int]] | None:
    """A DVC folder's listing from DVC's local cache (`<md5>.dir`), or None when absent."""
    for folder in DVC_CACHE_DIRS:
        path = root / folder / digest[:2] / (digest[2:] + ".dir")
        if path.is_file():
            try:
                rows = json.loads(path.read_bytes())
                return [(str(r["relpath"]), str(r["md5"]), int(r.get("size") or 0)) for r in rows]
            except (ValueError, KeyError, TypeError):
                return None
    return None
