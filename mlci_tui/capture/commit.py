"""A commit's run read through one `git cat-file --batch` process: the post-commit hook's path.

Capturing HEAD used to start 19 git processes (a `rev-parse` per name, `show` for the header,
an `ls-tree` per pattern, `cat-file --batch-check` for sizes, a `cat-file` each for the config
and the files, `symbolic-ref`), about a third of the hook's time (issue 19). Here one
long-lived `git cat-file --batch` (`importers.objects.ObjectReader`) resolves the revisions
and the ledger tip, reads the commit's header, its config, the trees on the way to its params
and metrics files and their blobs; a DVC project's reader shares it. Git still starts for the
patch-id (`diff-tree` piped into `patch-id`), the dataset pointers (one `ls-tree -r`, which
stays one process however large the tree), the ledger's lookups and its `fast-import`.
"""

from __future__ import annotations

from mlci_tui import config as config_mod
from mlci_tui.capture import config_memo
from mlci_tui.capture.build import base_record, finish_record, read_values
from mlci_tui.config import Config
from mlci_tui.constants import CONFIG_FILE, DVC_ROOT_FILES
from mlci_tui.errors import ConfigError, InputError
from mlci_tui.gitio import CommitInfo, Repo, patch_id
from mlci_tui.importers.objects import ObjectReader
from mlci_tui.ledger import records
from mlci_tui.sources import literal_prefix, matches

TYPE_CHECKING = False  # not `from typing import ...`: the post-commit hook's path
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

SYMLINK_MODE = "120000"


class ObjectSource:
    """A commit's files through a shared ObjectReader: a `sources.FileSource` that starts no
    git process of its own (the trees on a pattern's literal path, then its blobs)."""

    label = "commit"

    def __init__(self, objects: ObjectReader, root: str) -> None:
        self.objects = objects
        self.root = root
        self.oids: dict[str, str] = {}

    def find(self, patterns: Iterable[str], refused: list[str] | None = None) -> list[str]:
        found: list[str] = []
        for pattern in patterns:
            prefix = literal_prefix(pattern)
            candidates = self.objects.walk(self.root, prefix) if prefix != pattern else []
            if prefix == pattern:
                entry = self.objects.lookup(self.root, pattern)
                if entry is not None and entry.is_tree:
                    candidates = self.objects.walk(self.root, pattern)
                elif entry is not None:
                    candidates = [(pattern, entry)]
            for path, entry in candidates:
                if not matches(pattern, path) or path in found:
                    continue
                if entry.mode == SYMLINK_MODE:
                    message = f"{path}: is a symlink; mlci reads no file through a link"
                    if refused is None:
                        raise InputError(message)
                    if message not in refused:
                        refused.append(message)
                    continue
                if entry.is_blob:
                    self.oids[path] = entry.oid
                    found.append(path)
        return sorted(found)

    def sizes(self, paths: list[str]) -> dict[str, int]:
        return {p: len(self.objects.blob(self.oids[p]) or b"") for p in paths}

    def read_many(self, paths: list[str]) -> dict[str, bytes]:
        out = {}
        for path in paths:
            data = self.objects.blob(self.oids[path])
            if data is not None:
                out[path] = data
        return out

    def oid(self, path: str) -> str | None:
        return self.oids.get(path)


def resolve_commit(objects: ObjectReader, rev: str) -> str | None:
    """The commit id `rev` names (as `git rev-parse REV^{commit}`), None when it names none."""
    got = objects.read(f"{rev}^{{commit}}")
    return got[0] if got is not None and got[1] == "commit" else None


def read_commit(repo: Repo, objects: ObjectReader, sha: str) -> CommitInfo:
    """The commit's header as `gitio.commit_info` gives it (`git show` with COMMIT_FIELDS), parsed
    from the raw object: no `git show` process."""
    got = objects.read(sha)
    if got is None or got[1] != "commit":
        raise InputError(f"{sha}: not a commit in this repository")
    info = parse_raw_commit(got[0], got[2])
    if info.parents and info.sha in repo.shallow_commits():
        # git shows a commit whose parents a shallow clone cut off as a root; so does the run
        info = CommitInfo(info.sha, info.tree, (), info.author, info.author_time, info.commit_time, info.message)
    return info


def parse_raw_commit(sha: str, data: bytes) -> CommitInfo:
    """A raw commit object: header lines (`tree`, `parent`, `author`, `committer`, `encoding`,
    continued lines of `gpgsig`/`mergetag` start with a space), a blank line, the message."""
    head, _blank, body = data.partition(b"\n\n")
    fields: dict[bytes, bytes] = {}
    parents: list[str] = []
    for line in head.split(b"\n"):
        if line.startswith(b" "):
            continue
        key, _sp, value = line.partition(b" ")
        if key == b"parent":
            parents.append(value.decode())
        else:
            fields.setdefault(key, value)
    encoding = fields.get(b"encoding", b"utf-8").decode("ascii", "replace")

    def text(raw: bytes) -> str:
        try:
            return raw.decode(encoding, "replace")
        except LookupError:  # an encoding Python does not know: git would print the bytes
            return raw.decode("utf-8", "replace")

    def person(key: bytes) -> tuple[str, int]:
        """`Name <email> 1700000000 +0100` -> ("Name <email>", seconds)."""
        who, _sp, when = fields.get(key, b"").rpartition(b">")
        stamp = when.split()
        return text(who + b">") if who else "", int(stamp[0]) if stamp and stamp[0].isdigit() else 0

    author, author_time = person(b"author")
    _committer, commit_time = person(b"committer")
    return CommitInfo(
        sha, fields.get(b"tree", b"").decode(), tuple(parents), author, author_time, commit_time, text(body).strip()
    )


