"""One commit's run, read from git objects: what its config and its DVC files declare.

The post-commit capture of a DVC project, `mlci record --commit`'s sibling `mlci capture` and
`mlci import dvc` all build a commit's run here, so a commit captured and the same commit
imported are one run: one id (`records.derived_id("commit", sha)`), the same params, metrics,
steps, datasets and outputs (docs/contracts.md: runs and ids). What differs between the two
is only how it was captured (`conflicts.CAPTURE_FIELDS`: time, branch, patch-id, staleness,
source, warnings).

What is read at a commit:

- params: the config's `params.files` (default `params.yaml`) and every params file
  `dvc.yaml` names (its `params:` adds files and keys to look at; whole files are read);
- metrics: in a DVC project (`dvc.yaml`, `dvc.lock`, `Dvcfile` or `.dvc/` at the root) that
  declares metrics, those (DVC 3 `metrics:`, DVC 2.x `live:` summaries, `metric: true`
  outputs of old stage files) plus the config's `metrics.files` (globs, opted in); otherwise
  the config's `metrics.files` (default `metrics.json`, `dvclive/metrics.json`);
- steps: dvclive's `plots/metrics/**/*.tsv` beside a `metrics.json`, a `live:` step folder,
  and declared plot files holding rows;
- datasets and outputs: `data.dvc.split_datasets` over the `.dvc` files and `dvc.lock`, and
  mlci's `.mlci` pointers (datasets).

Values go through capture's readers (`capture.build.collect_values`); each blob is parsed once
per reader (a history shares most files), plain params YAML through `importers.simple_yaml`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.capture.build import FileReaders, Values, base_record, collect_values, finish_record
from mlci_tui.capture.commit import ObjectSource
from mlci_tui.capture.readers import (
    Limits,
    MetricsRead,
    Step,
    decode,
    flatten,
    read_params,
    read_table_metrics,
)
from mlci_tui.constants import CONFIG_FILE, DVC_ROOT_FILES
from mlci_tui.data.dvc import DvcFile, read_dvc_layout, split_datasets
from mlci_tui.data.pointer import parse_pointer
from mlci_tui.errors import ConfigError, InputError, MlciError
from mlci_tui.gitio import CommitInfo, Repo
from mlci_tui.importers import simple_yaml
from mlci_tui.importers.dvc_files import DEFAULT_PARAMS, Declared, DvcReader
from mlci_tui.importers.objects import ObjectReader
from mlci_tui.ledger import records

MEMO_SIZE = 4096  # parsed files kept (least recently used dropped first)
PREFETCH_BYTES = 32 * 1024 * 1024  # at most this much blob data fetched ahead at once
DEFAULT_HOT = {"dvc.yaml": 0, "params.yaml": 0, "metrics.json": 0, "dvclive/metrics.json": 0}
PLOT_SUFFIXES = (".csv", ".tsv", ".json")


class _BlobReaders(FileReaders):
    """Capture's readers, each blob parsed once per ProjectReader (its memo); never strict."""

    def __init__(self, reader: ProjectReader, source: ObjectSource, limits: Limits) -> None:
        super().__init__(limits, strict=False)
        self.reader = reader
        self.oids = source.oids

    def params(self, path: str, data: bytes) -> dict[str, Any]:
        return self.reader.parsed_params(path, self.oids[path], data, self.limits)

    def metrics(self, path: str, data: bytes, series: str | None = None) -> MetricsRead:
        key = ("metrics", path, self.oids[path], series or "", repr(self.limits))
        make = partial(super().metrics, path, data, series)
        return _copy(self.reader.memo(key, make))


@dataclass
class Patterns:
    """The files a commit's run reads: params and metrics patterns, `live:` step folders."""

    params: list[str]
    metrics: list[str]
    series: list[str]
    declared: Declared
    dvc: bool


@dataclass
class CommitValues:
    """What one commit holds for its run, and what the reading noticed."""

    values: Values
    declared: Declared
    dvc: bool  # a DVC project at this commit
    absent: list[str] = field(default_factory=list)  # declared, not committed (kept in DVC's cache)
    unparseable: dict[str, str] = field(default_factory=dict)


