"""DVC plots as DVC defines them, read at the baseline's and the candidate's commits.

`dvc.yaml` says what a plot is (`importers.dvc_files.PlotDecl`: files, x/y columns,
template, title). This module reads each plot's data at both commits (git objects, or DVC's
cache for a file DVC keeps out of git), chooses what a report shows, and makes each plot one
of three charts: x/y lines (`linear`, `simple`, `scatter`, `smooth`; ROC and precision-recall
curves are x/y lines too), a confusion matrix (rows counted per y/x pair), or an image.
Names and values stay raw here: each renderer escapes them for its medium. Renderers that
take any x draw the points as they are (HTML, terminal); Mermaid takes y values over one
shared x axis, so `mermaid_grid` and `resample` put the lines on a grid and say so.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import posixpath
import re
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui.capture.readers import Limits, as_number, cell_number, decode, parse_tree
from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo
from mlci_tui.importers.dvc_files import DvcReader, PlotDecl
from mlci_tui.importers.objects import ObjectReader

BASE, HEAD = "baseline", "candidate"
MAX_NAMES = 4  # y columns drawn per plot (each for both sides)
MAX_POINTS = 2000  # points kept per line; a longer line is thinned evenly, its ends kept
MAX_CLASSES = 30  # a confusion matrix with more labels than this is listed, not drawn
MAX_IMAGE_BYTES = 1_000_000  # a larger image is linked, not embedded
CURVE_GRID = [round(i * 0.05, 2) for i in range(21)]  # ROC and PR curves in Mermaid: x = 0, 0.05, ..., 1
GRID_POINTS = 21  # other curves whose lines do not share their x values
XY_TEMPLATES = ("linear", "simple", "scatter", "smooth", "bar_horizontal", "bar_horizontal_sorted")
CONFUSION_TEMPLATES = ("confusion", "confusion_normalized")
IMAGE_TYPES = {
    ".png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ".jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".gif": ("image/gif", (b"GIF87a", b"GIF89a")),
    ".webp": ("image/webp", (b"RIFF",)),
    ".svg": ("image/svg+xml", ()),
}
# plot kinds a gate rule's metric speaks for, when the rule names no plot itself
RELATED = {
    "roc": ("auc", "roc"),
    "pr": ("precision", "recall", "prc", "average_precision", "avg_prec", "ap"),
    "confusion": ("acc", "accuracy", "f1", "precision", "recall", "error"),
}
_WORD = re.compile(r"[A-Za-z0-9]+")
_URL = re.compile(r"https?://[^\s()<>\"'`]+")


@dataclass
class Line:
    side: str  # BASE or HEAD
    name: str  # the y column (with its file when the plot reads several)
    points: list[tuple[float, float]]


@dataclass
class XYChart:
    id: str
    title: str
    kind: str  # linear, scatter, smooth, roc or pr
    x_label: str
    y_label: str
    lines: list[Line]
    changed: bool = False


@dataclass
class Confusion:
    id: str
    title: str
    x_label: str  # the columns: DVC's x field (e.g. actual)
    y_label: str  # the rows: DVC's y field (e.g. predicted)
    normalized: bool
    classes: list[str]
    counts: dict[str, dict[tuple[str, str], int]]  # side -> (row label, column label) -> rows
    changed: bool = False

    def count(self, side: str, row: str, column: str) -> int:
        return self.counts.get(side, {}).get((row, column), 0)

    def share(self, side: str, row: str, column: str) -> float:
        """The cell as a fraction of its row (confusion_normalized)."""
        total = sum(self.count(side, row, c) for c in self.classes)
        return self.count(side, row, column) / total if total else 0.0


@dataclass
class ImageSide:
    commit: str
    data: bytes | None  # None: too large to embed, or not an image of its suffix's type
    mime: str
    size: int
    url: str | None  # the file at the commit on the code host, when the report knows it


@dataclass
class Image:
    id: str
    path: str
    sides: dict[str, ImageSide]
    changed: bool = False


Chart = XYChart | Confusion | Image


@dataclass
class DvcPlots:
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # plots or files skipped, and why
    declared: int = 0  # plots dvc.yaml declares (a folder counts once per file)
    files: set[str] = field(default_factory=set)  # every file a declared plot reads
    explicit: bool = False  # chosen by report.plots


@dataclass(frozen=True)
class _Unit:
    """One plot to draw: a declaration, or one file of a declared folder."""

    decl: PlotDecl
    id: str
    files: tuple[str, ...]


class _Files:
    """A path's bytes at a commit: its git blob, else DVC's cache (a file DVC keeps out of git)."""

    def __init__(self, repo: Repo, objects: ObjectReader, limits: Limits, notes: list[str]) -> None:
        self.repo, self.objects, self.limits, self.notes = repo, objects, limits, notes
        self._got: dict[tuple[str, str], tuple[str | None, bytes | None]] = {}

    def key(self, commit: str, path: str) -> str | None:
        """What identifies the content (blob id or DVC hash), without reading it when in git."""
        entry = self.objects.lookup(commit, path)
        if entry is not None and entry.is_blob:
            return entry.oid
        return self.get(commit, path)[0]

    def get(self, commit: str, path: str) -> tuple[str | None, bytes | None]:
        found = self._got.get((commit, path))
        if found is None:
            found = self._read(commit, path)
            self._got[(commit, path)] = found
        return found

    def _read(self, commit: str, path: str) -> tuple[str | None, bytes | None]:
        entry = self.objects.lookup(commit, path)
        if entry is not None and entry.is_blob:
            data = self.objects.blob(entry.oid)
            if data is None:
                self.notes.append(f"{path} at {commit[:8]}: object {entry.oid[:12]} is missing from this clone")
            return entry.oid, self._capped(path, commit, data)
        if entry is not None:
            return None, None
        from mlci_tui.validate.source import Absent, resolve

        with tempfile.TemporaryDirectory(prefix="mlci-plot-") as scratch:
            try:
                content = resolve(self.repo, path, commit, Path(scratch))
                if content.is_folder:
                    return None, None
                data = content.local.read_bytes()
            except Absent:
                self.notes.append(f"{path}: not in commit {commit[:8]}")
                return None, None
            except (CheckFailed, InputError, OSError) as exc:
                text = str(exc)
                self.notes.append(text if text.startswith(path) else f"{path} at {commit[:8]}: {text}")
                return None, None
        return content.content_hash, self._capped(path, commit, data)

    def _capped(self, path: str, commit: str, data: bytes | None) -> bytes | None:
        if data is not None and len(data) > self.limits.max_bytes and not path.lower().endswith(tuple(IMAGE_TYPES)):
            self.notes.append(f"{path} at {commit[:8]}: over the limits.max_file_mb limit; not drawn")
            return None
        return data


def read_plots(
    repo: Repo,
    limits: Limits,
    head: str | None,
    base: str | None,
    *,
    wanted: Sequence[str] | None = None,
    rules: Iterable[str] = (),
    limit: int = 6,
    env: Mapping[str, str] | None = None,
) -> DvcPlots:
    """The plots `dvc.yaml` declares at commit `head`, read at `base` and `head`: those `wanted`
    names (plot ids or files, in that order), else up to `limit` of them, those a gate rule
    speaks for first, then those whose data changed, in the order dvc.yaml declares them."""
    out = DvcPlots(explicit=wanted is not None)
    if head is None:
        return out
    with ObjectReader(repo) as objects:
        root = objects.tree(head)
        if "dvc.yaml" not in root and ".dvc" not in root:
            return out  # not a DVC project: no tree walk looking for stage files
        declared = DvcReader(objects, limits).declared(head)
        out.notes += declared.warnings
        files = _Files(repo, objects, limits, out.notes)
        units = _units(objects, declared.plot_decls, head)
        out.declared = len(units)
        for unit in units:
            out.files.update(unit.files)
        sides = {HEAD: head} | ({BASE: base} if base else {})
        changed = {u.id: _changed(files, u, base, head) for u in units}
        chosen = _choose(units, changed, wanted, list(rules), limit, out.notes)
        for unit in chosen:
            try:
                out.charts += _charts(files, unit, sides, changed[unit.id], env or {})
            except InputError as exc:
                out.notes.append(f"plot {unit.id}: {exc}; not drawn")
    return out


def _units(objects: ObjectReader, decls: list[PlotDecl], head: str) -> list[_Unit]:
    """Each declared plot, a declared folder expanded into one plot per file, ids unique."""
    units: dict[str, _Unit] = {}
    for decl in decls:
        entry = objects.lookup(head, decl.files[0]) if len(decl.files) == 1 else None
        if entry is not None and entry.is_tree:
            for path, _entry in objects.walk(head, decl.files[0]):
                units.setdefault(path, _Unit(decl, path, (path,)))
        else:
            units.setdefault(decl.id, _Unit(decl, decl.id, decl.files))
    return list(units.values())


def _changed(files: _Files, unit: _Unit, base: str | None, head: str) -> bool:
    if base is None:
        return False
    return any(files.key(base, f) != files.key(head, f) for f in unit.files)


def _choose(
    units: list[_Unit],
    changed: dict[str, bool],
    wanted: Sequence[str] | None,
    rules: list[str],
    limit: int,
    notes: list[str],
) -> list[_Unit]:
    if wanted is not None:
        chosen: list[_Unit] = []
        for name in wanted:
            found = [u for u in units if name == u.id or name in u.files or name == u.decl.id]
            if not found:
                notes.append(f"report.plots: {name!r} is not a plot dvc.yaml declares")
            chosen += [u for u in found if u not in chosen]
        return chosen
    ranked = sorted(enumerate(units), key=lambda iu: (not _ruled(iu[1], rules), not changed[iu[1].id], iu[0]))
    return [u for _i, u in ranked[:limit]]


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _ruled(unit: _Unit, rules: list[str]) -> bool:
    """Whether a gate rule's metric speaks for the plot: named in it, or its kind's metric (auc: ROC)."""
    decl = unit.decl
    names = [unit.id, decl.title or "", *unit.files, *(c for _f, cols in decl.y for c in cols)]
    words = set().union(*(_words(posixpath.splitext(n)[0]) for n in names))
    kind = _kind(decl, unit.files[0], *_declared_xy(decl, unit.files[0]))
    for rule in rules:
        tail = _words(rule.rsplit(":", 1)[-1].rsplit(".", 1)[-1])
        if tail & (words | set(RELATED.get(kind, ()))):
            return True
    return False


def _declared_xy(decl: PlotDecl, file: str) -> tuple[str | None, list[str]]:
    x = dict(decl.x).get(file)
    ys = list(dict(decl.y).get(file, ()))
    return x, ys


def _kind(decl: PlotDecl, file: str, x: str | None, ys: Sequence[str]) -> str:
    """DVC's template, with ROC and precision-recall curves told apart by their fields or file name."""
    template = (decl.template or "linear").lower()
    if decl.image:
        return "image"
    if template in CONFUSION_TEMPLATES:
        return "confusion"
    fields = {(x or "").lower(), *(y.lower() for y in ys)}
    stem = posixpath.basename(file).lower()
    if {"fpr", "tpr"} <= fields or (not ys and "roc" in stem):
        return "roc"
    if {"recall", "precision"} <= fields or (not ys and ("prc" in stem or "precision_recall" in stem)):
        return "pr"
    return template if template in ("scatter", "smooth") else "linear"


