"""What a commit's DVC files declare: params, metrics and plots paths, read from git objects.

Understands `dvc.yaml` (top-level `params`/`metrics`/`plots`, stage `params`/`metrics`/
`plots`, DVC 2.x stage `live:` sections, `foreach` and `matrix` stages, `${...}` paths resolved
from `params.yaml` and `vars`), and the older single-stage files (`*.dvc`, `Dvcfile`) whose
outputs carry `metric: true`. Paths are repository-relative and normalised; a declared folder
is expanded by the caller. `mlci_tui.project.reader` turns these declarations into a run's
values for capture and import alike.
"""

from __future__ import annotations

import itertools
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from mlci_tui.capture.readers import Limits, decode, parse_tree
from mlci_tui.errors import InputError
from mlci_tui.importers import simple_yaml
from mlci_tui.importers.objects import Entry, ObjectReader

DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"
DEFAULT_PARAMS = "params.yaml"
SKIP_DIRS = {".git", ".dvc"}
_TEMPLATE = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")
_INDEX = re.compile(r"\[(\d+)\]")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")


@dataclass(frozen=True)
class PlotDecl:
    """One plot as `dvc.yaml` defines it (DVC's `plots:` item, top level or in a stage).

    `x`/`y` map a data file to the column(s) drawn from it (empty: DVC's defaults, `step`
    or the row index against the last column); `template` is DVC's (`linear`, `simple`,
    `scatter`, `smooth`, `confusion`, `confusion_normalized`, `bar_horizontal`, ...).
    A folder or an image file is listed with no columns; `image` says which."""

    id: str
    files: tuple[str, ...]
    x: tuple[tuple[str, str], ...] = ()
    y: tuple[tuple[str, tuple[str, ...]], ...] = ()
    template: str | None = None
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None

    @property
    def image(self) -> bool:
        return all(f.lower().endswith(IMAGE_SUFFIXES) for f in self.files)


@dataclass
class Declared:
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    plot_decls: list[PlotDecl] = field(default_factory=list)  # the plots with their properties
    stage_files: list[str] = field(default_factory=list)  # dvc.yaml, dvc.lock, *.dvc found
    pointer_files: list[str] = field(default_factory=list)  # mlci's own .mlci pointers found
    # DVC 2.x `live:` outputs: (path, summary) for `<path>.json` and the step files under `<path>/`
    live: list[tuple[str, bool]] = field(default_factory=list)
    # metrics that are stage outputs DVC caches (no `cache: false`): DVC keeps them out of git
    cached: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, kind: str, path: str) -> None:
        target: list[str] = getattr(self, kind)
        if path not in target:
            target.append(path)


POINTER_SUFFIX = ".mlci"


def is_stage_file(name: str) -> bool:
    return name in (DVC_YAML, DVC_LOCK, "Dvcfile") or name.endswith(".dvc")


def _wanted(name: str) -> bool:
    """The files the walk collects: DVC's stage and pointer files, and mlci's pointers."""
    return is_stage_file(name) or name.endswith(POINTER_SUFFIX)


