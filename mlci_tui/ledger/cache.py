"""The DuckDB cache of the ledger: derived, local (`.git/mlci/cache.duckdb`), never committed.

Keyed by the ledger tip it was built from (stored inside the file). A refresh copies the
file, adds only the records that arrived since its tip (a full rebuild when the tree
changed otherwise, e.g. after compaction), and renames the copy over the original; so
readers, which open read-only per query, never meet a lock or a half-written file, and no
process holds a long-lived read-write connection.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.events import KNOWN_TYPES
from mlci_tui.ledger.store import LedgerStore

if TYPE_CHECKING:
    import duckdb

CACHE_SCHEMA = "5"
CACHE_NAME = "cache.duckdb"
TIP_HINT = "cache.tip"


def cache_is_current(repo: Repo) -> bool:
    """Cheap check (no DuckDB import) that the cache was last built from the ledger tip."""
    hint = repo.state_dir / TIP_HINT
    tip = LedgerStore(repo).tip() or ""
    try:
        return hint.read_text().strip() == tip and (repo.state_dir / CACHE_NAME).exists()
    except OSError:
        return False


RUN_COLUMNS = [
    ("run_id", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("name", "VARCHAR"),
    ("status", "VARCHAR"),
    ("started", "TIMESTAMP"),
    ("ended", "TIMESTAMP"),
    ("commit", "VARCHAR"),
    ("tree", "VARCHAR"),
    ("patch_id", "VARCHAR"),
    ("branch", "VARCHAR"),
    ("author", "VARCHAR"),
    ("message", "VARCHAR"),
    ("source", "VARCHAR"),
    ("parent", "VARCHAR"),
    ("sweep_id", "VARCHAR"),
    ("trial_id", "VARCHAR"),
    ("stale", "BOOLEAN"),
    ("datasets", "VARCHAR"),
    ("deps", "VARCHAR"),
    ("mlci_version", "VARCHAR"),
    ("python_version", "VARCHAR"),
    ("warnings", "VARCHAR"),
    ("time", "TIMESTAMP"),
]

TABLES = {
    "event_rows": "id VARCHAR, type VARCHAR, v INTEGER, time TIMESTAMP, target VARCHAR, body VARCHAR",
    "run_rows": ", ".join(f'"{n}" {t}' for n, t in RUN_COLUMNS),
    "param_rows": "run_id VARCHAR, file VARCHAR, name VARCHAR, value VARCHAR, num DOUBLE",
    "metric_rows": "run_id VARCHAR, file VARCHAR, name VARCHAR, value DOUBLE",
    "step_rows": "run_id VARCHAR, file VARCHAR, name VARCHAR, step BIGINT, value DOUBLE",
    "tag_rows": "id VARCHAR, run_id VARCHAR, name VARCHAR, remove BOOLEAN, time TIMESTAMP",
    "note_rows": "id VARCHAR, run_id VARCHAR, text VARCHAR, time TIMESTAMP",
    "promotion_rows": "id VARCHAR, run_id VARCHAR, stage VARCHAR, model VARCHAR, model_hash VARCHAR, "
    '"by" VARCHAR, time TIMESTAMP',
    "redaction_rows": "id VARCHAR, target VARCHAR, reason VARCHAR, time TIMESTAMP",
    "run_maps": "run_id VARCHAR, params MAP(VARCHAR, VARCHAR), metrics MAP(VARCHAR, DOUBLE)",
}

_HIDDEN = "(SELECT target FROM redaction_rows)"
_RUN_FIELDS = ", ".join(f'r."{n}"' for n, _ in RUN_COLUMNS)

VIEWS = {
    "tags": f"""
        SELECT run_id, name, time FROM (
            SELECT *, row_number() OVER (PARTITION BY run_id, name ORDER BY time DESC, id DESC) AS rn
            FROM tag_rows WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}
        ) WHERE rn = 1 AND NOT remove""",
    "runs": f"""
        SELECT {_RUN_FIELDS},
               coalesce(m.params, MAP {{}}::MAP(VARCHAR, VARCHAR)) AS params,
               coalesce(m.metrics, MAP {{}}::MAP(VARCHAR, DOUBLE)) AS metrics,
               coalesce(t.tags, []::VARCHAR[]) AS tags
        FROM run_rows r
        LEFT JOIN run_maps m USING (run_id)
        LEFT JOIN (SELECT run_id, list(name ORDER BY name) AS tags FROM tags GROUP BY run_id) t USING (run_id)
        WHERE r.run_id NOT IN {_HIDDEN}""",
    "params": f"SELECT * FROM param_rows WHERE run_id NOT IN {_HIDDEN}",
    "metrics": f"SELECT * FROM metric_rows WHERE run_id NOT IN {_HIDDEN}",
    "steps": f"SELECT * FROM step_rows WHERE run_id NOT IN {_HIDDEN}",
    "notes": f"SELECT id, run_id, text, time FROM note_rows WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}",
    "promotions": f"""SELECT id, run_id, stage, model, model_hash, "by", time FROM promotion_rows
        WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}""",
    "stages": """SELECT stage, run_id, model, model_hash, "by", time FROM (
            SELECT *, row_number() OVER (PARTITION BY stage ORDER BY time DESC, id DESC) AS rn FROM promotions
        ) WHERE rn = 1""",
    "events": f"SELECT id, type, v, time, target, body FROM event_rows WHERE id NOT IN {_HIDDEN}",
}

MAP_SQL = """
    INSERT INTO run_maps
    SELECT run_id,
           (SELECT map_from_entries(list(struct_pack(k := key, v := value))) FROM (
                SELECT CASE WHEN count(*) OVER (PARTITION BY name) > 1 THEN file || ':' || name ELSE name END AS key,
                       value FROM param_rows p WHERE p.run_id = n.run_id)),
           (SELECT map_from_entries(list(struct_pack(k := key, v := value))) FROM (
                SELECT CASE WHEN count(*) OVER (PARTITION BY name) > 1 THEN file || ':' || name ELSE name END AS key,
                       value FROM metric_rows q WHERE q.run_id = n.run_id))
    FROM new_runs n