class ProjectReader:
    """Reads commits into run records; one per capture or import (it caches parses by object id)."""

    def __init__(self, repo: Repo, objects: ObjectReader | None = None) -> None:
        self.repo = repo
        self.objects = objects or ObjectReader(repo)
        self.dvc = DvcReader(self.objects, Limits())
        self._reads: OrderedDict[tuple[str, ...], Any] = OrderedDict()  # most recently used last
        self._configs: dict[tuple[str, str], tuple[config_mod.Config, list[str]]] = {}
        self._hot: dict[str, int] = dict(DEFAULT_HOT)  # path -> size of the files the last commit read

    def __enter__(self) -> ProjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.objects.close()

    def prefetch(self, roots: list[str]) -> None:
        """Fetch ahead, in a few batched git processes, the files the last commit read, at each of `roots`."""
        room = min(
            PREFETCH_BYTES // max(sum(self._hot.values()), 1), self.objects.blob_capacity // max(len(self._hot), 1)
        )
        self.objects.prefetch_paths(roots[: max(1, room)], sorted(self._hot))

    # ------------------------------------------------------------ memoised parses
    def memo(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        """One parse per (reader, path, blob id): most commits share most files."""
        if key in self._reads:
            self._reads.move_to_end(key)
        else:
            try:
                self._reads[key] = make()
            except InputError as exc:
                self._reads[key] = exc
            if len(self._reads) > MEMO_SIZE:
                self._reads.popitem(last=False)
        found = self._reads[key]
        if isinstance(found, InputError):
            raise InputError(str(found))
        return found

    def parsed_params(self, path: str, oid: str, data: bytes, limits: Limits) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            if path.endswith((".yaml", ".yml")):
                tree = simple_yaml.load(decode(path, data, limits))
                if tree is not simple_yaml.NOT_SIMPLE:
                    return flatten(path, tree, limits)
            return read_params(path, data, limits)

        return dict(self.memo(("params", path, oid, repr(limits)), make))

    # ------------------------------------------------------------ the commit
    def is_dvc(self, root: str) -> bool:
        """A DVC project at this commit: DVC's files or folder at the top of its tree."""
        names = self.objects.tree(root)
        return any(name in names for name in DVC_ROOT_FILES)

    def config(self, root: str) -> tuple[config_mod.Config, list[str]]:
        """The config the commit carries (mlci.yaml, else `[tool.mlci]`), as capture loads it;
        a bad one is a warning and the defaults."""
        yaml_entry = self.objects.lookup(root, CONFIG_FILE)
        py_entry = self.objects.lookup(root, "pyproject.toml")
        key = (yaml_entry.oid if yaml_entry else "", py_entry.oid if py_entry else "")
        if key not in self._configs:
            warnings: list[str] = []
            try:
                if yaml_entry is not None:
                    text = (self.objects.blob(yaml_entry.oid) or b"").decode("utf-8")
                    cfg = config_mod.load_text(self.repo.root, text)
                elif py_entry is not None and b"mlci" in (self.objects.blob(py_entry.oid) or b""):
                    cfg = config_mod.load_from_git(self.repo, root)
                else:
                    cfg = _defaults(self.repo)
            except UnicodeDecodeError as exc:
                warnings.append(f"{CONFIG_FILE}: not UTF-8 text (offset {exc.start}); captured with the default config")
                cfg = _defaults(self.repo)
            except ConfigError as exc:
                warnings.append(f"{exc}; captured with the default config")
                cfg = _defaults(self.repo)
            self._configs[key] = (cfg, warnings)
        return self._configs[key]

    def patterns(self, root: str, config: config_mod.Config) -> Patterns:
        """What to read at a commit: the config's files and what its DVC files declare."""
        dvc = self.is_dvc(root)
        declared = self.dvc.declared(root) if dvc else Declared()
        metrics = list(declared.metrics)
        for path, summary in declared.live:
            if summary and f"{path}.json" not in metrics:
                metrics.append(f"{path}.json")
        if metrics:
            metrics += [p for p in config.data["metrics"]["files"] or [] if p not in metrics]
        else:
            metrics = config.metrics_files
        params = list(dict.fromkeys(config.params_files + declared.params))
        return Patterns(params, metrics, [p for p, _summary in declared.live], declared, dvc)

    def read(self, root: str, config: config_mod.Config) -> CommitValues:
        """Params, metrics and step series of one commit (root tree or commit id)."""
        limits = Limits.from_config(config.limits)
        wanted = self.patterns(root, config)
        declared = wanted.declared
        source = ObjectSource(self.objects, root)
        found = CommitValues(Values(), declared, wanted.dvc)
        if wanted.dvc:
            named = declared.metrics + [f"{p}.json" for p, summary in declared.live if summary]
            named += [p for p in declared.params if p != DEFAULT_PARAMS]
            found.absent = [p for p in named if self.objects.lookup(root, p) is None]
        values = collect_values(
            source, wanted.params, wanted.metrics, _BlobReaders(self, source, limits), wanted.series
        )
        values.warnings[:0] = declared.warnings
        series_files = {s.file for s in values.steps}
        for path in declared.plots:
            self._read_plots(root, source, path, series_files, values, limits)
        if wanted.dvc:
            found.unparseable = self._explain(source, values)
        for path in dict.fromkeys(found.absent):
            values.warnings.append(f"{path}: declared but not committed (a DVC output kept in its cache); absent")
        found.absent = sorted(set(found.absent))
        found.values = values
        self._hot = {p: len(self.objects.blob(o) or b"") for p, o in source.oids.items()}
        if wanted.dvc:
            self._hot.update((p, len(self.objects.blob(e.oid) or b"")) for p, e in self.dvc.stage_files(root))
        return found

    def _read_plots(
        self, root: str, source: ObjectSource, path: str, seen: set[str], values: Values, limits: Limits
    ) -> None:
        """Declared plot files that hold series (CSV/TSV rows, a JSON list of records) become steps."""
        entry = self.objects.lookup(root, path)
        if entry is None:
            return
        files = [p for p, e in self.objects.walk(root, path) if e.is_blob] if entry.is_tree else [path]
        files = [f for f in files if f not in seen and f.endswith(PLOT_SUFFIXES)]
        data = source.read_many(source.find(files)) if files else {}
        for file in files:
            if file not in data:
                continue
            try:
                read = _copy(
                    self.memo(("plot", file, source.oids[file]), partial(_read_plot, file, data[file], limits))
                )
            except InputError as exc:
                values.warnings.append(str(exc))
                continue
            marker = "plots/metrics/"
            if marker in file and file.endswith(".tsv"):
                # dvclive: plots/metrics/train/loss.tsv is the series of the value `train.loss`
                name = file.split(marker, 1)[1][: -len(".tsv")].replace("/", ".")
                for step in read.steps:
                    step.name = name
            values.steps.extend(read.steps)
            values.warnings.extend(read.warnings)

    def _explain(self, source: ObjectSource, values: Values) -> dict[str, str]:
        """Unparseable files and why; merge-conflict markers named as such."""
        unparseable: dict[str, str] = {}
        for i, warning in enumerate(values.warnings):
            path = warning.split(":", 1)[0]
            if path not in source.oids or path in values.metrics or path in values.params:
                continue
            data = source.read_many([path]).get(path, b"")
            line = _conflict_line(data)
            if line:
                reason = f"merge-conflict markers at line {line}"
                values.warnings[i] = f"{path}: unparseable: {reason}; not recorded"
            else:
                reason = warning.split(": ", 1)[1] if ": " in warning else warning
            unparseable[path] = reason
        return unparseable

    def datasets(self, root: str, found: CommitValues) -> tuple[dict[str, str], dict[str, str]]:
        """(datasets, outputs) of the commit: path -> content hash.

        In a DVC project, stage outputs nothing depends on are outputs; elsewhere every pointer
        is a dataset, as `data.tree.dataset_hashes` (the plain capture) reads them."""
        files: list[DvcFile] = []
        declared = found.declared if found.dvc else self.dvc.declared(root)
        for path in declared.stage_files + declared.pointer_files:
            if not path.endswith((".dvc", ".mlci")) and path.rsplit("/", 1)[-1] != "dvc.lock":
                continue
            entry = self.objects.lookup(root, path)
            data = self.objects.blob(entry.oid) if entry is not None and entry.is_blob else None
            if data is None or entry is None:
                continue
            try:
                files.append(self.memo(("layout", path, entry.oid), partial(_layout, path, data)))
            except (InputError, MlciError, UnicodeDecodeError):
                continue  # a bad pointer file is the data commands' concern; the run keeps its values
        if not found.dvc:
            files = [DvcFile(f.pointers, f.deps, False) for f in files]
        return split_datasets(files)

    def deps(self, root: str, config: config_mod.Config) -> dict[str, str]:
        """Blob ids of the files `train.deps` names, as capture records them."""
        patterns = config.section("train")["deps"]
        if not patterns:
            return {}
        source = ObjectSource(self.objects, root)
        return {p: source.oids[p] for p in source.find(patterns, [])}

    def record(
        self,
        commit: CommitInfo,
        *,
        config: config_mod.Config | None = None,
        kind: str = "commit",
        source: str,
        name: str | None = None,
        parent: str | None = None,
        patch: str | None = None,
        branch: str | None = None,
        time: str | None = None,
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """The commit's run (None when it holds no params or metrics) and its warnings.

        `time` is the event time: the capture's clock, or (import) the commit time so that two
        clones importing one history write the same bytes."""
        config_warnings: list[str] = []
        if config is None:
            config, config_warnings = self.config(commit.tree)
        found = self.read(commit.tree, config)
        values = found.values
        values.warnings[:0] = config_warnings
        if values.empty:
            return None, values.warnings
        datasets, outputs = self.datasets(commit.tree, found)
        record = base_record(kind, values)
        run_id = records.derived_id(kind, commit.sha)
        record.update(
            run_id=run_id,
            name=name,
            started=records.epoch_iso(commit.author_time),
            ended=records.epoch_iso(commit.commit_time),
            commit=commit.sha,
            tree=commit.tree,
            patch_id=patch,
            branch=branch,
            author=commit.author,
            message=commit.message,
            source=source,
            parent=parent,
            datasets=datasets,
            deps=self.deps(commit.tree, config),
        )
        if outputs:
            record["outputs"] = outputs  # a field only where there are some: older bodies stay equal
        if found.dvc:
            record["dvc"] = {"absent": found.absent, "unparseable": found.unparseable}
        return finish_record(record, run_id, time or records.epoch_iso(commit.commit_time)), values.warnings


def _defaults(repo: Repo) -> config_mod.Config:
    return config_mod.Config(repo.root, None, config_mod.validate({}, CONFIG_FILE))


def _layout(path: str, data: bytes) -> DvcFile:
    text = data.decode("utf-8")
    if path.endswith(".mlci"):
        return DvcFile([parse_pointer(text, path)], [], False)
    return read_dvc_layout(text, path)


def _read_plot(path: str, data: bytes, limits: Limits) -> MetricsRead:
    if path.endswith(".json"):
        try:
            rows = json.loads(decode(path, data, limits))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        if isinstance(rows, dict) and len(rows) == 1 and isinstance(next(iter(rows.values())), list):
            rows = next(iter(rows.values()))  # DVC's {"name": [{...}, ...]} plot layout
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return MetricsRead()
        columns = list(dict.fromkeys(k for r in rows for k in r))
        if not rows or len(columns) > limits.max_keys:
            return MetricsRead()
        lines = ["\t".join(columns)] + ["\t".join(str(r.get(c, "")) for c in columns) for r in rows]
        read = read_table_metrics(path[: -len(".json")] + ".tsv", "\n".join(lines).encode(), limits)
        for step in read.steps:
            step.file = path
        return read
    return read_table_metrics(path, data, limits)


def _copy(read: MetricsRead) -> MetricsRead:
    """A cached read's values as a new object: callers rename steps and extend lists."""
    return MetricsRead(
        dict(read.values), [Step(s.file, s.name, s.step, s.value) for s in read.steps], list(read.warnings)
    )


def _conflict_line(data: bytes) -> int | None:
    for number, line in enumerate(data.split(b"\n"), 1):
        if line.startswith((b"<<<<<<< ", b">>>>>>> ")) or line.rstrip(b"\r") in (b"<<<<<<<", b"======="):
            return number
    return None