# --------------------------------------------------------------------------- reading data
def rows_of(path: str, data: bytes, limits: Limits) -> list[dict[str, Any]]:
    """A plot file's rows as DVC reads them: JSON or YAML (a list of objects, or `{key:
    [objects]}`), CSV or TSV (a header row)."""
    suffix = posixpath.splitext(path)[1].lower()
    if suffix in (".csv", ".tsv"):
        text = decode(path, data, limits)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            rows: list[dict[str, Any]] = [dict(r) for r in reader]
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from None
    elif suffix in (".json", ".yaml", ".yml"):
        tree = parse_tree(path, data, limits)
        if isinstance(tree, dict):
            tree = next((v for v in tree.values() if isinstance(v, list)), [])
        rows = [r for r in tree if isinstance(r, dict)] if isinstance(tree, list) else []
    else:
        raise InputError(f"{path}: DVC plots are read from .json, .yaml, .csv or .tsv files")
    if len(rows) > limits.max_keys:
        raise InputError(f"{path}: more than {limits.max_keys} rows (limits.max_keys)")
    return rows


def number(value: Any) -> float | None:
    """A plot cell as a number: JSON numbers and numeric text (CSV cells), as metrics files are read."""
    return cell_number(value) if isinstance(value, str) else as_number(value)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return [str(k) for k in rows[0]] if rows else []