"""

BULK_MAP_SQL = """
    INSERT INTO run_maps
    SELECT n.run_id, p.params, m.metrics FROM new_runs n
    LEFT JOIN (
        SELECT run_id, map_from_entries(list(struct_pack(k := key, v := value))) AS params FROM (
            SELECT run_id, value,
                   CASE WHEN count(*) OVER (PARTITION BY run_id, name) > 1 THEN file || ':' || name ELSE name END AS key
            FROM param_rows WHERE run_id IN (SELECT run_id FROM new_runs)) GROUP BY run_id
    ) p USING (run_id)
    LEFT JOIN (
        SELECT run_id, map_from_entries(list(struct_pack(k := key, v := value))) AS metrics FROM (
            SELECT run_id, value,
                   CASE WHEN count(*) OVER (PARTITION BY run_id, name) > 1 THEN file || ':' || name ELSE name END AS key
            FROM metric_rows WHERE run_id IN (SELECT run_id FROM new_runs)) GROUP BY run_id
    ) m USING (run_id)
"""


def _ts(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:-1] if value.endswith("Z") else value


def _text(value: Any) -> str | None:
    return None if value is None else (value if isinstance(value, str) else str(value))


def _param_text(value: Any) -> str:
    import json

    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class Rows:
    """Records flattened into the columns of the cache tables."""

    def __init__(self) -> None:
        self.tables: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES if name != "run_maps"}
        self.notices: list[str] = []

    def add(self, record: dict[str, Any]) -> None:
        import json

        etype = record.get("type")
        rid = _text(record.get("id"))
        when = _ts(record.get("time"))
        body = records.dumps(record).decode()
        target = _text(record.get("target") or record.get("run_id"))
        self.tables["event_rows"].append((rid, _text(etype), record.get("v"), when, target, body))
        if etype not in KNOWN_TYPES:
            self.notices.append(f"skipped an event of unknown type {etype!r} ({rid}); a newer mlci wrote it")
            return
        if etype == "run":
            row = []
            for name, _type in RUN_COLUMNS:
                value = record.get(name)
                if name in ("started", "ended", "time"):
                    value = _ts(value)
                elif name in ("datasets", "deps", "warnings"):
                    value = json.dumps(value or ({} if name != "warnings" else []), sort_keys=True)
                elif name == "stale":
                    value = bool(value)
                else:
                    value = _text(value)
                row.append(value)
            self.tables["run_rows"].append(tuple(row))
            for file, values in (record.get("params") or {}).items():
                for key, value in values.items():
                    self.tables["param_rows"].append((rid, file, key, _param_text(value), _num(value)))
            for file, values in (record.get("metrics") or {}).items():
                for key, value in values.items():
                    self.tables["metric_rows"].append((rid, file, key, _num(value)))
            for step in record.get("steps") or []:
                if isinstance(step, list) and len(step) == 4:
                    self.tables["step_rows"].append((rid, step[0], step[1], int(step[2]), _num(step[3])))
        elif etype == "tag":
            self.tables["tag_rows"].append((rid, target, _text(record.get("name")), bool(record.get("remove")), when))
        elif etype == "note":
            self.tables["note_rows"].append((rid, target, _text(record.get("text")), when))
        elif etype == "promote":
            self.tables["promotion_rows"].append(
                (
                    rid,
                    target,
                    _text(record.get("stage")),
                    _text(record.get("model")),
                    _text(record.get("model_hash")),
                    _text(record.get("by")),
                    when,
                )
            )
        elif etype == "redact":
            self.tables["redaction_rows"].append((rid, target, _text(record.get("reason")), when))

    def insert_into(self, con: duckdb.DuckDBPyConnection) -> None:
        import pyarrow as pa

        for table, rows in self.tables.items():
            if not rows:
                continue
            names = [c.strip().split()[0].strip('"') for c in TABLES[table].split(", ")]
            columns = list(zip(*rows))
            arrow = pa.table(
                {
                    n: pa.array(list(col)) if any(v is not None for v in col) else pa.nulls(len(col))
                    for n, col in zip(names, columns)
                }
            )
            con.register("_incoming", arrow)
            casts = ", ".join(f'CAST("{n}" AS {_col_type(table, n)})' for n in names)
            con.execute(f"INSERT INTO {table} SELECT {casts} FROM _incoming")
            con.unregister("_incoming")
        run_ids = [row[0] for row in self.tables["run_rows"]]
        if run_ids:
            import pyarrow as pa

            con.register("new_runs", pa.table({"run_id": pa.array(run_ids, pa.string())}))
            con.execute("DELETE FROM run_maps WHERE run_id IN (SELECT run_id FROM new_runs)")
            con.execute(BULK_MAP_SQL)
            con.unregister("new_runs")


def _col_type(table: str, column: str) -> str:
    for part in TABLES[table].split(", "):
        name, _, ctype = part.strip().partition(" ")
        if name.strip('"') == column:
            return ctype
    raise KeyError(column)


def _write_hint(path: Path, tip: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(tip + "\n")
    os.replace(tmp, path)


class LedgerCache:
    """Opens the query database for a repository, refreshing it first when the ledger moved."""

    def __init__(self, repo: Repo, store: LedgerStore | None = None) -> None:
        self.repo = repo
        self.store = store or LedgerStore(repo)
        self.path = repo.state_dir / CACHE_NAME
        self.notices: list[str] = []

    def _cached_tip(self, path: Path) -> str | None:
        import duckdb

        if not path.exists():
            return None
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error:
            return None
        try:
            rows = dict(con.execute("SELECT key, value FROM meta").fetchall())
        except duckdb.Error:
            return None
        finally:
            con.close()
        if rows.get("schema") != CACHE_SCHEMA:
            return None
        return rows.get("tip") or ""

    def refresh(self) -> str:
        """Bring the cache up to the ledger tip; returns that tip ('' for an empty ledger)."""
        tip = self.store.tip() or ""
        cached = self._cached_tip(self.path)
        if cached == tip:
            return tip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix="cache-", suffix=".duckdb.tmp", dir=self.path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            added = self.store.added_between(cached, tip) if (cached and tip) else None
            if added is not None:
                shutil.copyfile(self.path, tmp)
                self._build(tmp, self.store.load_entries(added), tip, fresh=False)
            else:
                tmp.unlink()
                self._build(tmp, self.store.read_records(tip) if tip else [], tip, fresh=True)
            os.replace(tmp, self.path)
            _write_hint(self.repo.state_dir / TIP_HINT, tip)
        finally:
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                if leftover.exists():
                    leftover.unlink()
        return tip

    def _build(self, path: Path, new_records: list[dict[str, Any]], tip: str, *, fresh: bool) -> None:
        import duckdb

        rows = Rows()
        for record in new_records:
            rows.add(record)
        self.notices.extend(rows.notices[:5])
        con = duckdb.connect(str(path))
        try:
            con.execute("SET threads TO 2")
            if fresh:
                con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
                for table, columns in TABLES.items():
                    con.execute(f"CREATE TABLE {table} ({columns})")
                for view, sql in VIEWS.items():
                    con.execute(f"CREATE VIEW {view} AS {sql}")
            else:
                # a compacted record may arrive again from a clone: keep one copy per id
                ids = [row[0] for row in rows.tables["event_rows"]]
                if ids:
                    import pyarrow as pa

                    con.register("_ids", pa.table({"id": pa.array(ids, pa.string())}))
                    known = {
                        r[0]
                        for r in con.execute("SELECT id FROM event_rows WHERE id IN (SELECT id FROM _ids)").fetchall()
                    }
                    con.unregister("_ids")
                    if known:
                        filtered = Rows()
                        for record in new_records:
                            if record.get("id") not in known:
                                filtered.add(record)
                        rows = filtered
            rows.insert_into(con)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?), ('schema', ?)", [tip, CACHE_SCHEMA])
            con.execute("CHECKPOINT")
        finally:
            con.close()

    @contextmanager
    def connect(self, *, refresh: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to an up-to-date cache, closed on exit."""
        import duckdb

        if refresh or not self.path.exists():
            self.refresh()
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            yield con
        finally:
            con.close()
