"""Read an MLflow tracking store without mlflow installed and without changing it.

Two layouts, as MLflow writes them:
- the file store (`mlruns/`): `<experiment id>/meta.yaml`, `<experiment id>/<run id>/meta.yaml`,
  `params/<key>` and `tags/<key>` (the file's text is the value), `metrics/<key>` (one
  `<timestamp ms> <value> <step>` line per logged value); a key holding `/` is a nested path.
  Registered models live in `models/<name>/version-<n>/meta.yaml` and `models/<name>/aliases/`.
- the SQLite store (`mlflow.db`): tables `experiments`, `runs`, `params`, `tags`, `metrics`,
  `model_versions`, `registered_model_aliases`. Opened with `mode=ro`: MLflow's own client
  migrates an old database in place on open, and an import must leave the user's files alone.

Every run the store holds is accounted for: read into `Store.runs`, or named in
`Store.skipped` with the reason (deleted, in a deleted experiment, no readable meta.yaml).
A run with no params and no metrics is still a run: git keeps no empty folders, so a store
committed to a repository often has runs with only meta.yaml and tags.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlci_tui.errors import InputError
from mlci_tui.progress import Bar, count_bar

# RunStatus in MLflow's protos; the file store keeps the number, the SQL store the name
STATUS_NAMES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
ACTIVE = "active"
TRASH = ".trash"  # where the file store moves a deleted experiment, its runs with it
# an experiment's folders that are not runs: its tags, datasets, traces, logged models (MLflow 3)
EXPERIMENT_PARTS = {"tags", "datasets", "traces", "models"}
EXPECTED = "expected an MLflow store: an mlruns/ folder holding <experiment>/meta.yaml, or an mlflow.db SQLite file"


@dataclass
class Point:
    timestamp: int
    value: float
    step: int


@dataclass
class MlflowRun:
    run_id: str
    experiment_id: str
    experiment: str | None
    name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[Point]] = field(default_factory=dict)


@dataclass
class ModelVersion:
    name: str
    version: int
    stage: str
    run_id: str | None
    updated: int | None
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Skipped:
    """Something of the store that is not imported, and why (printed one per line)."""

    kind: str  # "run", "experiment" (one with no runs), "promotion", "folder"
    label: str  # what it is, for the user: `run <id> (<name>) in experiment <id> (<name>)`
    reason: str


@dataclass
class Store:
    kind: str  # "file" or "sqlite"
    runs: list[MlflowRun] = field(default_factory=list)
    models: list[ModelVersion] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _experiment_label(exp_id: str, exp_name: object) -> str:
    return f"experiment {exp_id}" + (f" ({exp_name})" if exp_name else "")


def run_label(run_id: str, name: object, exp_id: str, exp_name: object) -> str:
    named = f" ({name})" if name else ""
    return f"run {run_id}{named} in {_experiment_label(exp_id, exp_name)}"


def latest(points: list[Point]) -> Point:
    """The value MLflow reports as a metric's current one: the largest (step, timestamp, value)."""
    return max(points, key=lambda p: (p.step, p.timestamp, 0.0 if math.isnan(p.value) else p.value))


def open_store(path: str) -> Store:
    """The store at `path`: an mlruns/ folder, a SQLite file, or `sqlite:///...` / `file:...` URIs."""
    if path.startswith("sqlite:///"):
        return read_sqlite(Path(path[len("sqlite:///") :]))
    if path.startswith("file://"):
        path = path[len("file://") :]
    target = Path(path)
    if target.is_dir():
        return read_file_store(target)
    if target.is_file():
        with open(target, "rb") as handle:
            if handle.read(16) == b"SQLite format 3\x00":
                return read_sqlite(target)
        raise InputError(f"{path}: not a SQLite database; {EXPECTED}")
    raise InputError(f"{path}: no such file or folder; {EXPECTED}")


# --------------------------------------------------------------------------- file store
def _yaml(path: Path) -> dict[str, Any] | None:
    """MLflow writes meta.yaml with PyYAML (YAML 1.1): read it with the same rules, so a
    value such as `1234e5678` stays the string MLflow meant."""
    import yaml  # lazy: only the file store's meta.yaml files need PyYAML (not the SQLite store)

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _key_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) under a params/tags/metrics folder; nested folders are keys holding `/`."""
    if not folder.is_dir():
        return
    for dirpath, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            full = Path(dirpath) / name
            if full.is_symlink():
                continue
            yield full.relative_to(folder).as_posix(), full


def read_file_store(root: Path) -> Store:
    store = Store("file")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; {EXPECTED}")
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".") and p.name != "models"]
    trashed = sorted(p for p in (root / TRASH).iterdir() if p.is_dir()) if (root / TRASH).is_dir() else []
    metas = {folder: _yaml(folder / "meta.yaml") for folder in folders + trashed}
    if not any(meta is not None and "experiment_id" in meta for meta in metas.values()):
        raise InputError(f"{root}: no <experiment>/meta.yaml in this folder{_nearby(root)}; {EXPECTED}")
    run_dirs = {f: _run_dirs(f) for f, meta in metas.items() if meta is not None and "experiment_id" in meta}
    # a run is a folder of small files (each param, tag and metric one): a large store reads for a while
    bar = count_bar("read mlflow runs", sum(len(dirs) for dirs in run_dirs.values()))
    try:
        for folder, meta in metas.items():
            if meta is None or folder not in run_dirs:
                why = "meta.yaml without experiment_id" if meta is not None else _unreadable(folder)
                store.skipped.append(Skipped("folder", str(folder), f"not an MLflow experiment ({why})"))
            else:
                _read_experiment(folder, meta, run_dirs[folder], folder in trashed, store, bar)
    finally:
        if bar is not None:
            bar.close()
    store.models = _file_models(root / "models", store)
    return store


def _run_dirs(exp_dir: Path) -> list[Path]:
    """An experiment's run folders (the other folders are its tags, datasets, traces, models)."""
    return sorted(p for p in exp_dir.iterdir() if p.is_dir() and p.name not in EXPERIMENT_PARTS)


