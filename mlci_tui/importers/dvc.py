"""`mlci import dvc`: a DVC project's history (and its experiments) as `import` runs.

Every commit is read from git objects, never checked out: experiment commits can name data
that is not present, and the user's working tree is never touched. What a commit's DVC files
declare decides what is read; values go through the same readers as a commit capture
(`capture.read_params`, `read_metrics`, `read_table_metrics`, in the order `runs.read_values`
uses them), so names, limits and warnings are those of capture. A file that cannot be read at
some commit is recorded as unparseable with its reason and the import goes on.

Speed: each distinct blob is parsed once per import (most commits share most files), plain
params YAML goes through `simple_yaml` (the full YAML 1.2 parser otherwise), and the files
the previous commit read are fetched ahead for the next commits in batched `cat-file` runs.
"""

from __future__ import annotations

import json
import posixpath
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.capture.build import FileReaders, Values, base_record, collect_values, finish_record
from mlci_tui.capture.readers import (
    Limits,
    MetricsRead,
    Step,
    as_number,
    decode,
    flatten,
    parse_yaml12,
    read_metrics,
    read_params,
    read_table_metrics,
)
from mlci_tui.errors import InputError
from mlci_tui.gitio import COMMIT_FIELDS, CommitInfo, Repo, parse_commit
from mlci_tui.importers import dvc_datasets, simple_yaml
from mlci_tui.importers.common import ImportReport, append_new
from mlci_tui.importers.dvc_files import DEFAULT_PARAMS, Declared, DvcReader
from mlci_tui.importers.objects import ObjectReader
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sources import FileSource, literal_prefix, matches

KNOWN_SUFFIXES = (".json", ".yaml", ".yml", ".toml", ".csv", ".tsv")
EXPS_PREFIX = "refs/exps/"
_SEP = "\x1f"
_END = "\x1e"
MEMO_SIZE = 4096  # parsed files kept (least recently used dropped first)
WINDOW = 256  # commits whose objects are fetched ahead in one batch
PREFETCH_BYTES = 32 * 1024 * 1024  # at most this much blob data fetched ahead at once
DEFAULT_HOT = {"dvc.yaml": 0, "params.yaml": 0, "metrics.json": 0, "dvclive/metrics.json": 0}


@dataclass(frozen=True)
class Experiment:
    ref: str
    sha: str
    baseline: str
    name: str


class ObjectSource:
    """A commit's files through the shared ObjectReader: a `sources.FileSource`."""

    label = "commit"

    def __init__(self, objects: ObjectReader, root: str) -> None:
        self.objects = objects
        self.root = root
        self._oids: dict[str, str] = {}

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
                if entry.mode == "120000":
                    message = f"{path}: is a symlink; mlci reads no file through a link"
                    if refused is None:
                        raise InputError(message)
                    if message not in refused:
                        refused.append(message)
                    continue
                if entry.is_blob:
                    self._oids[path] = entry.oid
                    found.append(path)
        return sorted(found)

    def sizes(self, paths: list[str]) -> dict[str, int]:
        return {p: len(self.objects.blob(self._oids[p]) or b"") for p in paths}

    def read_many(self, paths: list[str]) -> dict[str, bytes]:
        out = {}
        for path in paths:
            data = self.objects.blob(self._oids[path])
            if data is not None:
                out[path] = data
        return out


# ----------------------------------------------------------------------- history
def list_commits(repo: Repo, rev_args: list[str]) -> list[CommitInfo]:
    """Commits of `git rev-list ARGS`, oldest first, with what a run records about each."""
    fmt = _SEP.join(COMMIT_FIELDS) + _END
    proc = repo.run("log", "--reverse", "--topo-order", f"--format={fmt}", *rev_args, "--", check=False)
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{' '.join(rev_args)}: not a valid revision or range ({detail[-1] if detail else ''})")
    out = []
    for chunk in proc.stdout.decode("utf-8", "replace").split(_END):
        chunk = chunk.lstrip("\n")
        if not chunk:
            continue
        out.append(parse_commit(chunk, _SEP))
    return out