def default_x(rows: list[dict[str, Any]]) -> str | None:
    """DVC's default x: `step` when the rows have it, else the row index (None)."""
    return "step" if "step" in _columns(rows) else None


def default_y(rows: list[dict[str, Any]], x: str | None) -> list[str]:
    """DVC's default y: the last column (other than x)."""
    columns = [c for c in _columns(rows) if c != x]
    return columns[-1:]


def points(rows: list[dict[str, Any]], x: str | None, y: str) -> list[tuple[float, float]]:
    """(x, y) of every row where both are finite numbers (x None: the row index)."""
    out = []
    for i, row in enumerate(rows):
        xv = float(i) if x is None else number(row.get(x))
        yv = number(row.get(y))
        if xv is not None and yv is not None and math.isfinite(xv) and math.isfinite(yv):
            out.append((xv, yv))
    return thin(out)


def thin(line: list[tuple[float, float]], cap: int = MAX_POINTS) -> list[tuple[float, float]]:
    if len(line) <= cap:
        return line
    last = len(line) - 1
    return [line[i] for i in sorted({round(i * last / (cap - 1)) for i in range(cap)})]


# ------------------------------------------------------------------------- making charts
def _charts(files: _Files, unit: _Unit, sides: dict[str, str], changed: bool, env: Mapping[str, str]) -> list[Chart]:
    decl = unit.decl
    if decl.image or all(f.lower().endswith(tuple(IMAGE_TYPES)) for f in unit.files):
        return [_image(files, unit, f, sides, changed, env) for f in unit.files]
    data = {side: {f: files.get(commit, f)[1] for f in unit.files} for side, commit in sides.items()}
    if all(b is None for per in data.values() for b in per.values()):
        raise InputError(f"no data at {' or '.join(c[:8] for c in sides.values())}")
    rows = {
        side: {f: rows_of(f, b, files.limits) for f, b in per.items() if b is not None} for side, per in data.items()
    }
    first = unit.files[0]
    sample = rows[HEAD].get(first) or rows.get(BASE, {}).get(first) or []
    x, ys = _declared_xy(decl, first)
    kind = _kind(decl, first, x if x is not None else default_x(sample), ys or default_y(sample, x))
    if kind == "confusion":
        return [_confusion(unit, rows, changed)]
    return [_xy(unit, kind, rows, changed)]