def load_config(repo: Repo, objects: ObjectReader, sha: str) -> tuple[Config, list[str]]:
    """The config the commit carries (`config.load_from_git`'s rule); a bad one is a warning
    and the defaults, so that the commit's good values are still recorded."""
    yaml_blob = objects.read(f"{sha}:{CONFIG_FILE}")
    pyproject = objects.read(f"{sha}:pyproject.toml")
    try:
        cfg = config_memo.load_from_blobs(
            repo, yaml_blob[2] if yaml_blob is not None else None, pyproject[2] if pyproject is not None else None
        )
    except ConfigError as exc:
        default = config_mod.Config(repo.toplevel, None, config_mod.validate({}, CONFIG_FILE))
        return default, [f"{sha[:12]}: {exc}; captured with the default config"]
    return cfg, []


def capture_commit(
    repo: Repo,
    objects: ObjectReader,
    config: Config,
    info: CommitInfo,
    *,
    branch: str | None = None,
    kind: str = "commit",
    source: str = "capture",
) -> tuple[dict[str, Any] | None, list[str]]:
    """A commit's run, read from its own blobs; None when its tree has no params or metrics."""
    names = objects.tree(info.sha)
    if any(name in names for name in DVC_ROOT_FILES):
        return _capture_dvc(repo, objects, config, info, branch=branch, kind=kind, source=source)
    tree = ObjectSource(objects, info.sha)
    values = read_values(config, tree, strict=False)
    if values.empty:
        return None, values.warnings
    record = base_record(kind, values)
    run_id = records.derived_id(kind, info.sha)
    deps = _tree_deps(tree, config)
    record.update(
        run_id=run_id,
        started=records.epoch_iso(info.author_time),
        ended=records.epoch_iso(info.commit_time),
        commit=info.sha,
        tree=info.tree,
        patch_id=patch_id(repo, info),
        branch=branch,
        author=info.author,
        message=info.message,
        source=source,
        deps=deps,
        stale=is_stale(repo, config, info, set(values.metrics) | {s.file for s in values.steps}) if deps else False,
        datasets=_tree_datasets(repo, info.sha, record["warnings"]),
    )
    # the event's time is when it was captured (microseconds): it orders runs of commits
    # made within one second; started/ended keep the commit's own times
    return finish_record(record, run_id, records.now_iso()), values.warnings


def _capture_dvc(
    repo: Repo, objects: ObjectReader, config: Config, info: CommitInfo, *, branch: str | None, kind: str, source: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """A DVC project's commit, read as `mlci import dvc` reads it (the same run), through the same process."""
    from mlci_tui.project.reader import ProjectReader  # lazy: the DVC layer, for DVC projects only

    reader = ProjectReader(repo, objects)  # not closed here: the caller owns `objects`
    record, warnings = reader.record(
        info,
        config=config,
        kind=kind,
        source=source,
        branch=branch,
        patch=patch_id(repo, info),
        time=records.now_iso(),
    )
    if record is not None and record["deps"]:
        files = set(record["metrics"]) | {s[0] for s in record["steps"]}
        record["stale"] = is_stale(repo, config, info, files)
    return record, warnings


def _tree_deps(tree: ObjectSource, config: Config) -> dict[str, str]:
    patterns = config.section("train")["deps"]
    if not patterns:
        return {}
    return {p: tree.oids[p] for p in tree.find(patterns)}


def _tree_datasets(repo: Repo, treeish: str, warnings: list[str]) -> dict[str, str]:
    """Dataset path -> content hash for every pointer (.mlci, .dvc, dvc.lock output) in the tree."""
    from mlci_tui.data.tree import dataset_hashes  # lazy: the data layer, after the values are read

    return dataset_hashes(repo, treeish, warnings)


def is_stale(repo: Repo, config: Config, info: CommitInfo, metrics_files: set[str]) -> bool:
    """The commit changed what produced the metrics (train.deps) but not the metrics."""
    if not info.parents:
        return False
    changed = repo.text("diff-tree", "-r", "--name-only", "--no-commit-id", info.parents[0], info.sha).split("\n")
    changed = [c for c in changed if c]
    deps_changed = any(matches(p, c) for p in config.section("train")["deps"] for c in changed)
    metrics_changed = any(c in metrics_files for c in changed)
    return deps_changed and not metrics_changed
