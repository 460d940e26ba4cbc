"""`mlci import mlflow`: file stores and SQLite stores written here in MLflow's own formats.

The file store layout and the SQLite tables follow mlflow/store/tracking/file_store.py and
mlflow/store/tracking/dbmodels/models.py (+ model_registry). An optional test builds a store
with the real MLflow client from the peers venv and compares every value with `search_runs`
and `get_metric_history` (skipped when the venv is absent).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import commit, git, run_mlci
from ledger_helpers import assert_clean_exit, ledger_tip, query

PEER_PYTHON = Path("/tmp/mlci-bench/peers/bin/python")
GOOD, FAILED, DELETED = "a" * 32, "b" * 32, "c" * 32
T0 = 1_700_000_000_000


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_file_store(root: Path, sha: str) -> None:
    _write(
        root / "1" / "meta.yaml",
        "artifact_location: file:///x\nexperiment_id: '1'\nlifecycle_stage: active\nname: exp\n",
    )
    for run_id, status, stage in ((GOOD, 3, "active"), (FAILED, 4, "active"), (DELETED, 3, "deleted")):
        run = root / "1" / run_id
        meta = (
            f"artifact_uri: file:///x/{run_id}/artifacts\nend_time: {T0 + 5000}\nentry_point_name: ''\n"
            f"experiment_id: '1'\nlifecycle_stage: {stage}\nrun_id: {run_id}\nrun_name: r-{run_id[:1]}\n"
            f"run_uuid: {run_id}\nsource_name: ''\nsource_type: 4\nsource_version: ''\nstart_time: {T0}\n"
            f"status: {status}\ntags: []\nuser_id: ada\n"
        )
        _write(run / "meta.yaml", meta)
        for sub in ("metrics", "params", "tags", "artifacts"):
            (run / sub).mkdir(parents=True, exist_ok=True)
    good = root / "1" / GOOD
    _write(good / "params" / "lr", "0.01")
    _write(good / "params" / "model" / "depth", "5")  # the key `model/depth`
    _write(good / "tags" / "mlflow.source.git.commit", sha)
    _write(good / "tags" / "mlflow.runName", "r-a")
    lines = "".join(f"{T0 + i} {1.0 / (i + 1)!r} {i}\n" for i in range(700))
    _write(good / "metrics" / "train" / "loss", lines)  # `train/loss`, 700 steps
    _write(good / "metrics" / "acc", f"{T0} 0.5 0\n{T0 + 1} 0.9 1\n")
    _write(good / "metrics" / "diverged", f"{T0} nan 0\n")
    _write(root / "models" / "m" / "meta.yaml", f"creation_timestamp: {T0}\nname: m\n")
    version = (
        f"creation_timestamp: {T0}\ncurrent_stage: Production\nlast_updated_timestamp: {T0 + 9000}\n"
        f"name: m\nrun_id: {GOOD}\nsource: runs:/{GOOD}/model\nstatus: READY\nversion: 1\n"
    )
    _write(root / "models" / "m" / "version-1" / "meta.yaml", version)
    _write(root / "models" / "m" / "aliases" / "champion", "1")


SCHEMA = """
CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256), artifact_location VARCHAR(256),
    lifecycle_stage VARCHAR(32), creation_time BIGINT, last_update_time BIGINT);
CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, name VARCHAR(250), source_type VARCHAR(20),
    source_name VARCHAR(500), entry_point_name VARCHAR(50), user_id VARCHAR(256), status VARCHAR(9),
    start_time BIGINT, end_time BIGINT, deleted_time BIGINT, source_version VARCHAR(50),
    lifecycle_stage VARCHAR(20), artifact_uri VARCHAR(200), experiment_id INTEGER);
CREATE TABLE params (key VARCHAR(250), value VARCHAR(8000), run_uuid VARCHAR(32));
CREATE TABLE tags (key VARCHAR(250), value VARCHAR(8000), run_uuid VARCHAR(32));
CREATE TABLE metrics (key VARCHAR(250), value FLOAT, timestamp BIGINT, run_uuid VARCHAR(32), step BIGINT,
    is_nan BOOLEAN);
CREATE TABLE model_versions (name VARCHAR(256), version INTEGER, creation_time BIGINT, last_updated_time BIGINT,
    description VARCHAR(5000), user_id VARCHAR(256), current_stage VARCHAR(20), source VARCHAR(500),
    run_id VARCHAR(32), status VARCHAR(20), status_message VARCHAR(500), run_link VARCHAR(500),
    storage_location VARCHAR(500));