def _xy(unit: _Unit, kind: str, rows: dict[str, dict[str, list[dict[str, Any]]]], changed: bool) -> XYChart:
    decl = unit.decl
    lines: list[Line] = []
    x_names: list[str] = []
    y_names: list[str] = []
    for file in unit.files:
        sample = rows[HEAD].get(file) or rows.get(BASE, {}).get(file) or []
        x, ys = _declared_xy(decl, file)
        x = x if x is not None else default_x(sample)
        ys = ys or default_y(sample, x)
        x_names.append(x or "row")
        for y in ys[:MAX_NAMES]:
            y_names.append(y)
            name = y if len(unit.files) == 1 else f"{file}: {y}"
            for side in (BASE, HEAD):
                if file in rows.get(side, {}):
                    lines.append(Line(side, name, points(rows[side][file], x, y)))
    lines = [ln for ln in lines if ln.points]
    if not lines:
        raise InputError("no numeric x/y values in its files")
    title = decl.title or unit.id
    x_label = decl.x_label or ", ".join(dict.fromkeys(x_names))
    y_label = decl.y_label or ", ".join(dict.fromkeys(y_names))
    return XYChart(unit.id, title, kind, x_label, y_label, lines, changed)


def _confusion(unit: _Unit, rows: dict[str, dict[str, list[dict[str, Any]]]], changed: bool) -> Confusion:
    decl = unit.decl
    file = unit.files[0]
    sample = rows[HEAD].get(file) or rows.get(BASE, {}).get(file) or []
    columns = _columns(sample)
    x, ys = _declared_xy(decl, file)
    x = x or ("actual" if "actual" in columns else (columns[0] if columns else "actual"))
    y = ys[0] if ys else ("predicted" if "predicted" in columns else (columns[1] if len(columns) > 1 else "predicted"))
    counts: dict[str, dict[tuple[str, str], int]] = {}
    labels: set[str] = set()
    for side, per in rows.items():
        table: dict[tuple[str, str], int] = {}
        for row in per.get(file, []):
            cell = (_label(row.get(y)), _label(row.get(x)))
            table[cell] = table.get(cell, 0) + 1
            labels.update(cell)
        counts[side] = table
    if len(labels) > MAX_CLASSES:
        raise InputError(f"{len(labels)} labels, more than the {MAX_CLASSES} a confusion matrix shows")
    classes = sorted(labels, key=lambda v: (number(v) is None, number(v) or 0.0, v))
    normalized = (decl.template or "") == "confusion_normalized"
    return Confusion(
        unit.id, decl.title or unit.id, decl.x_label or x, decl.y_label or y, normalized, classes, counts, changed
    )


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value)


