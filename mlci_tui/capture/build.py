"""Build `run` records: a commit's files (capture), or the working tree (record).

A commit capture gets a deterministic id from the commit id and the run kind, so two clones
that capture the same commit write the same record name and a union merge keeps one. The
commit is read by `capture.commit` through one `git cat-file --batch` process: a DVC
project's by `project.reader.ProjectReader`, the reader `mlci import dvc` uses, so its capture
and its import are one run; any other commit by the lighter path there, which reads the
same values. This module holds what every capture shares: the values, the record's fields.
"""

from __future__ import annotations

import os
import sys

from mlci_tui import __version__
from mlci_tui.capture.readers import (
    Limits,
    MetricsRead,
    Step,
    check_size,
    read_metrics,
    read_params,
    read_table_metrics,
)
from mlci_tui.config import Config
from mlci_tui.constants import DVC_ROOT_FILES
from mlci_tui.errors import InputError, MlciError
from mlci_tui.gitio import Repo, commit_info, patch_id
from mlci_tui.ledger import records
from mlci_tui.sources import WorkdirSource
from mlci_tui.values import Plain

TYPE_CHECKING = False  # not `from typing import ...`: the commit hooks read values through this module
if TYPE_CHECKING:
    from typing import Any

    from mlci_tui.sources import FileSource

MAX_RUN_NAME = 256