class DvcReader:
    """Finds and interprets DVC files in commits, caching work by git object id."""

    def __init__(self, objects: ObjectReader, limits: Limits) -> None:
        self.objects = objects
        self.limits = limits
        self._found: dict[str, list[tuple[str, Entry]]] = {}
        self._parsed: dict[str, Any] = {}

    # ------------------------------------------------------------------ finding
    def stage_files(self, tree: str) -> list[tuple[str, Entry]]:
        """Every dvc.yaml, dvc.lock, Dvcfile, *.dvc and *.mlci blob under `tree` (cached per subtree)."""
        cached = self._found.get(tree)
        if cached is not None:
            return cached
        out: list[tuple[str, Entry]] = []
        for name, entry in self.objects.tree(tree).items():
            if entry.is_tree:
                if name not in SKIP_DIRS:
                    out.extend((f"{name}/{path}", sub) for path, sub in self.stage_files(entry.oid))
            elif entry.is_blob and _wanted(name):
                out.append((name, entry))
        self._found[tree] = out
        return out

    def parse(self, path: str, oid: str) -> Any:
        """A YAML/JSON/TOML blob parsed once per object id; InputError when it cannot be."""
        key = f"{oid}:{posixpath.splitext(path)[1]}"
        if key not in self._parsed:
            data = self.objects.blob(oid)
            try:
                if data is None:
                    raise InputError(f"{path}: object {oid[:12]} is missing from this clone")
                name = path if path.endswith((".yaml", ".yml", ".json", ".toml")) else f"{path}.yaml"
                tree = simple_yaml.NOT_SIMPLE
                if name.endswith((".yaml", ".yml")):
                    tree = simple_yaml.load(decode(name, data, self.limits))
                self._parsed[key] = parse_tree(name, data, self.limits) if tree is simple_yaml.NOT_SIMPLE else tree
            except InputError as exc:
                self._parsed[key] = exc
        value = self._parsed[key]
        if isinstance(value, InputError):
            raise InputError(str(value).replace(f"{path}.yaml", path))
        return value

    # ------------------------------------------------------------- interpreting
    def declared(self, root: str) -> Declared:
        """Params, metrics and plots paths the commit (root tree or commit id) declares."""
        out = Declared()
        for path, entry in self.stage_files(root):
            name = posixpath.basename(path)
            if not is_stage_file(name):
                out.pointer_files.append(path)
                continue
            out.stage_files.append(path)
            if name == DVC_LOCK:
                continue
            try:
                doc = self.parse(path, entry.oid)
            except InputError as exc:
                out.warnings.append(f"{exc}; its declarations are not read")
                continue
            if not isinstance(doc, dict):
                continue
            wdir = posixpath.dirname(path)
            if name == DVC_YAML:
                # `${...}` needs params.yaml and the vars files; without it they are not read
                templated = b"${" in (self.objects.blob(entry.oid) or b"")
                self._dvc_yaml(root, path, wdir, doc, out, templated)
            else:
                self._single_stage(path, wdir, doc, out)
        return out

    def _context(self, root: str, path: str, wdir: str, doc: dict[str, Any], out: Declared) -> dict[str, Any]:
        """Values `${...}` can name: params.yaml beside dvc.yaml, then each `vars` entry."""
        context: dict[str, Any] = {}
        sources: list[Any] = [DEFAULT_PARAMS] if self.objects.lookup(root, _join(wdir, DEFAULT_PARAMS)) else []
        raw_vars = doc.get("vars") or []
        sources += raw_vars if isinstance(raw_vars, list) else [raw_vars]
        for item in sources:
            if isinstance(item, dict):
                _merge(context, item)
            elif isinstance(item, str):
                file, _, keys = item.partition(":")
                loaded = self._load_vars(root, _join(wdir, file), path, out)
                if keys:
                    loaded = {k: loaded[k] for k in keys.split(",") if k in loaded}
                _merge(context, loaded)
        return context

    def _load_vars(self, root: str, file: str, where: str, out: Declared) -> dict[str, Any]:
        entry = self.objects.lookup(root, file)
        if entry is None or not entry.is_blob:
            out.warnings.append(f"{where}: vars file {file} is not in this commit")
            return {}
        try:
            data = self.parse(file, entry.oid)
        except InputError as exc:
            out.warnings.append(str(exc))
            return {}
        return data if isinstance(data, dict) else {}

    def _dvc_yaml(self, root: str, path: str, wdir: str, doc: dict[str, Any], out: Declared, templated: bool) -> None:
        context = self._context(root, path, wdir, doc, out) if templated else {}
        where = path
        for kind in ("params", "metrics", "plots"):
            for item in _as_list(doc.get(kind)):
                for file in _paths(item, kind):
                    self._add(out, kind, wdir, file, context, where)
        for item in _as_list(doc.get("plots")):
            self._add_plot(out, wdir, item, context, where)
        stages = doc.get("stages")
        if not isinstance(stages, dict):
            return
        for stage_name, stage in stages.items():
            if not isinstance(stage, dict):
                continue
            for scope, body in _expand_stage(str(stage_name), stage, context, path, out):
                stage_wdir = _join(wdir, str(body.get("wdir") or "."))
                where = f"{path}: stage {stage_name}"
                for kind in ("params", "metrics", "plots"):
                    for item in _as_list(body.get(kind)):
                        for file in _paths(item, kind):
                            self._add(out, kind, stage_wdir, file, scope, where)
                for item in _as_list(body.get("metrics")):
                    for file in _cached_outputs(item):
                        if (joined := self._resolve(out, "metrics", stage_wdir, file, scope, where)) is not None:
                            out.add("cached", joined)
                for item in _as_list(body.get("plots")):
                    self._add_plot(out, stage_wdir, item, scope, where)
                self._add_live(out, stage_wdir, body.get("live"), scope, where)

    def _add_live(self, out: Declared, wdir: str, live: Any, context: dict[str, Any], where: str) -> None:
        """DVC 2.x `live: {path: {summary: true, html: true}}`: dvclive's summary `<path>.json`
        (unless `summary: false`) and its step files under `<path>/`."""
        if not isinstance(live, dict):
            return
        for key, props in live.items():
            joined = self._resolve(out, "live", wdir, str(key), context, where)
            if joined is None:
                continue
            summary = not (isinstance(props, dict) and props.get("summary") is False)
            if (joined, summary) not in out.live:
                out.live.append((joined, summary))

    def _single_stage(self, path: str, wdir: str, doc: dict[str, Any], out: Declared) -> None:
        """DVC 0.x/1.x stage files: outputs with `metric: true` (or a metric spec)."""
        stage_wdir = _join(wdir, str(doc.get("wdir") or "."))
        for item in _as_list(doc.get("outs")):
            if isinstance(item, dict) and item.get("metric") and isinstance(item.get("path"), str):
                out.add("metrics", _join(stage_wdir, item["path"]))
                if item.get("cache") is not False:
                    out.add("cached", _join(stage_wdir, item["path"]))
        for item in _as_list(doc.get("metrics")):
            for file in _paths(item, "metrics"):
                out.add("metrics", _join(stage_wdir, file))

    def _add(self, out: Declared, kind: str, wdir: str, file: str, context: dict[str, Any], where: str) -> None:
        joined = self._resolve(out, kind, wdir, file, context, where)
        if joined is not None:
            out.add(kind, joined)

    def _resolve(
        self, out: Declared, kind: str, wdir: str, file: str, context: dict[str, Any], where: str
    ) -> str | None:
        """A declared path, templated and joined to its stage's folder; None (with a warning) if it cannot be."""
        try:
            resolved = interpolate(file, context)
        except KeyError as exc:
            out.warnings.append(f"{where}: {kind} path {file!r}: ${{{exc.args[0]}}} is not defined; path not read")
            return None
        joined = _join(wdir, resolved)
        if joined.startswith("../") or joined == "..":
            out.warnings.append(f"{where}: {kind} path {file!r} leaves the repository; refused")
            return None
        return joined

    def _add_plot(self, out: Declared, wdir: str, item: Any, context: dict[str, Any], where: str) -> None:
        """One `plots:` item as a PlotDecl: `file`, `file: {x, y, template, title}`, or a plot id
        with `y: {file: column(s)}` (and `x: column` or `x: {file: column}`)."""
        if isinstance(item, str):
            item = {item: None}
        if not isinstance(item, dict):
            return
        for key, props in item.items():
            props = props if isinstance(props, dict) else {}
            meta = {k: str(props[k]) for k in ("template", "title", "x_label", "y_label") if props.get(k) is not None}
            if isinstance(props.get("y"), dict):  # a plot id: the files are in y (and x)
                ys: list[tuple[str, tuple[str, ...]]] = []
                for file, cols in props["y"].items():
                    joined = self._resolve(out, "plots", wdir, str(file), context, where)
                    if joined is not None:
                        ys.append((joined, tuple(str(c) for c in _as_list(cols))))
                xs: list[tuple[str, str]] = []
                if isinstance(props.get("x"), dict):
                    for file, col in props["x"].items():
                        joined = self._resolve(out, "plots", wdir, str(file), context, where)
                        if joined is not None:
                            xs.append((joined, str(col)))
                elif props.get("x") is not None:
                    xs = [(file, str(props["x"])) for file, _cols in ys]
                files = tuple(dict.fromkeys([f for f, _c in ys] + [f for f, _c in xs]))
                if files:
                    out.plot_decls.append(PlotDecl(str(key), files, tuple(xs), tuple(ys), **meta))
                continue
            joined = self._resolve(out, "plots", wdir, str(key), context, where)
            if joined is None:
                continue
            x = ((joined, str(props["x"])),) if props.get("x") is not None else ()
            y = ((joined, tuple(str(c) for c in _as_list(props["y"]))),) if props.get("y") is not None else ()
            out.plot_decls.append(PlotDecl(joined, (joined,), x, y, **meta))