CREATE TABLE registered_model_aliases (alias VARCHAR(256), version INTEGER, name VARCHAR(256));
"""


def make_sqlite_store(path: Path, sha: str) -> None:
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO experiments VALUES (1, 'exp', 'file:///x', 'active', 0, 0)")
    for run_id, status, stage in (
        (GOOD, "FINISHED", "active"),
        (FAILED, "FAILED", "active"),
        (DELETED, "FINISHED", "deleted"),
    ):
        con.execute(
            "INSERT INTO runs VALUES (?, ?, 'LOCAL', '', '', 'ada', ?, ?, ?, NULL, '', ?, ?, 1)",
            [run_id, f"r-{run_id[:1]}", status, T0, T0 + 5000, stage, f"file:///x/{run_id}/artifacts"],
        )
    con.executemany("INSERT INTO params VALUES (?, ?, ?)", [("lr", "0.01", GOOD), ("model/depth", "5", GOOD)])
    con.execute("INSERT INTO tags VALUES ('mlflow.source.git.commit', ?, ?)", [sha, GOOD])
    rows = [("train/loss", 1.0 / (i + 1), T0 + i, GOOD, i, False) for i in range(700)]
    rows += [
        ("acc", 0.5, T0, GOOD, 0, False),
        ("acc", 0.9, T0 + 1, GOOD, 1, False),
        ("diverged", 0.0, T0, GOOD, 0, True),
    ]
    con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute(
        "INSERT INTO model_versions VALUES ('m', 1, ?, ?, '', 'ada', 'Production', '', ?, 'READY', '', '', '')",
        [T0, T0 + 9000, GOOD],
    )
    con.execute("INSERT INTO registered_model_aliases VALUES ('champion', 1, 'm')")
    con.commit()
    con.close()


@pytest.fixture
def project(repo: Path, tmp_path: Path) -> dict[str, Any]:
    sha = commit(repo, {"train.py": "print(1)\n"}, "training code")
    files = tmp_path / "mlruns"
    make_file_store(files, sha)
    db = tmp_path / "mlflow.db"
    make_sqlite_store(db, sha)
    return {"repo": repo, "sha": sha, "files": files, "db": db}


def _imported(root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for run_id, name, status, sha, started, ended in query(
        root, "SELECT run_id, name, status, \"commit\", started, ended FROM runs WHERE source = 'import:mlflow'"
    ):
        metrics = dict(query(root, "SELECT name, value FROM metrics WHERE run_id = ?", [run_id]))
        params = dict(query(root, "SELECT name, value FROM params WHERE run_id = ?", [run_id]))
        steps = query(root, "SELECT name, step, value FROM steps WHERE run_id = ? ORDER BY name, step", [run_id])
        out[name] = {
            "id": run_id,
            "status": status,
            "commit": sha,
            "started": started,
            "ended": ended,
            "metrics": metrics,
            "params": params,
            "steps": steps,
        }
    return out


def _check(root: Path, sha: str) -> None:
    runs = _imported(root)
    assert set(runs) == {"r-a", "r-b"}  # the deleted run is not imported
    good, failed = runs["r-a"], runs["r-b"]
    assert good["status"] == "done" and failed["status"] == "failed"
    assert failed["metrics"] == {} and failed["params"] == {} and failed["steps"] == []
    assert good["commit"] == sha and failed["commit"] is None
    assert good["params"] == {"lr": "0.01", "model/depth": "5"}
    assert good["metrics"]["acc"] == 0.9  # the latest step, as MLflow reports it
    assert good["metrics"]["train/loss"] == 1.0 / 700
    assert math.isnan(good["metrics"]["diverged"])
    loss = [(s, v) for n, s, v in good["steps"] if n == "train/loss"]
    assert len(loss) == 700 and loss[0] == (0, 1.0) and loss[-1] == (699, 1.0 / 700)
    assert good["started"].isoformat().startswith("2023-11-14T22:13:20")
    stages = dict(query(root, "SELECT stage, run_id FROM stages"))
    assert stages == {"Production": good["id"], "champion": good["id"]}


def test_file_store(project: dict[str, Any]) -> None:
    proc = run_mlci(project["repo"], "import", "mlflow", str(project["files"]))
    assert_clean_exit(proc)
    assert "imported 2 run(s) and 2 promotion(s) in 1 ledger commit(s)" in proc.stdout
    _check(project["repo"], project["sha"])


def _stat(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_sqlite_store_read_only_and_reimport_adds_nothing(project: dict[str, Any]) -> None:
    db: Path = project["db"]
    os.utime(db, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = _stat(db)
    listing = sorted(p.name for p in db.parent.iterdir())
    proc = run_mlci(project["repo"], "import", "mlflow", f"sqlite:///{db}")
    assert_clean_exit(proc)
    _check(project["repo"], project["sha"])
    tip = ledger_tip(project["repo"])
    again = run_mlci(project["repo"], "import", "mlflow", str(db))
    assert_clean_exit(again)
    assert "imported 0 run(s)" in again.stdout and "4 already in the ledger" in again.stdout
    assert ledger_tip(project["repo"]) == tip
    assert _stat(db) == before  # bytes and mtime unchanged
    assert sorted(p.name for p in db.parent.iterdir()) == listing  # no journal or WAL left beside it


def test_unlinked_commit_and_bad_paths(project: dict[str, Any], tmp_path: Path) -> None:
    con = sqlite3.connect(project["db"])
    con.execute("UPDATE tags SET value = ? WHERE key = 'mlflow.source.git.commit'", ["d" * 40])
    con.commit()
    con.close()
    proc = run_mlci(project["repo"], "import", "mlflow", str(project["db"]))
    assert_clean_exit(proc)
    assert "not in this repository; not linked" in proc.stderr
    assert query(project["repo"], 'SELECT count(*) FROM runs WHERE "commit" IS NOT NULL') == [(0,)]
    missing = run_mlci(project["repo"], "import", "mlflow", str(tmp_path / "nope"))
    assert_clean_exit(missing, 2)
    (tmp_path / "junk.db").write_text("not sqlite")
    junk = run_mlci(project["repo"], "import", "mlflow", str(tmp_path / "junk.db"))
    assert_clean_exit(junk, 2)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    assert "not an MLflow database" in run_mlci(project["repo"], "import", "mlflow", str(other)).stderr


# ------------------------------------------------------------------ every run accounted for (issue 13)
PARENT, CHILD, NOMETA, TRASHED = "e" * 32, "f" * 32, "0" * 32, "9" * 32
TRICKY_PARAMS = {  # text as MLflow stored it -> the `num` it gets (None: text only)
    "lr": ("0.01", 0.01),
    "decay": ("1e-05", 1e-05),  # str(1e-5): how MLflow writes a logged float; the text stays
    "steps": ("100000.0", 100000.0),
    "batch": ("32", 32.0),
    "written": ("1e5", 100000.0),
    "flag": ("True", None),
    "opt": ("adam", None),
    "pair": ("1,5", None),
}


def _run_meta(run_id: str, exp: str, status: int, stage: str = "active", name: str | None = None) -> str:
    return (
        f"artifact_uri: file:///x/{run_id}/artifacts\nend_time: {T0 + 5000}\nentry_point_name: ''\n"
        f"experiment_id: '{exp}'\nlifecycle_stage: {stage}\nrun_id: {run_id}\nrun_name: {name or 'r-' + run_id[:1]}\n"
        f"run_uuid: {run_id}\nsource_name: ''\nsource_type: 4\nsource_version: ''\nstart_time: {T0}\n"
        f"status: {status}\ntags: []\nuser_id: ada\n"
    )


def make_accounting_file_store(root: Path) -> None:
    """What a store committed to git looks like: no empty folders, so the FAILED run that logged
    nothing has only meta.yaml and tags/; a deleted run, a nested run, a run folder without
    meta.yaml (a partial copy), a deleted experiment in .trash/, experiment tags, aliases."""
    exp = "1"
    _write(
        root / exp / "meta.yaml",
        f"artifact_location: file:///x\nexperiment_id: '{exp}'\nlifecycle_stage: active\nname: exp\n",
    )
    _write(root / exp / "tags" / "mlflow.note.content", "experiment notes")  # not a run
    _write(root / exp / PARENT / "meta.yaml", _run_meta(PARENT, exp, 3, name="parent"))
    for key, (text, _num) in TRICKY_PARAMS.items():
        _write(root / exp / PARENT / "params" / key, text)
    _write(root / exp / PARENT / "metrics" / "acc", f"{T0} 0.9 0\n")
    _write(root / exp / PARENT / "tags" / "team", "vision")
    _write(root / exp / FAILED / "meta.yaml", _run_meta(FAILED, exp, 4, name="broken"))
    _write(root / exp / FAILED / "tags" / "team", "speech")
    _write(root / exp / FAILED / "tags" / "mlflow.user", "ada")
    _write(root / exp / CHILD / "meta.yaml", _run_meta(CHILD, exp, 3, name="child"))
    _write(root / exp / CHILD / "tags" / "mlflow.parentRunId", PARENT)
    _write(root / exp / CHILD / "metrics" / "acc", f"{T0} 0.7 0\n")
    _write(root / exp / DELETED / "meta.yaml", _run_meta(DELETED, exp, 3, stage="deleted", name="gone"))
    (root / exp / NOMETA / "params").mkdir(parents=True)
    _write(root / exp / NOMETA / "params" / "lr", "0.1")
    _write(root / ".trash" / "2" / "meta.yaml", "experiment_id: '2'\nlifecycle_stage: deleted\nname: old\n")
    _write(root / ".trash" / "2" / TRASHED / "meta.yaml", _run_meta(TRASHED, "2", 3, name="old-run"))
    _write(root / ".trash" / "3" / "meta.yaml", "experiment_id: '3'\nlifecycle_stage: deleted\nname: empty\n")
    version = "current_stage: {stage}\nlast_updated_timestamp: {t}\nname: m\nrun_id: {run}\nversion: {v}\n"
    _write(root / "models" / "m" / "version-1" / "meta.yaml", version.format(stage="Production", t=T0, run=PARENT, v=1))
    _write(root / "models" / "m" / "version-2" / "meta.yaml", version.format(stage="None", t=T0, run=DELETED, v=2))
    _write(root / "models" / "m" / "aliases" / "champion", "1")
    _write(root / "models" / "m" / "aliases" / "challenger", "2")
    _write(root / "models" / "m" / "aliases" / "two words", "1")  # not a stage name mlci accepts


def make_accounting_sqlite_store(path: Path) -> None:
    """The same store in MLflow's SQL schema (a deleted experiment instead of .trash/)."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO experiments VALUES (1, 'exp', 'file:///x', 'active', 0, 0)")
    con.execute("INSERT INTO experiments VALUES (2, 'old', 'file:///x', 'deleted', 0, 0)")
    con.execute("INSERT INTO experiments VALUES (3, 'empty', 'file:///x', 'deleted', 0, 0)")
    for run_id, name, status, stage, exp in (
        (PARENT, "parent", "FINISHED", "active", 1),
        (FAILED, "broken", "FAILED", "active", 1),
        (CHILD, "child", "FINISHED", "active", 1),
        (DELETED, "gone", "FINISHED", "deleted", 1),
        (TRASHED, "old-run", "FINISHED", "active", 2),
    ):
        con.execute(
            "INSERT INTO runs VALUES (?, ?, 'LOCAL', '', '', 'ada', ?, ?, ?, NULL, '', ?, ?, ?)",
            [run_id, name, status, T0, T0 + 5000, stage, f"file:///x/{run_id}/artifacts", exp],
        )
    con.executemany("INSERT INTO params VALUES (?, ?, ?)", [(k, t, PARENT) for k, (t, _) in TRICKY_PARAMS.items()])
    tags = [("team", "vision", PARENT), ("team", "speech", FAILED), ("mlflow.parentRunId", PARENT, CHILD)]
    con.executemany("INSERT INTO tags VALUES (?, ?, ?)", tags)
    con.executemany(
        "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", [("acc", 0.9, T0, PARENT, 0, 0), ("acc", 0.7, T0, CHILD, 0, 0)]
    )
    for version, stage, run_id in ((1, "Production", PARENT), (2, "None", DELETED)):
        con.execute(
            "INSERT INTO model_versions VALUES ('m', ?, ?, ?, '', 'ada', ?, '', ?, 'READY', '', '', '')",
            [version, T0, T0, stage, run_id],
        )
    con.executemany(
        "INSERT INTO registered_model_aliases VALUES (?, ?, 'm')",
        [("champion", 1), ("challenger", 2), ("two words", 1)],
    )
    con.commit()
    con.close()