def _image(
    files: _Files, unit: _Unit, path: str, sides: dict[str, str], changed: bool, env: Mapping[str, str]
) -> Image:
    mime, magics = IMAGE_TYPES.get(posixpath.splitext(path)[1].lower(), ("application/octet-stream", ()))
    out: dict[str, ImageSide] = {}
    for side, commit in sides.items():
        data = files.get(commit, path)[1]
        if data is None:
            continue
        embed: bytes | None = data
        if len(data) > MAX_IMAGE_BYTES:
            files.notes.append(
                f"{path} at {commit[:8]}: {len(data):,} bytes, over {MAX_IMAGE_BYTES:,}: linked, not embedded"
            )
            embed = None
        elif not _looks_like(data, mime, magics):
            files.notes.append(f"{path} at {commit[:8]}: not a {mime} file; linked, not embedded")
            embed = None
        out[side] = ImageSide(commit, embed, mime, len(data), blob_url(env, commit, path))
    if not out:
        raise InputError("the image is in neither commit")
    return Image(unit.id, path, out, changed)


def _looks_like(data: bytes, mime: str, magics: tuple[bytes, ...]) -> bool:
    if mime == "image/svg+xml":
        return b"<svg" in data[:4096]
    if mime == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return any(data.startswith(m) for m in magics)


def blob_url(env: Mapping[str, str], commit: str, path: str) -> str | None:
    """The file at the commit on the code host CI runs for (GitHub, GitLab), else None."""
    quoted = urllib.parse.quote(path, safe="/")
    server, name = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
    if server and name:
        url = f"{server.rstrip('/')}/{urllib.parse.quote(name, safe='/')}/blob/{commit}/{quoted}"
    elif env.get("CI_PROJECT_URL"):
        url = f"{env['CI_PROJECT_URL'].rstrip('/')}/-/blob/{commit}/{quoted}"
    else:
        return None
    return url if _URL.fullmatch(url) else None


