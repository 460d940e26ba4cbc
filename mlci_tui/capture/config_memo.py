"""The hooks' config, remembered by the bytes it was read from: no YAML parser at every commit.

Both commit hooks read the config (the index's in pre-commit, the new commit's in post-commit),
and reading it costs more than the rest of their work: PyYAML's import and parse, and the
plugin sections' modules (`config.load_plugin_sections`), ~15-25 ms of CPU per hook. Yet
mlci.yaml rarely changes between commits. The validated sections (plain JSON values) are kept
in `.git/mlci/config-memo.json` under a key made of the `mlci.yaml` and `pyproject.toml` bytes
and of mlci's own config code (its version and the modification times of `config.py` and the
`config_schema.py` modules), so an edited file or another mlci reads and validates again. An
invalid config is never remembered: it raises `ConfigError` each time, as `config` does.
"""

from __future__ import annotations

import json
import os

from mlci_tui import config as config_mod
from mlci_tui.constants import CONFIG_FILE
from mlci_tui.gitio import Repo, parse_cat_file_batch_ordered
from mlci_tui.ledger.records import blake2b  # the builtin one, without `hashlib`'s OpenSSL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mlci_tui.importers.objects import ObjectReader

MEMO_FILE = "config-memo.json"
KEEP = 8  # configs remembered (branches with different configs, a file edited back and forth)


def load_from_blobs(repo: Repo, yaml_blob: bytes | None, pyproject_blob: bytes | None) -> config_mod.Config:
    """`config.load_from_blobs`, through the memo."""
    if yaml_blob is not None or (pyproject_blob is not None and b"mlci" not in pyproject_blob):
        pyproject_blob = None  # config's rule: mlci.yaml first; a pyproject.toml without "mlci" is not read
    key = _key(yaml_blob, pyproject_blob)
    path = os.path.join(repo.state_path, MEMO_FILE)
    memo = _read(path)
    hit = memo.get(key)
    if isinstance(hit, dict) and isinstance(hit.get("data"), dict):
        return config_mod.Config(repo.toplevel, hit.get("source"), hit["data"])
    cfg = config_mod.load_from_blobs(repo.toplevel, yaml_blob, pyproject_blob)
    if json.loads(json.dumps(cfg.data)) == cfg.data:  # only what JSON gives back unchanged
        memo.pop(key, None)
        memo[key] = {"source": cfg.source, "data": cfg.data}
        _write(path, dict(list(memo.items())[-KEEP:]))
    return cfg


def load_from_git(repo: Repo, treeish: str, objects: ObjectReader | None = None) -> config_mod.Config:
    """`config.load_from_git` (a commit's config, or the index's with ':'), through the memo;
    with `objects`, read through that `git cat-file --batch` process instead of one of its own."""
    prefix = ":" if treeish in (":", ":index") else f"{treeish}:"
    names = [f"{prefix}{CONFIG_FILE}", f"{prefix}pyproject.toml"]
    if objects is not None:
        got = [objects.read(name) for name in names]
        blobs = [g[2] if g is not None and g[1] == "blob" else None for g in got]
    else:
        proc = repo.run("cat-file", "--batch", input="".join(f"{n}\n" for n in names).encode())
        blobs = parse_cat_file_batch_ordered(proc.stdout)
    return load_from_blobs(repo, blobs[0], blobs[1])


def _key(yaml_blob: bytes | None, pyproject_blob: bytes | None) -> str:
    digest = blake2b(digest_size=20)
    for part in (yaml_blob, pyproject_blob):
        digest.update(b"-" if part is None else b"+%d:" % len(part) + part)
    digest.update(_code_stamp().encode())
    return digest.hexdigest()


def _code_stamp() -> str:
    """mlci's version and the modification times of the modules that define the schema."""
    from mlci_tui import __version__

    package = os.path.dirname(config_mod.__file__)
    stamps = [__version__, str(os.stat(config_mod.__file__).st_mtime_ns)]
    with os.scandir(package) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            schema = os.path.join(entry.path, "config_schema.py")
            if entry.is_dir() and os.path.isfile(schema):
                stamps.append(f"{entry.name}:{os.stat(schema).st_mtime_ns}")
    return " ".join(stamps)


def _read(path: str) -> dict[str, object]:
    try:
        with open(path, encoding="utf-8") as f:
            memo = json.load(f)
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write(path: str, memo: dict[str, object]) -> None:
    """Replaced whole (two hooks at once: the last one's memo stays, which is only a later miss)."""
    from pathlib import Path

    from mlci_tui.data.workspace import atomic_write

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(Path(path), json.dumps(memo, separators=(",", ":")).encode("utf-8"))
    except OSError:
        pass  # a read-only .git: the next hook parses again