def patch_ids(repo: Repo, commits: list[CommitInfo]) -> dict[str, str]:
    """`git patch-id --stable` of many commits in two processes (first-parent diffs, as capture)."""
    if not commits:
        return {}
    shallow = repo.shallow_commits()
    lines = [f"{c.sha} {c.parents[0]}" if c.parents else c.sha for c in commits if c.sha not in shallow]
    diff_args = ("diff-tree", "--stdin", "-p", "--root", "--no-color", "--full-index")
    diff = repo.run(*diff_args, input=("\n".join(lines) + "\n").encode(), check=False).stdout
    proc = repo.run("patch-id", "--stable", input=diff, check=False)
    result = {}
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 2:
            result[parts[1]] = parts[0]
    return result


def list_experiments(repo: Repo) -> list[Experiment]:
    """DVC 3 experiment refs: `refs/exps/<baseline[:2]>/<baseline[2:]>/<name>`.

    Other refs under refs/exps (stash, celery, exec, temp, apply) are DVC's own queue state
    and have a different shape; they are skipped.
    """
    proc = repo.run("for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", EXPS_PREFIX)
    out = []
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        ref, oid, peeled = (line.split("\0") + ["", ""])[:3]
        parts = ref.split("/")
        if len(parts) != 5 or len(parts[2]) != 2 or len(parts[3]) != 38:
            continue
        baseline = parts[2] + parts[3]
        if not all(c in "0123456789abcdef" for c in baseline):
            continue
        out.append(Experiment(ref, peeled or oid, baseline, parts[4]))
    return out


class _BlobReaders(FileReaders):
    """What `capture.build.read_values` reads, through the same capture readers, each blob
    parsed once for the whole import (DvcImporter's memo); never strict, and no size check."""

    def __init__(self, importer: DvcImporter, source: ObjectSource) -> None:
        super().__init__(importer.limits, strict=False)
        self.importer = importer
        self.oids = source._oids

    def readable(self, source: FileSource, paths: list[str], values: Values) -> list[str]:
        return paths

    def params(self, path: str, data: bytes) -> dict[str, Any]:
        return self.importer._params(path, self.oids[path], data)

    def metrics(self, path: str, data: bytes, series: str | None = None) -> MetricsRead:
        return self.importer._metrics(path, self.oids[path], data, series)