class Values(Plain):
    __slots__ = ("params", "metrics", "steps", "warnings")

    def __init__(
        self,
        params: dict[str, dict[str, Any]] | None = None,
        metrics: dict[str, dict[str, float]] | None = None,
        steps: list[Step] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.params = {} if params is None else params
        self.metrics = {} if metrics is None else metrics
        self.steps = [] if steps is None else steps
        self.warnings = [] if warnings is None else warnings

    @property
    def empty(self) -> bool:
        return not self.params and not self.metrics and not self.steps


def current_branch(repo: Repo) -> str | None:
    """The branch HEAD is on (`git symbolic-ref --short HEAD`; None when detached), from the
    HEAD file: no process. A HEAD file that is neither a branch nor a commit id (reftable's
    stub) asks git."""
    try:
        with open(os.path.join(repo.gitdir, "HEAD"), encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    name = text.removeprefix("ref: refs/heads/")
    if name != text and name and name != ".invalid":
        return name
    if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text):
        return None
    proc = repo.run("symbolic-ref", "-q", "--short", "HEAD", check=False)
    return proc.stdout.decode().strip() or None


class FileReaders:
    """How `collect_values` parses what it finds: capture's readers under the config's limits,
    files over the size limit refused first. The DVC importer subclasses it to parse each
    blob once per import."""

    def __init__(self, limits: Limits, *, strict: bool) -> None:
        self.limits = limits
        self.strict = strict

    def fail(self, values: Values, exc: InputError) -> None:
        """With `strict`, the first bad file raises; otherwise it becomes a warning and reading goes on."""
        if self.strict:
            raise exc
        values.warnings.append(str(exc))

    def readable(self, source: FileSource, paths: list[str], values: Values) -> list[str]:
        """`paths` within the size limit (read nothing too big to parse)."""
        sizes = source.sizes(paths)
        out = []
        for path in paths:
            try:
                check_size(path, sizes.get(path, 0), self.limits)
            except InputError as exc:
                self.fail(values, exc)
            else:
                out.append(path)
        return out

    def params(self, path: str, data: bytes) -> dict[str, Any]:
        return read_params(path, data, self.limits)

    def metrics(self, path: str, data: bytes, series: str | None = None) -> MetricsRead:
        if series is None:
            return read_metrics(path, data, self.limits)
        return read_table_metrics(path, data, self.limits, series_name=series)


def read_values(config: Config, source: FileSource, *, strict: bool) -> Values:
    """Params and metrics from `source`. With `strict`, the first bad file raises InputError;
    otherwise it becomes a warning and capture goes on with the other files."""
    readers = FileReaders(Limits.from_config(config.limits), strict=strict)
    return collect_values(source, config.params_files, config.metrics_files, readers)


def collect_values(
    source: FileSource,
    params: list[str],
    metrics: list[str],
    readers: FileReaders,
    series_dirs: list[str] | tuple[str, ...] = (),
) -> Values:
    """The params files, metrics files and the dvclive series beside each `metrics.json`
    (`plots/metrics/**/*.tsv`) that the patterns find in `source`, parsed by `readers`.
    `series_dirs` are DVC 2.x `live:` folders: their `**/*.tsv` (under `scalars/` in later
    dvclive versions) are series named like the summary's values."""
    values = Values()
    refused: list[str] | None = None if readers.strict else []  # symlinks: an error, or warnings
    params_files = source.find(params, refused)
    metrics_files = source.find(metrics, refused)
    series: dict[str, str] = {}
    for mfile in metrics_files:
        if mfile.endswith("metrics.json"):
            base = mfile.rsplit("/", 1)[0] + "/" if "/" in mfile else ""
            for path in source.find([f"{base}plots/metrics/**/*.tsv"], refused):
                series[path] = path[len(f"{base}plots/metrics/") : -len(".tsv")]
    for folder in series_dirs:
        for path in source.find([f"{folder}/**/*.tsv"], refused):
            series.setdefault(path, path[len(folder) + 1 : -len(".tsv")].removeprefix("scalars/"))
    values.warnings.extend(refused or [])
    wanted = sorted(set(params_files) | set(metrics_files) | set(series))
    data = source.read_many(readers.readable(source, wanted, values))
    for path in params_files:
        if path in data:
            try:
                values.params[path] = readers.params(path, data[path])
            except InputError as exc:
                readers.fail(values, exc)
    metrics_and_series: list[tuple[str, str | None]] = [(p, None) for p in metrics_files]
    for path, name in metrics_and_series + list(series.items()):
        if path not in data:
            continue
        try:
            read = readers.metrics(path, data[path], name and name.rsplit("/", 1)[-1])
        except InputError as exc:
            readers.fail(values, exc)
            continue
        if name is None:
            values.metrics[path] = read.values
        else:
            # dvclive writes train/loss.tsv for the value it writes as {"train": {"loss": ...}}:
            # the series takes the dotted name, so final value and curve share one name
            for step in read.steps:
                step.name = name.replace("/", ".")
        values.steps.extend(read.steps)
        values.warnings.extend(read.warnings)
    return values


def base_record(kind: str, values: Values) -> dict[str, Any]:
    """The fields every run record has, from its values; callers fill in id, times, commit."""
    return {
        "kind": kind,
        "name": None,
        "status": "done",
        "params": values.params,
        "metrics": values.metrics,
        "steps": [[s.file, s.name, s.step, s.value] for s in values.steps],
        "warnings": values.warnings,
        "datasets": {},
        "deps": {},
        "stale": False,
        "source": None,
        "parent": None,
        "sweep_id": None,
        "trial_id": None,
        "mlci_version": __version__,
        "python_version": sys.version.split()[0],  # platform.python_version(), without importing platform
    }


def capture_commit(
    repo: Repo, config: Config, rev: str, *, branch: str | None = None, kind: str = "commit", source: str = "capture"
) -> tuple[dict[str, Any] | None, list[str]]:
    """A commit's run, read from its own blobs; None when its tree has no params or metrics.
    (`capture.commit` reads it, through one `git cat-file --batch` process.)"""
    from mlci_tui.capture import commit  # lazy: capture.commit builds on this module
    from mlci_tui.importers.objects import ObjectReader

    with ObjectReader(repo) as objects:
        sha = commit.resolve_commit(objects, rev)
        if sha is None:
            raise InputError(f"{rev}: not a commit in this repository")
        info = commit.read_commit(repo, objects, sha)
        return commit.capture_commit(repo, objects, config, info, branch=branch, kind=kind, source=source)


def is_dvc_project(repo: Repo, rev: str) -> bool:
    """DVC's files or folder at the top of the commit's tree: one `git ls-tree`."""
    proc = repo.run("ls-tree", "--name-only", "-z", rev, "--", *DVC_ROOT_FILES, check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip(b"\0"))


def repeat_id(kind: str, commit: str, index: int) -> str:
    """A repeat run's id, from (kind, commit, repeat index): repeats of one commit (`record --repeat`,
    bisect's probes) get ids of their own, while the commit's capture keeps its one id."""
    return records.derived_id(kind, commit, str(index))


def capture_workspace(
    repo: Repo,
    config: Config,
    *,
    message: str | None = None,
    commit_rev: str | None = None,
    name: str | None = None,
    repeat: int | None = None,
) -> dict[str, Any]:
    """The working tree as a `workspace` run, or as a `ci` run linked to `commit_rev`; with `repeat`,
    that repeat of the commit (a derived id)."""
    params, metrics, series = _workdir_patterns(repo, config, commit_rev or "HEAD")
    readers = FileReaders(Limits.from_config(config.limits), strict=True)
    values = collect_values(WorkdirSource(repo.root), params, metrics, readers, series)
    if values.empty:
        files = ", ".join(params + metrics)
        raise InputError(f"no params or metrics files found in the working tree (looked for {files})")
    rev = commit_rev or "HEAD"
    info = commit_info(repo, rev) if repo.commit_of(rev) else None
    if commit_rev and info is None:
        raise InputError(f"--commit {commit_rev}: not a commit in this repository")
    kind = "ci" if commit_rev else "workspace"
    if repeat is not None and info is None:
        raise InputError("--repeat: a repeat is of a commit, and HEAD is not one yet (commit first)")
    record = base_record(kind, values)
    run_id = repeat_id(kind, info.sha, repeat) if (repeat is not None and info) else records.new_id()
    when = records.now_iso()
    record.update(
        run_id=run_id,
        name=validate_run_name(name) if name else None,
        started=when,
        ended=when,
        commit=info.sha if info else None,
        tree=info.tree if (info and commit_rev) else None,
        patch_id=patch_id(repo, info) if (info and commit_rev) else None,
        branch=current_branch(repo),
        author=info.author if info else None,
        message=message if message is not None else (info.message if (info and commit_rev) else None),
        source="record",
        deps=_workdir_deps(repo, config),
        datasets=_workdir_datasets(repo, record["warnings"]),
    )
    return finish_record(record, run_id, when)


def _workdir_patterns(repo: Repo, config: Config, rev: str) -> tuple[list[str], list[str], list[str]]:
    """The files `mlci record` reads: in a DVC project, what the DVC files of `rev` (HEAD, or
    `--commit`) declare, as a capture of it reads them; else the config's."""
    sha = repo.commit_of(rev)
    if sha is None or not is_dvc_project(repo, sha):
        return config.params_files, config.metrics_files, []
    from mlci_tui.project.reader import ProjectReader  # lazy: the DVC layer, for DVC projects only

    with ProjectReader(repo) as reader:
        wanted = reader.patterns(sha, config)
    return wanted.params, wanted.metrics, wanted.series


def finish_record(record: dict[str, Any], run_id: str, when: str) -> dict[str, Any]:
    """A run body as a ledger event, wrapped in the envelope (id, time); `LedgerStore.append`
    scrubs its secrets, as every event's."""
    return records.envelope("run", record, event_id=run_id, time=when)


def validate_run_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_RUN_NAME or "\x00" in name:
        raise InputError(f"run name must be 1 to {MAX_RUN_NAME} characters without NUL")
    return name


def _workdir_deps(repo: Repo, config: Config) -> dict[str, str]:
    patterns = config.section("train")["deps"]
    if not patterns:
        return {}
    paths = WorkdirSource(repo.root).find(patterns)
    if not paths:
        return {}
    proc = repo.run("hash-object", "--stdin-paths", input=("\n".join(paths) + "\n").encode())
    return dict(zip(paths, proc.stdout.decode().split()))


def _workdir_datasets(repo: Repo, warnings: list[str]) -> dict[str, str]:
    """The same for the working tree's pointer files (a bad one becomes a warning)."""
    # lazy: the data layer (~10 ms) is for a capture; the pre-commit hook reads values through this module
    from mlci_tui.data.status import workspace_pointers

    try:
        return {p.path: p.content_id for _f, p in workspace_pointers(repo.root)}
    except MlciError as exc:
        warnings.append(str(exc))
        return {}