def _sql(root: Path, statement: str) -> list[dict[str, Any]]:
    """`mlci sql` as a user runs it."""
    proc = run_mlci(root, "sql", statement, "--json")
    assert_clean_exit(proc)
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_every_run_accounted_for(repo: Path, tmp_path: Path, kind: str) -> None:
    commit(repo, {"train.py": "print(1)\n"}, "training code")
    if kind == "file":
        store = tmp_path / "mlruns"
        make_accounting_file_store(store)
        no_meta = [f"skipped run {NOMETA} in experiment 1 (exp): no meta.yaml"]
    else:
        store = tmp_path / "mlflow.db"
        make_accounting_sqlite_store(store)
        no_meta = []
    total, skipped = 5 + len(no_meta), 2 + len(no_meta)
    by_reason = "1 deleted, 1 its experiment is deleted" + (", 1 no meta.yaml" if no_meta else "")
    by_reason = f"skipped {skipped} run(s) ({by_reason}) and 1 experiment(s) (1 deleted (no runs)) and 2 promotion(s)"
    expected_skips = [
        by_reason,
        f"skipped run {DELETED} (gone) in experiment 1 (exp): deleted",
        f"skipped run {TRASHED} (old-run) in experiment 2 (old): its experiment is deleted",
        f"skipped model m version 2 (run {DELETED}) to challenger: its run is not imported",
        "skipped experiment 3 (empty): deleted (no runs)",
        "skipped model m version 1 to 'two words': stage 'two words': must be 1 to 128 characters with no spaces",
        *no_meta,
    ]

    dry = run_mlci(repo, "import", "mlflow", str(store), "--dry-run")
    assert_clean_exit(dry)
    assert "would import 3 run(s) and 2 promotion(s)" in dry.stdout
    assert f"MLflow {kind} store: {total} run(s): 3 to import, 0 already in the ledger, {skipped} skipped" in dry.stdout
    for line in expected_skips:
        assert line in dry.stdout
    assert ledger_tip(repo) is None  # a dry run writes nothing

    proc = run_mlci(repo, "import", "mlflow", str(store))
    assert_clean_exit(proc)
    assert "imported 3 run(s) and 2 promotion(s) in 1 ledger commit(s)" in proc.stdout
    assert f"MLflow {kind} store: {total} run(s): 3 imported, 0 already in the ledger, {skipped} skipped" in proc.stdout
    for line in expected_skips:
        assert line in proc.stdout
    assert "its parent run" not in proc.stderr

    runs = {r["name"]: r for r in _sql(repo, "SELECT run_id, name, status, started, ended, parent FROM runs")}
    assert set(runs) == {"parent", "broken", "child"}
    broken = runs["broken"]  # no params, no metrics: still a run, with its status and times
    assert broken["status"] == "failed" and broken["started"].startswith("2023-11-14T22:13:20")
    assert broken["ended"].startswith("2023-11-14T22:13:25")
    assert runs["child"]["parent"] == runs["parent"]["run_id"] and runs["parent"]["parent"] is None
    stages = {r["stage"]: r["run_id"] for r in _sql(repo, "SELECT stage, run_id FROM stages")}
    assert stages == {"Production": runs["parent"]["run_id"], "champion": runs["parent"]["run_id"]}

    # tags are queryable, and a param's number is in `num` while its text is MLflow's
    speech = _sql(
        repo, "SELECT r.name FROM runs r JOIN mlflow_tags t USING (run_id) WHERE t.name = 'team' AND t.value = 'speech'"
    )
    assert speech == [{"name": "broken"}]
    small = _sql(repo, "SELECT r.name FROM runs r JOIN params p USING (run_id) WHERE p.name = 'lr' AND p.num < 0.05")
    assert small == [{"name": "parent"}]
    params = {r["name"]: (r["value"], r["num"]) for r in _sql(repo, "SELECT name, value, num FROM params")}
    assert params == {key: (text, num) for key, (text, num) in TRICKY_PARAMS.items()}

    tip = ledger_tip(repo)
    again = run_mlci(repo, "import", "mlflow", str(store))
    assert_clean_exit(again)
    assert f"{total} run(s): 0 imported, 3 already in the ledger, {skipped} skipped" in again.stdout
    assert ledger_tip(repo) == tip
    dry_again = run_mlci(repo, "import", "mlflow", str(store), "--dry-run")
    assert f"{total} run(s): 0 to import, 3 already in the ledger, {skipped} skipped" in dry_again.stdout
    assert {r["name"]: r["run_id"] for r in _sql(repo, "SELECT run_id, name FROM runs")} == {
        name: run["run_id"] for name, run in runs.items()
    }