# ----------------------------------------------------------------------- reading
class DvcImporter:
    """Turns commits into run records. One per import: it caches parsed objects across commits."""

    def __init__(self, repo: Repo, limits: Limits | None = None) -> None:
        self.repo = repo
        self.objects = ObjectReader(repo)
        self.limits = limits or Limits.from_config(config_mod.validate({}, "mlci.yaml")["limits"])
        self.dvc = DvcReader(self.objects, self.limits)
        self._reads: OrderedDict[tuple[str, ...], Any] = OrderedDict()  # most recently used last
        self._hot: dict[str, int] = dict(DEFAULT_HOT)  # path -> size of the files the last commit read

    def prefetch(self, roots: list[str]) -> None:
        """Fetch ahead, in a few batched git processes, the files the last commit read, at each of `roots`.

        A history mostly reads the same paths at every commit; fetching them per commit
        would cost one round trip to `git cat-file` per object.
        """
        # as many roots as fit the byte budget and the blob cache (what is fetched must stay until read)
        room = min(
            PREFETCH_BYTES // max(sum(self._hot.values()), 1), self.objects.blob_capacity // max(len(self._hot), 1)
        )
        roots = roots[: max(1, room)]
        self.objects.prefetch_paths(roots, sorted(self._hot))

    def close(self) -> None:
        self.objects.close()

    # ------------------------------------------------------------ per-object reads
    def _memo(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
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

    def _params(self, path: str, oid: str, data: bytes) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            if path.endswith((".yaml", ".yml")):
                tree = simple_yaml.load(decode(path, data, self.limits))
                if tree is not simple_yaml.NOT_SIMPLE:
                    return flatten(path, tree, self.limits)
            return read_params(path, data, self.limits)

        return dict(self._memo(("params", path, oid), make))

    def _metrics(self, path: str, oid: str, data: bytes, series: str | None = None) -> MetricsRead:
        if series is not None:
            read = self._memo(
                ("series", path, oid, series), lambda: read_table_metrics(path, data, self.limits, series_name=series)
            )
        else:
            read = self._memo(("metrics", path, oid), lambda: read_metrics(path, data, self.limits))
        return _copy(read)

    def values(self, root: str) -> tuple[Values, dict[str, Any], Declared]:
        """Params, metrics and step series of one commit (root tree id), and what the import noticed."""
        declared = self.dvc.declared(root)
        source = ObjectSource(self.objects, root)
        absent: list[str] = []
        metric_files: list[str] = []
        odd_files: list[str] = []  # no known suffix: `.metric` files and the like, read as YAML (as DVC does)
        for path in declared.metrics:
            entry = self.objects.lookup(root, path)
            if entry is None:
                absent.append(path)
            elif entry.is_tree:
                metric_files.extend(p for p, e in self.objects.walk(root, path) if e.is_blob)
            elif path.endswith(KNOWN_SUFFIXES):
                metric_files.append(path)
            else:
                odd_files.append(path)
        odd_files += [p for p in metric_files if not p.endswith(KNOWN_SUFFIXES)]
        metric_files = [p for p in metric_files if p.endswith(KNOWN_SUFFIXES)]
        params_files = [p for p in declared.params if self.objects.lookup(root, p) is not None]
        if not declared.stage_files and not params_files and not metric_files:
            # not (yet) a DVC project at this commit: dvclive's default layout, if committed
            for path in ("dvclive/metrics.json",):
                if self.objects.lookup(root, path) is not None:
                    metric_files.append(path)
        for path in declared.params:
            if path not in params_files and path != DEFAULT_PARAMS:
                absent.append(path)
        values = collect_values(source, params_files or [DEFAULT_PARAMS], metric_files, _BlobReaders(self, source))
        values.warnings[:0] = declared.warnings
        for path in odd_files:
            self._read_odd(source, path, values)
        series_files = {s.file for s in values.steps}
        for path in declared.plots:
            self._read_plots(root, source, path, series_files, values)
        unparseable = self._explain(source, values)
        for path in absent:
            values.warnings.append(f"{path}: declared but not committed (a DVC output kept in its cache); absent")
        extra = {"tool": "dvc", "absent": sorted(set(absent)), "unparseable": unparseable}
        self._hot = {p: len(self.objects.blob(o) or b"") for p, o in source._oids.items()}
        self._hot.update((p, len(self.objects.blob(e.oid) or b"")) for p, e in self.dvc.stage_files(root))
        return values, extra, declared

    def _read_odd(self, source: ObjectSource, path: str, values: Values) -> None:
        """A metrics file without a known suffix: DVC reads it as YAML, so `0.93` is one number."""
        data = source.read_many(source.find([path]))
        if path not in data:
            return
        try:
            got = self._memo(("odd", path, source._oids[path]), lambda: self._odd(path, data[path]))
        except InputError as exc:
            values.warnings.append(str(exc))
            return
        if got is None:
            values.warnings.append(f"{path}: neither a number nor a mapping; not recorded")
        else:
            values.metrics[path] = dict(got)

    def _odd(self, path: str, data: bytes) -> dict[str, float] | None:
        tree = parse_yaml12(path, decode(path, data, self.limits))
        if isinstance(tree, (int, float)) and not isinstance(tree, bool):
            return {posixpath.splitext(posixpath.basename(path))[0]: float(tree)}
        if isinstance(tree, dict):
            flat = flatten(path, tree, self.limits)
            return {k: n for k, v in flat.items() if (n := as_number(v)) is not None}
        return None

    def _read_plots(self, root: str, source: ObjectSource, path: str, seen: set[str], values: Values) -> None:
        """Declared plot files that hold series (CSV/TSV rows, a JSON list of records) become steps."""
        entry = self.objects.lookup(root, path)
        if entry is None:
            return
        files = [p for p, e in self.objects.walk(root, path) if e.is_blob] if entry.is_tree else [path]
        files = [f for f in files if f not in seen and f.endswith((".csv", ".tsv", ".json"))]
        data = source.read_many(source.find(files)) if files else {}
        for file in files:
            if file not in data:
                continue
            try:
                read = _copy(
                    self._memo(("plot", file, source._oids[file]), partial(_read_plot, file, data[file], self.limits))
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
            if path not in source._oids or path in values.metrics or path in values.params:
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

    def datasets(self, root: str, declared: Declared) -> dict[str, str]:
        try:
            return dvc_datasets.read(self, root, declared)
        except InputError:
            return {}

    def record(
        self,
        commit: CommitInfo,
        *,
        kind: str = "import",
        name: str | None = None,
        parent: str | None = None,
        patch: str | None = None,
    ) -> tuple[dict[str, Any] | None, list[str]]:
        values, extra, declared = self.values(commit.tree)
        if values.empty:
            return None, values.warnings
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
            branch=None,
            author=commit.author,
            message=commit.message,
            source="import:dvc",
            parent=parent,
            datasets=self.datasets(commit.tree, declared),
        )
        record["import"] = extra
        # the event time is the commit's: two clones importing one history write the same bytes
        return finish_record(record, run_id, records.epoch_iso(commit.commit_time)), values.warnings


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


# ----------------------------------------------------------------------- import
def import_history(
    repo: Repo, rev_args: list[str], *, experiments: bool = False, dry_run: bool = False
) -> ImportReport:
    """Import every commit of `git rev-list REV_ARGS` (and `refs/exps/*` with `experiments`)."""
    report = ImportReport()
    commits = list_commits(repo, rev_args) if rev_args else []
    exps = list_experiments(repo) if experiments else []
    ids = {c.sha: records.derived_id("import", c.sha) for c in commits}
    exp_ids = {e.sha: records.derived_id("experiment", e.sha) for e in exps}
    present = LedgerStore(repo).has_ids([*ids.values(), *exp_ids.values()])
    todo = [c for c in commits if ids[c.sha] not in present]
    report.present += len(commits) - len(todo)
    exps_todo = [e for e in exps if exp_ids[e.sha] not in present]
    report.present += len(exps) - len(exps_todo)
    exp_commits = (
        {c.sha: c for c in list_commits(repo, ["--no-walk", *[e.sha for e in exps_todo]])} if exps_todo else {}
    )
    patches = patch_ids(repo, todo + list(exp_commits.values()))
    importer = DvcImporter(repo)

    def produce() -> Iterator[dict[str, Any]]:
        for i, commit in enumerate(todo):
            if i % WINDOW == 0:
                importer.prefetch([c.tree for c in todo[i : i + WINDOW]])
            record, warnings = importer.record(commit, patch=patches.get(commit.sha))
            report.warnings.extend(f"{commit.sha[:12]}: {w}" for w in warnings)
            if record is None:
                report.skipped += 1
            else:
                yield record
        for i, exp in enumerate(exps_todo):
            if i % WINDOW == 0:
                importer.prefetch([c.tree for e in exps_todo[i : i + WINDOW] if (c := exp_commits.get(e.sha))])
            exp_commit = exp_commits.get(exp.sha)
            if exp_commit is None:
                report.warnings.append(f"{exp.ref}: points at no commit; skipped")
                continue
            record, warnings = importer.record(
                exp_commit, kind="experiment", name=exp.name, parent=exp.baseline, patch=patches.get(exp_commit.sha)
            )
            report.warnings.extend(f"{exp.name}: {w}" for w in warnings)
            if record is None:
                report.skipped += 1
            else:
                yield record

    try:
        if dry_run:
            report.added.extend(produce())
        else:
            append_new(repo, produce(), report)
    finally:
        importer.close()
    return report