def _unreadable(folder: Path) -> str:
    return "meta.yaml is not a YAML mapping" if (folder / "meta.yaml").is_file() else "no meta.yaml"


def _nearby(folder: Path) -> str:
    """A hint when `folder` is the project around the store rather than the store."""
    found = [folder / name for name in ("mlruns", "mlflow.db") if (folder / name).exists()]
    return f" (it holds {' and '.join(str(p) for p in found)}: pass that)" if found else ""


def _read_experiment(
    exp_dir: Path, meta: dict[str, Any], run_dirs: list[Path], trashed: bool, store: Store, bar: Bar | None
) -> None:
    """The experiment's runs into `store.runs`, or each into `store.skipped` with its reason."""
    exp_name = meta.get("name")
    deleted = trashed or meta.get("lifecycle_stage", ACTIVE) != ACTIVE
    if deleted and not run_dirs:
        store.skipped.append(Skipped("experiment", _experiment_label(exp_dir.name, exp_name), "deleted (no runs)"))
    for run_dir in run_dirs:
        if bar is not None:
            bar.advance_object()
        run_meta = _yaml(run_dir / "meta.yaml")
        label = run_label(run_dir.name, (run_meta or {}).get("run_name"), exp_dir.name, exp_name)
        if run_meta is None:
            store.skipped.append(Skipped("run", label, _unreadable(run_dir)))
        elif deleted:
            store.skipped.append(Skipped("run", label, "its experiment is deleted"))
        elif run_meta.get("lifecycle_stage", ACTIVE) != ACTIVE:
            store.skipped.append(Skipped("run", label, "deleted"))
        else:
            store.runs.append(_file_run(run_dir, run_meta, exp_dir.name, exp_name, store))


def _file_run(run_dir: Path, meta: dict[str, Any], exp_id: str, exp_name: Any, store: Store) -> MlflowRun:
    status = meta.get("status", 1)
    run = MlflowRun(
        run_id=run_dir.name,
        experiment_id=exp_id,
        experiment=str(exp_name) if exp_name is not None else None,
        name=str(meta["run_name"]) if meta.get("run_name") else None,
        status=STATUS_NAMES.get(status, str(status)) if isinstance(status, int) else str(status),
        start_time=_int(meta.get("start_time")),
        end_time=_int(meta.get("end_time")),
        artifact_uri=str(meta["artifact_uri"]) if meta.get("artifact_uri") else None,
    )
    for key, path in _key_files(run_dir / "params"):
        run.params[key] = path.read_text(encoding="utf-8", errors="replace")
    for key, path in _key_files(run_dir / "tags"):
        run.tags[key] = path.read_text(encoding="utf-8", errors="replace")
    for key, path in _key_files(run_dir / "metrics"):
        points = []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = line.strip().split(" ")
            if not line.strip():
                continue
            try:
                if len(parts) not in (2, 3, 5):
                    raise ValueError(f"{len(parts)} fields")
                step = int(parts[2]) if len(parts) >= 3 else 0
                points.append(Point(int(parts[0]), float(parts[1]), step))
            except ValueError as exc:
                store.warnings.append(f"{path}:{number}: not an MLflow metric line ({exc}); skipped")
        if points:
            run.metrics[key] = points
    if run.name is None and run.tags.get("mlflow.runName"):
        run.name = run.tags["mlflow.runName"]
    return run