# ------------------------------------------------------------------ Mermaid's shared x axis
def mermaid_grid(chart: XYChart) -> tuple[list[float], str | None]:
    """The x values Mermaid draws every line of the chart over, and the caption's words when
    these are not the data's own x values."""
    if chart.kind in ("roc", "pr"):
        return CURVE_GRID, "resampled onto x = 0, 0.05, …, 1 for this chart"
    xs = [[x for x, _y in ln.points] for ln in chart.lines]
    shared = xs[0]
    if chart.kind != "scatter" and all(x == shared for x in xs) and 2 <= len(shared) <= 100 and _even(shared):
        return shared, None
    lo = min(min(x) for x in xs)
    hi = max(max(x) for x in xs)
    if hi == lo:
        hi = lo + 1
    grid = [lo + (hi - lo) * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
    how = "the mean y in each of" if chart.kind == "scatter" else "resampled onto"
    return grid, f"{how} {GRID_POINTS} evenly spaced x values for this chart"


def _even(xs: list[float]) -> bool:
    step = xs[1] - xs[0]
    return step > 0 and all(abs((b - a) - step) <= 1e-9 * max(1.0, abs(step)) for a, b in zip(xs, xs[1:]))


def resample(line: list[tuple[float, float]], grid: list[float], kind: str) -> list[float]:
    """y at each grid x: linear between the points (ROC and PR: the highest y where one x holds
    several, as their steps reach it); scatter: the mean y of the points nearest each grid x."""
    if kind == "scatter":
        return _bin_means(line, grid)
    merged: dict[float, list[float]] = {}
    for x, y in line:
        merged.setdefault(x, []).append(y)
    xs = sorted(merged)
    ys = [max(merged[x]) if kind in ("roc", "pr") else sum(merged[x]) / len(merged[x]) for x in xs]
    return [_at(xs, ys, g) for g in grid]


def _at(xs: list[float], ys: list[float], g: float) -> float:
    if g <= xs[0]:
        return ys[0]
    if g >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_left(xs, g)
    if xs[i] == g:
        return ys[i]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (g - x0) / (x1 - x0)


def _bin_means(line: list[tuple[float, float]], grid: list[float]) -> list[float]:
    sums = [0.0] * len(grid)
    counts = [0] * len(grid)
    for x, y in line:
        i = min(range(len(grid)), key=lambda k: abs(grid[k] - x))
        sums[i] += y
        counts[i] += 1
    filled = [(grid[i], sums[i] / counts[i]) for i in range(len(grid)) if counts[i]]
    xs, ys = [p[0] for p in filled], [p[1] for p in filled]
    return [_at(xs, ys, g) for g in grid]


def smoothed(line: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """DVC's `smooth` template: a moving average (window of a tenth of the points, odd), and the window."""
    window = max(1, len(line) // 10) | 1
    if window == 1:
        return line, 1
    half = window // 2
    ordered = sorted(line)
    out = []
    for i, (x, _y) in enumerate(ordered):
        part = ordered[max(0, i - half) : i + half + 1]
        out.append((x, sum(p[1] for p in part) / len(part)))
    return out, window


def drawn(chart: XYChart, line: Line) -> list[tuple[float, float]]:
    """The points a renderer draws for a line: smoothed for `smooth`, as they are otherwise."""
    return smoothed(line.points)[0] if chart.kind == "smooth" else line.points


def to_json(chart: Chart) -> dict[str, Any]:
    if isinstance(chart, XYChart):
        return {
            "id": chart.id,
            "chart": chart.kind,
            "title": chart.title,
            "x": chart.x_label,
            "y": chart.y_label,
            "changed": chart.changed,
            "lines": [{"side": ln.side, "name": ln.name, "points": [list(p) for p in ln.points]} for ln in chart.lines],
        }
    if isinstance(chart, Confusion):
        return {
            "id": chart.id,
            "chart": "confusion",
            "title": chart.title,
            "x": chart.x_label,
            "y": chart.y_label,
            "normalized": chart.normalized,
            "changed": chart.changed,
            "classes": chart.classes,
            "counts": {
                side: [[r, c, n] for (r, c), n in sorted(table.items())] for side, table in chart.counts.items()
            },
        }
    return {
        "id": chart.id,
        "chart": "image",
        "path": chart.path,
        "changed": chart.changed,
        "sides": {
            side: {"commit": s.commit, "mime": s.mime, "size": s.size, "embedded": s.data is not None, "url": s.url}
            for side, s in chart.sides.items()
        },
    }


def read_run_plots(repo: Repo, limits: Limits, run_ids: Sequence[str], *, limit: int = 50) -> tuple[DvcPlots, str]:
    """The DVC plots of runs' commits, for the TUI: the first run as the candidate, the second
    (if any) as the baseline; and a note naming a run without a commit (its plots cannot be read)."""
    from mlci_tui.ledger.held import open_cache

    wanted = list(run_ids[:2])
    if not wanted:
        return DvcPlots(), "no run to read plots for"
    with open_cache(repo) as con:
        commits = dict(
            con.execute("SELECT run_id, commit FROM runs WHERE list_contains(?, run_id)", [wanted]).fetchall()
        )
    head, base = commits.get(wanted[0]), commits.get(wanted[1]) if len(wanted) > 1 else None
    if head is None:
        return DvcPlots(), f"run {wanted[0][:8]} has no commit: its DVC plots cannot be read"
    return read_plots(repo, limits, head, base, limit=limit), ""