def _expand_stage(
    name: str, stage: dict[str, Any], context: dict[str, Any], path: str, out: Declared
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(context, stage body) pairs: one for a plain stage, one per item of a `foreach`, one per
    combination of a `matrix` (`${item.<axis>}`, and `${key}` the values joined by `-`)."""
    if "foreach" not in stage:
        if "matrix" in stage:
            return _expand_matrix(name, stage, context, path, out)
        return [(context, stage)]
    items = stage["foreach"]
    if isinstance(items, str):
        try:
            items = lookup(context, _TEMPLATE.fullmatch(items.strip()).group("inner"))  # type: ignore[union-attr]
        except (KeyError, AttributeError):
            out.warnings.append(f"{path}: stage {name}: foreach {items!r} cannot be resolved")
            return []
    body = stage.get("do")
    if not isinstance(body, dict):
        return []
    pairs = list(items.items()) if isinstance(items, dict) else list(enumerate(items or []))
    result = []
    for key, value in pairs:
        scope = dict(context)
        scope["item"] = value
        scope["key"] = key
        result.append((scope, body))
    return result


def _expand_matrix(
    name: str, stage: dict[str, Any], context: dict[str, Any], path: str, out: Declared
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    matrix = stage["matrix"]
    if not isinstance(matrix, dict) or not matrix:
        out.warnings.append(f"{path}: stage {name}: matrix is not a mapping of lists; its paths are not read")
        return []
    axes: list[tuple[str, list[Any]]] = []
    for axis, values in matrix.items():
        if isinstance(values, str):
            try:
                values = lookup(context, _TEMPLATE.fullmatch(values.strip()).group("inner"))  # type: ignore[union-attr]
            except (KeyError, AttributeError):
                out.warnings.append(f"{path}: stage {name}: matrix {axis}: {values!r} cannot be resolved")
                return []
        axes.append((str(axis), list(values) if isinstance(values, (list, dict)) else [values]))
    result = []
    for combination in itertools.product(*(values for _axis, values in axes)):
        scope = dict(context)
        scope["item"] = {axis: value for (axis, _values), value in zip(axes, combination)}
        scope["key"] = "-".join(str(v) for v in combination)
        result.append((scope, stage))
    return result


def interpolate(text: str, context: dict[str, Any]) -> str:
    """`${a.b}` / `${a[0]}` replaced by their values (DVC's parametrisation, paths only)."""
    if "${" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        found = lookup(context, match.group("inner").strip())
        if isinstance(found, bool):
            return "true" if found else "false"
        return str(found)

    return _TEMPLATE.sub(value, text).replace("\\${", "${")


def lookup(context: Any, key: str) -> Any:
    node = context
    for part in _INDEX.sub(r".\1", key).split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(key)
    return node


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _paths(item: Any, kind: str) -> list[str]:
    """File paths named by one list item of `params`, `metrics` or `plots`."""
    if isinstance(item, str):
        # a stage's `params: [lr]` names a key of params.yaml, not a file
        return [DEFAULT_PARAMS] if kind == "params" and not _looks_like_file(item) else [item]
    if not isinstance(item, dict):
        return []
    files: list[str] = []
    for key, spec in item.items():
        if kind == "plots" and isinstance(spec, dict) and ("y" in spec or "x" in spec):
            # a plot id with `y: {file: column}` (and maybe `x: {file: column}`)
            for axis in ("y", "x"):
                if isinstance(spec.get(axis), dict):
                    files.extend(str(f) for f in spec[axis])
            if files:
                continue
        files.append(str(key))
    return files


def _cached_outputs(item: Any) -> list[str]:
    """The files of one stage `metrics:` item that DVC caches: a plain path (DVC's default is
    `cache: true`), or `{path: {...}}` without `cache: false`."""
    if isinstance(item, str):
        return [item]
    if not isinstance(item, dict):
        return []
    return [str(k) for k, spec in item.items() if not (isinstance(spec, dict) and spec.get("cache") is False)]


def _looks_like_file(item: str) -> bool:
    return item.endswith((".yaml", ".yml", ".json", ".toml", ".py"))


def _join(wdir: str, path: str) -> str:
    joined = posixpath.normpath(posixpath.join(wdir, path)) if wdir else posixpath.normpath(path)
    return "" if joined == "." else joined