def _file_models(models: Path, store: Store) -> list[ModelVersion]:
    out: list[ModelVersion] = []
    if not models.is_dir():
        return out
    for model_dir in sorted(p for p in models.iterdir() if p.is_dir()):
        aliases: dict[int, list[str]] = {}
        for alias, path in _key_files(model_dir / "aliases"):
            version = _int(path.read_text(encoding="utf-8", errors="replace").strip())
            if version is not None:
                aliases.setdefault(version, []).append(alias)
        for version_dir in sorted(p for p in model_dir.iterdir() if p.name.startswith("version-")):
            meta = _yaml(version_dir / "meta.yaml")
            version = _int(version_dir.name[len("version-") :])
            if meta is None or version is None:
                continue
            stage = str(meta.get("current_stage") or "None")
            if stage == "Deleted_Internal":
                continue
            out.append(
                ModelVersion(
                    name=str(meta.get("name") or model_dir.name),
                    version=version,
                    stage=stage,
                    run_id=str(meta["run_id"]) if meta.get("run_id") else None,
                    updated=_int(meta.get("last_updated_timestamp")),
                    aliases=sorted(aliases.get(version, [])),
                )
            )
    return out


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- SQLite store
def connect_read_only(path: Path) -> sqlite3.Connection:
    """Read-only, through a `file:` URI: SQLite refuses every write, and no migration can run."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot open as a SQLite database read-only ({exc})") from None
    return con


def read_sqlite(path: Path) -> Store:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    store = Store("sqlite")
    con = connect_read_only(path)
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"runs", "experiments"} <= tables:
            raise InputError(f"{path}: not an MLflow database (no runs and experiments tables); {EXPECTED}")
        experiments = {
            str(eid): (name, stage)
            for eid, name, stage in con.execute("SELECT experiment_id, name, lifecycle_stage FROM experiments")
        }
        runs: dict[str, MlflowRun] = {}
        columns = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
        name_col = "name" if "name" in columns else "NULL"
        query = f"""SELECT run_uuid, experiment_id, {name_col}, status, start_time, end_time, lifecycle_stage,
                           artifact_uri FROM runs ORDER BY start_time, run_uuid"""
        for run_uuid, exp_id, name, status, start, end, stage, artifact in con.execute(query):
            exp_name, exp_stage = experiments.get(str(exp_id), (None, ACTIVE))
            if exp_stage != ACTIVE or stage != ACTIVE:
                reason = "its experiment is deleted" if exp_stage != ACTIVE else "deleted"
                store.skipped.append(Skipped("run", run_label(run_uuid, name, str(exp_id), exp_name), reason))
                continue
            runs[run_uuid] = MlflowRun(
                run_uuid, str(exp_id), exp_name, name or None, str(status), start, end, artifact or None
            )
        with_runs = {str(row[0]) for row in con.execute("SELECT DISTINCT experiment_id FROM runs")}
        for exp_id, (exp_name, exp_stage) in sorted(experiments.items()):
            if exp_stage != ACTIVE and exp_id not in with_runs:
                store.skipped.append(Skipped("experiment", _experiment_label(exp_id, exp_name), "deleted (no runs)"))
        for key, value, run_uuid in con.execute("SELECT key, value, run_uuid FROM params"):
            if run_uuid in runs:
                runs[run_uuid].params[key] = value
        if "tags" in tables:
            for key, value, run_uuid in con.execute("SELECT key, value, run_uuid FROM tags"):
                if run_uuid in runs:
                    runs[run_uuid].tags[key] = value if value is not None else ""
        _read_sql_metrics(con, runs)
        for run in runs.values():
            if run.name is None and run.tags.get("mlflow.runName"):
                run.name = run.tags["mlflow.runName"]
        store.runs = list(runs.values())
        store.models = _sql_models(con, tables)
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot read the MLflow tables ({exc})") from None
    finally:
        con.close()
    return store


def _read_sql_metrics(con: sqlite3.Connection, runs: dict[str, MlflowRun]) -> None:
    """Every logged value into its run: most of a large store's reading (10,000 runs of 100
    values: 2.7 s CPU), so a terminal counts the runs as their values arrive, in run order."""
    sql = """SELECT run_uuid, key, timestamp, CASE WHEN is_nan THEN NULL ELSE value END, step
             FROM metrics ORDER BY run_uuid, key, step, timestamp"""
    bar = count_bar("read mlflow runs", len(runs))
    counted = 0
    current = None
    try:
        for run_uuid, key, timestamp, value, step in con.execute(sql):
            run = runs.get(run_uuid)
            if run is None:
                continue
            if bar is not None and run_uuid != current:
                current, counted = run_uuid, counted + 1
                bar.advance_object()
            number = math.nan if value is None else float(value)
            run.metrics.setdefault(key, []).append(Point(int(timestamp or 0), number, int(step or 0)))
        if bar is not None:
            for _ in range(len(runs) - counted):  # the runs that logged no metric
                bar.advance_object()
    finally:
        if bar is not None:
            bar.close()


def _sql_models(con: sqlite3.Connection, tables: set[str]) -> list[ModelVersion]:
    if "model_versions" not in tables:
        return []
    aliases: dict[tuple[str, int], list[str]] = {}
    if "registered_model_aliases" in tables:
        for name, alias, version in con.execute("SELECT name, alias, version FROM registered_model_aliases"):
            aliases.setdefault((name, int(version)), []).append(alias)
    out = []
    sql = """SELECT name, version, current_stage, run_id, last_updated_time FROM model_versions
             ORDER BY name, version"""
    for name, version, stage, run_id, updated in con.execute(sql):
        if stage == "Deleted_Internal":
            continue
        out.append(
            ModelVersion(
                name, int(version), stage or "None", run_id, updated, sorted(aliases.get((name, int(version)), []))
            )
        )
    return out