def test_redacted_run_leaves_mlflow_tags(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    make_accounting_file_store(store)
    assert_clean_exit(run_mlci(repo, "import", "mlflow", str(store)))
    (parent,) = query(repo, "SELECT run_id FROM runs WHERE name = 'parent'")[0]
    assert query(repo, "SELECT value FROM mlflow_tags WHERE run_id = ? AND name = 'team'", [parent]) == [("vision",)]
    assert_clean_exit(run_mlci(repo, "ledger", "redact", parent))
    assert query(repo, "SELECT count(*) FROM mlflow_tags WHERE run_id = ?", [parent]) == [(0,)]
    assert query(repo, "SELECT count(*) FROM mlflow_tag_rows WHERE run_id = ?", [parent]) == [(0,)]
    assert query(repo, "SELECT count(*) FROM mlflow_tags") == [(3,)]  # broken's two, child's parent id


def test_parent_not_imported_is_said(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    make_accounting_file_store(store)
    _write(store / "1" / CHILD / "tags" / "mlflow.parentRunId", DELETED)
    proc = run_mlci(repo, "import", "mlflow", str(store))
    assert_clean_exit(proc)
    assert f"MLflow run {CHILD}: its parent run {DELETED} is not imported; no parent" in proc.stderr
    assert query(repo, "SELECT parent FROM runs WHERE name = 'child'") == [(None,)]


def test_not_a_store_is_exit_2_naming_what_was_expected(repo: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    _write(project / "src" / "meta.yaml", "- not a mapping\n")
    make_accounting_file_store(project / "mlruns")
    for target, hint in ((project / "src", None), (project, f"it holds {project / 'mlruns'}: pass that")):
        proc = run_mlci(repo, "import", "mlflow", str(target))
        assert_clean_exit(proc, 2)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "<experiment>/meta.yaml" in lines[0] and "mlflow.db" in lines[0] and str(target) in lines[0]
        assert hint is None or hint in lines[0]
    assert ledger_tip(repo) is None


PEER_SCRIPT = r"""
import json, sys, mlflow
from mlflow.tracking import MlflowClient
uri, sha = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("peer")
with mlflow.start_run(run_name="good") as r:
    mlflow.log_params({"lr": 0.01, "model/depth": 5})
    for i in range(700):
        mlflow.log_metric("train/loss", 1.0 / (i + 1), step=i)
    mlflow.log_metric("acc", 0.5, step=0)
    mlflow.log_metric("acc", 0.9, step=1)
    mlflow.set_tag("mlflow.source.git.commit", sha)
    good = r.info.run_id
with mlflow.start_run(run_name="broken") as r:
    pass
client = MlflowClient()
client.set_terminated(r.info.run_id, "FAILED")
out = {}
for run in client.search_runs([client.get_experiment_by_name("peer").experiment_id]):
    out[run.info.run_name] = {
        "status": run.info.status, "params": run.data.params, "metrics": run.data.metrics,
        "history": {k: [[m.step, m.value] for m in client.get_metric_history(run.info.run_id, k)]
                    for k in run.data.metrics},
    }
print(json.dumps(out))
"""


@pytest.mark.skipif(not PEER_PYTHON.exists(), reason="peers venv with mlflow not present (/tmp/mlci-bench/peers)")
def test_values_equal_mlflow_client(project: dict[str, Any], tmp_path: Path) -> None:
    db = tmp_path / "peer.db"
    proc = subprocess.run(
        [str(PEER_PYTHON), "-c", PEER_SCRIPT, f"sqlite:///{db}", project["sha"]],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert_clean_exit(run_mlci(project["repo"], "import", "mlflow", str(db)))
    ours = _imported(project["repo"])
    assert set(ours) == set(theirs) == {"good", "broken"}
    for name, want in theirs.items():
        got = ours[name]
        assert got["status"] == {"FINISHED": "done", "FAILED": "failed"}[want["status"]]
        assert got["params"] == want["params"]
        assert got["metrics"] == want["metrics"]
        for key, history in want["history"].items():
            assert [[s, v] for n, s, v in got["steps"] if n == key] == sorted(history)
    assert ours["good"]["commit"] == project["sha"]
    git(project["repo"], "status")  # the repository is intact
