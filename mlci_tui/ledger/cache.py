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
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlci_tui.errors import first_line
from mlci_tui.gitio import Repo, TreeEntry
from mlci_tui.ledger.events import KNOWN_TYPES, TRIAL_RANK, TRIAL_STATE_OF
from mlci_tui.ledger.query.names import SQL_MAP_KEY
from mlci_tui.ledger.records import FLOAT_KEY
from mlci_tui.ledger.store import EVENTS_DIR, SEGMENTS_DIR, LedgerStore, refuse_misnamed

if TYPE_CHECKING:
    import duckdb

CACHE_SCHEMA = "12"
BUILD_MEMORY = os.environ.get("MLCI_CACHE_MEMORY", "1GB")  # DuckDB's limit for a cache build (it spills past it)
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
    # the params and metrics maps live in the row: a join per query cost more than the query
    "run_rows": ", ".join(f'"{n}" {t}' for n, t in RUN_COLUMNS)
    + ", params MAP(VARCHAR, VARCHAR), metrics MAP(VARCHAR, DOUBLE)",
    "param_rows": "run_id VARCHAR, file VARCHAR, name VARCHAR, value VARCHAR, num DOUBLE",
    "metric_rows": "run_id VARCHAR, file VARCHAR, name VARCHAR, value DOUBLE",
    "step_rows": "run_id VARCHAR, file VARCHAR, name VARCHAR, step BIGINT, value DOUBLE",
    "tag_rows": "id VARCHAR, run_id VARCHAR, name VARCHAR, remove BOOLEAN, time TIMESTAMP",
    "note_rows": "id VARCHAR, run_id VARCHAR, text VARCHAR, time TIMESTAMP",
    "promotion_rows": "id VARCHAR, run_id VARCHAR, stage VARCHAR, model VARCHAR, model_hash VARCHAR, "
    '"by" VARCHAR, time TIMESTAMP',
    "redaction_rows": "id VARCHAR, target VARCHAR, reason VARCHAR, time TIMESTAMP",
    "mlflow_tag_rows": "run_id VARCHAR, name VARCHAR, value VARCHAR",  # an MLflow import's run tags
    "names": "kind VARCHAR, name VARCHAR",  # every metric and param map key seen: column pickers
}

_HIDDEN = "(SELECT target FROM redaction_rows)"
_RUN_FIELDS = ", ".join(f'r."{n}"' for n, _ in RUN_COLUMNS)


def _case(expr: str, mapping: Mapping[str, object]) -> str:
    """`mapping` applied to `expr` in SQL, from the Python dict that is the rule."""
    whens = " ".join(
        f"WHEN '{k}' THEN {v!r}" if isinstance(v, int) else f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items()
    )
    return f"CASE {expr} {whens} END"


VIEWS = {
    "tags": f"""
        SELECT run_id, name, time FROM (
            SELECT *, row_number() OVER (PARTITION BY run_id, name ORDER BY time DESC, id DESC) AS rn
            FROM tag_rows WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}
        ) WHERE rn = 1 AND NOT remove""",
    "runs": f"""
        SELECT {_RUN_FIELDS},
               coalesce(r.params, MAP {{}}::MAP(VARCHAR, VARCHAR)) AS params,
               coalesce(r.metrics, MAP {{}}::MAP(VARCHAR, DOUBLE)) AS metrics,
               coalesce(t.tags, []::VARCHAR[]) AS tags
        FROM run_rows r
        LEFT JOIN (SELECT run_id, list(name ORDER BY name) AS tags FROM tags GROUP BY run_id) t USING (run_id)
        WHERE r.run_id NOT IN {_HIDDEN}""",
    "params": f"SELECT * FROM param_rows WHERE run_id NOT IN {_HIDDEN}",
    "metrics": f"SELECT * FROM metric_rows WHERE run_id NOT IN {_HIDDEN}",
    "steps": f"SELECT * FROM step_rows WHERE run_id NOT IN {_HIDDEN}",
    "mlflow_tags": f"SELECT * FROM mlflow_tag_rows WHERE run_id NOT IN {_HIDDEN}",
    "notes": f"SELECT id, run_id, text, time FROM note_rows WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}",
    "promotions": f"""SELECT id, run_id, stage, model, model_hash, "by", time FROM promotion_rows
        WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}""",
    "stages": """SELECT stage, run_id, model, model_hash, "by", time FROM (
            SELECT *, row_number() OVER (PARTITION BY stage ORDER BY time DESC, id DESC) AS rn FROM promotions
        ) WHERE rn = 1""",
    # events about a redacted record (its tags, notes, promotions) are hidden with it
    "events": f"""SELECT id, type, v, time, target, body FROM event_rows WHERE id NOT IN {_HIDDEN}
        AND (type = 'redact' OR target IS NULL OR target NOT IN {_HIDDEN})""",
    # data validation (mlci_tui/validate/): one row per validation and per dataset profile
    "validations": f"""SELECT id, time, body->>'dataset' AS dataset, body->>'path' AS path,
            body->>'content_hash' AS content_hash, body->>'rev' AS rev, body->>'status' AS status,
            TRY_CAST(body->>'rows' AS BIGINT) AS rows, body->>'base_hash' AS base_hash, body->>'error' AS error,
            body->>'schema_hash' AS schema_hash, body->'checks' AS checks, body->'warnings' AS warnings
        FROM event_rows WHERE type = 'validation' AND id NOT IN {_HIDDEN}""",
    "profiles": f"""SELECT id, time, body->>'dataset' AS dataset, body->>'path' AS path,
            body->>'content_hash' AS content_hash, TRY_CAST(body->>'rows' AS BIGINT) AS rows,
            body->'columns' AS columns, body
        FROM event_rows WHERE type = 'profile' AND id NOT IN {_HIDDEN}""",
    # sweeps (mlci_tui/sweep/): one row per sweep, and each trial folded from its transitions
    # (the same fold as sweep/events.py: the last transition wins, except that done is final)
    "sweeps": f"""SELECT id AS sweep_id, body->>'name' AS name, time AS created, body->>'base' AS base,
            body->>'base_kind' AS base_kind, body->'spec'->>'method' AS method, body->'spec'->>'metric' AS metric,
            body->'spec'->>'direction' AS direction, body->'spec'->>'command' AS command,
            TRY_CAST(body->'spec'->>'max_trials' AS INTEGER) AS max_trials, TRY_CAST(body->>'seed' AS BIGINT) AS seed,
            body->'spec' AS spec
        FROM event_rows WHERE type = 'sweep' AND id NOT IN {_HIDDEN}""",
    "trials": f"""WITH all_ev AS (
            SELECT id, time, body->>'sweep_id' AS sweep_id, body->>'trial_id' AS trial_id, body->>'state' AS state,
                   body, {_case("body->>'state'", TRIAL_RANK)} AS rank
            FROM event_rows WHERE type = 'trial' AND id NOT IN {_HIDDEN}
                AND body->>'sweep_id' NOT IN {_HIDDEN}),
        ev AS (  -- done is final: what came after a trial's done changes nothing
            SELECT * FROM (SELECT *, min((time, rank)) FILTER (WHERE state = 'done')
                OVER (PARTITION BY sweep_id, trial_id) AS done_at FROM all_ev)
            WHERE done_at IS NULL OR (time, rank) <= done_at)
        SELECT sweep_id, trial_id,
            max(TRY_CAST(body->>'number' AS INTEGER)) FILTER (WHERE state = 'queued') AS number,
            {_case("arg_max(state, (time, rank))", TRIAL_STATE_OF)} AS state,
            count(*) FILTER (WHERE state = 'started') AS attempts,
            count(*) FILTER (WHERE state = 'requeued') AS retries,
            any_value(body->'params') FILTER (WHERE state = 'queued') AS params,
            any_value(body->>'run_id') FILTER (WHERE state = 'done') AS run_id,
            any_value(TRY_CAST(body->>'value' AS DOUBLE)) FILTER (WHERE state = 'done') AS value,
            arg_max(TRY_CAST(body->>'exit_code' AS INTEGER), time) FILTER (WHERE state = 'failed') AS exit_code,
            arg_max(body->>'stderr_tail', time) FILTER (WHERE state = 'failed') AS stderr_tail,
            arg_max(body->>'worker', time) FILTER (WHERE state = 'started') AS worker,
            min(time) FILTER (WHERE state = 'queued') AS queued,
            max(time) FILTER (WHERE state = 'started') AS started,
            -- a start after the last end (a retry running) leaves no end
            CASE WHEN arg_max(state, (time, rank)) FILTER (WHERE state IN ('started', 'done', 'failed', 'cancelled'))
                      <> 'started'
                 THEN max(time) FILTER (WHERE state IN ('done', 'failed', 'cancelled')) END AS ended
        FROM ev WHERE trial_id IS NOT NULL GROUP BY sweep_id, trial_id""",
}


def _map_of(kind: str) -> str:
    """Each new run's `params` or `metrics` map, keyed by the file:name rule."""
    return f"""SELECT run_id, map_from_entries(list(struct_pack(k := key, v := value))) AS {kind} FROM (
            SELECT run_id, value, {SQL_MAP_KEY} AS key
            FROM {kind[:-1]}_rows WHERE run_id IN (SELECT run_id FROM new_runs)) GROUP BY run_id"""


BULK_MAP_SQL = f"""
    INSERT INTO run_maps
    SELECT n.run_id, p.params, m.metrics FROM new_runs n
    LEFT JOIN ({_map_of("params")}) p USING (run_id)
    LEFT JOIN ({_map_of("metrics")}) m USING (run_id)
"""


def _ts(expr: str) -> str:
    return f"TRY_CAST(rtrim({expr}, 'Z') AS TIMESTAMP)"


def _float(expr: str) -> str:
    """A JSON number, or a `{"$float": "NaN"}` wrapper (records.FLOAT_KEY; DuckDB casts its names), as DOUBLE."""
    return f"""CASE WHEN json_type({expr}) = 'OBJECT' THEN TRY_CAST({expr}->>'$."{FLOAT_KEY}"' AS DOUBLE)
        WHEN json_type({expr}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN TRY_CAST({expr}::VARCHAR AS DOUBLE) END"""


def _param_text(expr: str) -> str:
    return f"""CASE json_type({expr}) WHEN 'VARCHAR' THEN {expr}->>'$' WHEN 'NULL' THEN 'null'
        WHEN 'OBJECT' THEN coalesce({expr}->>'$."{FLOAT_KEY}"', {expr}::VARCHAR) ELSE {expr}::VARCHAR END"""


# The typed shape DuckDB parses each record into, once. Unknown fields are ignored.
RECORD_COLUMNS: dict[str, str] = {
    "id": "VARCHAR",
    "type": "VARCHAR",
    "v": "INTEGER",
    "time": "VARCHAR",
    "target": "VARCHAR",
    **{n: ("VARCHAR" if t == "TIMESTAMP" else t) for n, t in RUN_COLUMNS if n not in ("datasets", "deps", "warnings")},
    "datasets": "JSON",
    "deps": "JSON",
    "warnings": "JSON",
    "params": "MAP(VARCHAR, MAP(VARCHAR, JSON))",
    "metrics": "MAP(VARCHAR, MAP(VARCHAR, JSON))",
    "steps": "JSON[]",
    "remove": "BOOLEAN",
    "text": "VARCHAR",
    "stage": "VARCHAR",
    "model": "VARCHAR",
    "model_hash": "VARCHAR",
    "by": "VARCHAR",
    "reason": "VARCHAR",
    "import": "JSON",
}
RUN_MARKER = '"type":"run","v":'  # in canonical JSON (sorted keys) only a run record holds this, at top level


def _run_column(name: str, ctype: str) -> str:
    """The run_rows value of a column, from the parsed record `i`."""
    if ctype == "TIMESTAMP":
        return _ts(f'i."{name}"')
    if name == "stale":
        return "coalesce(i.stale, false)"
    if name in ("datasets", "deps"):
        return f"coalesce(i.{name}, '{{}}')::VARCHAR"
    if name == "warnings":
        return "coalesce(i.warnings, '[]')::VARCHAR"
    return f'i."{name}"'


# Every statement reads the temp table `inc` (RECORD_COLUMNS) of new, de-duplicated records,
# and `raw_other(id, body)`: the JSON text of the records that are not runs.
INGEST_SQL = [
    f"""INSERT INTO event_rows SELECT i.id, i.type, i.v, {_ts("i.time")}, coalesce(i.target, i.run_id), o.body
        FROM inc i LEFT JOIN raw_other o USING (id)""",
    # MLflow keeps every param as text (`str(value)`): its num is that text read as a number
    f"""INSERT INTO param_rows SELECT id, f.key, e.key, {_param_text("e.value")}, coalesce({_float("e.value")},
            CASE WHEN source = 'import:mlflow' THEN TRY_CAST(e.value->>'$' AS DOUBLE) END)
        FROM (SELECT id, source, unnest(map_entries(params)) AS f FROM inc WHERE type = 'run') s,
             unnest(map_entries(s.f.value)) AS t(e)""",
    f"""INSERT INTO metric_rows SELECT id, f.key, e.key, {_float("e.value")}
        FROM (SELECT id, unnest(map_entries(metrics)) AS f FROM inc WHERE type = 'run') s,
             unnest(map_entries(s.f.value)) AS t(e)""",
    f"""INSERT INTO step_rows SELECT id, s->>'$[0]', s->>'$[1]', TRY_CAST(s->>'$[2]' AS BIGINT), {_float("(s->'$[3]')")}
        FROM (SELECT id, unnest(steps) AS s FROM inc WHERE type = 'run' AND len(steps) > 0)""",
    # json_transform gives NULL (no rows) for tags that are not a map of texts
    """INSERT INTO mlflow_tag_rows SELECT id, e.key, e.value FROM (SELECT id,
            unnest(map_entries(json_transform(i."import"->'tags', '"MAP(VARCHAR, VARCHAR)"'))) AS e
        FROM inc i WHERE type = 'run' AND source = 'import:mlflow')""",
    f"""INSERT INTO tag_rows SELECT id, target, name, coalesce(remove, false), {_ts("time")} FROM inc
        WHERE type = 'tag'""",
    f"""INSERT INTO note_rows SELECT id, target, text, {_ts("time")} FROM inc WHERE type = 'note'""",
    f"""INSERT INTO promotion_rows SELECT id, target, stage, model, model_hash, "by", {_ts("time")} FROM inc
        WHERE type = 'promote'""",
    f"""INSERT INTO redaction_rows SELECT id, target, reason, {_ts("time")} FROM inc WHERE type = 'redact'""",
    "CREATE OR REPLACE TEMP TABLE new_runs AS SELECT id AS run_id FROM inc WHERE type = 'run'",
    "DELETE FROM run_maps WHERE run_id IN (SELECT run_id FROM new_runs)",
    # the common case, every name from one file: map keys are the plain names
    """CREATE OR REPLACE TEMP TABLE single_runs AS SELECT id AS run_id FROM inc WHERE type = 'run'
        AND coalesce(cardinality(params), 0) <= 1 AND coalesce(cardinality(metrics), 0) <= 1""",
    """INSERT INTO run_maps SELECT s.run_id, p.m, q.m FROM single_runs s
        LEFT JOIN (SELECT run_id, map_from_entries(list(struct_pack(k := name, v := value))) AS m FROM param_rows
                   WHERE run_id IN (SELECT run_id FROM single_runs) GROUP BY run_id) p USING (run_id)
        LEFT JOIN (SELECT run_id, map_from_entries(list(struct_pack(k := name, v := value))) AS m FROM metric_rows
                   WHERE run_id IN (SELECT run_id FROM single_runs) GROUP BY run_id) q USING (run_id)""",
    # names from several files: plain where unique, file:name where a name is in two files
    """CREATE OR REPLACE TEMP TABLE new_runs AS SELECT id AS run_id FROM inc WHERE type = 'run'
        AND (coalesce(cardinality(params), 0) > 1 OR coalesce(cardinality(metrics), 0) > 1)""",
    BULK_MAP_SQL,
    "CREATE OR REPLACE TEMP TABLE new_runs AS SELECT id AS run_id FROM inc WHERE type = 'run'",
    "INSERT INTO run_rows SELECT "
    + ", ".join(_run_column(n, t) for n, t in RUN_COLUMNS)
    + ", m.params, m.metrics FROM inc i LEFT JOIN run_maps m ON m.run_id = i.id WHERE i.type = 'run'",
    """INSERT INTO names SELECT DISTINCT 'metric', k FROM (SELECT unnest(map_keys(metrics)) AS k FROM run_maps
        WHERE run_id IN (SELECT run_id FROM new_runs)) WHERE k NOT IN (SELECT name FROM names WHERE kind = 'metric')""",
    """INSERT INTO names SELECT DISTINCT 'param', k FROM (SELECT unnest(map_keys(params)) AS k FROM run_maps
        WHERE run_id IN (SELECT run_id FROM new_runs)) WHERE k NOT IN (SELECT name FROM names WHERE kind = 'param')""",
    # a redacted record (and what refers to it) leaves the cache's tables too, not only the
    # views: `mlci sql` can read the tables. Run on every refresh, so a record a union merge
    # brings back is dropped again. Tombstones stay: they are what keeps it hidden.
    *[
        f"DELETE FROM {table} WHERE {column} IN (SELECT target FROM redaction_rows)"
        for table, column in (
            ("run_rows", "run_id"),
            ("param_rows", "run_id"),
            ("metric_rows", "run_id"),
            ("step_rows", "run_id"),
            ("mlflow_tag_rows", "run_id"),
            ("tag_rows", "run_id"),
            ("tag_rows", "id"),
            ("note_rows", "run_id"),
            ("note_rows", "id"),
            ("promotion_rows", "run_id"),
            ("promotion_rows", "id"),
        )
    ],
    """DELETE FROM event_rows WHERE type IS DISTINCT FROM 'redact'
        AND (id IN (SELECT target FROM redaction_rows) OR target IN (SELECT target FROM redaction_rows))""",
]


@dataclass
class _Staged:
    """What a cache build reads: event files as one NDJSON file, segments as Parquet files."""

    ndjson: Path | None = None
    segments: list[Path] = field(default_factory=list)


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


@contextmanager
def _install_lock(directory: Path) -> Iterator[None]:
    """Serialise the check-then-rename that installs a rebuilt cache (readers never wait)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; the check alone narrows the race
        yield
        return
    with open(directory / "cache.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


LEFTOVER_AGE = 3600.0  # seconds: no refresh runs this long, so an older temp file is a killed one's


def _remove_leftovers(folder: Path) -> None:
    """What a killed or SIGTERMed refresh left: its temp database (and WAL) and ingest folder.
    Only those older than LEFTOVER_AGE: a younger one may be a concurrent refresh's."""
    cutoff = time.time() - LEFTOVER_AGE
    for path in [*folder.glob("cache-*.duckdb.tmp*"), *folder.glob("ingest-*")]:
        try:
            if path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            continue


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
            _write_hint(self.repo.state_dir / TIP_HINT, tip)
            return tip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(self.path.parent)
        fd, tmp_name = tempfile.mkstemp(prefix="cache-", suffix=".duckdb.tmp", dir=self.path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            added = self.store.added_between(cached, tip) if (cached and tip) else None
            if added is not None:
                shutil.copyfile(self.path, tmp)
                self._build(tmp, added, tip, fresh=False)
            else:
                tmp.unlink()
                self._build(tmp, self.store.entries(tip) if tip else [], tip, fresh=True)
            with _install_lock(self.path.parent):
                # a slower concurrent refresh must not put an older cache over a newer one:
                # a reader would then see runs disappear (the ledger only grows)
                current = self._cached_tip(self.path)
                if current and tip and current != tip and self.repo.is_ancestor(tip, current):
                    return current
                os.replace(tmp, self.path)
                _write_hint(self.repo.state_dir / TIP_HINT, tip)
        finally:
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                if leftover.exists():
                    leftover.unlink()
        return tip

    def _build(self, path: Path, entries: list[TreeEntry], tip: str, *, fresh: bool) -> None:
        import duckdb

        con = duckdb.connect(str(path))
        with tempfile.TemporaryDirectory(dir=self.path.parent, prefix="ingest-") as scratch:
            try:
                con.execute("SET threads TO 2")
                # bounded: a million-run rebuild spills to the scratch folder instead of growing
                con.execute(f"SET memory_limit = '{BUILD_MEMORY}'")
                con.execute("SET enable_progress_bar = false")  # it would draw over the TUI or a hook's output
                con.execute(f"SET temp_directory = '{_sql_str(scratch)}'")
                if fresh:
                    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
                    for table, columns in TABLES.items():
                        con.execute(f"CREATE TABLE {table} ({columns})")
                    for view, sql in VIEWS.items():
                        con.execute(f"CREATE VIEW {view} AS {sql}")
                staged = self._stage(con, entries, Path(scratch))
                if staged is not None:
                    self._ingest(con, staged, fresh=fresh)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?), ('schema', ?)", [tip, CACHE_SCHEMA])
                con.execute("CHECKPOINT")
            finally:
                con.close()

    def _ingest(self, con: duckdb.DuckDBPyConnection, staged: _Staged, *, fresh: bool) -> None:
        import json

        columns = json.dumps(RECORD_COLUMNS)
        parsed, raw = [], []
        if staged.ndjson is not None:
            path = _sql_str(str(staged.ndjson))
            parsed.append(
                f"""SELECT * FROM read_json('{path}', format = 'newline_delimited', columns = {columns},
                    maximum_object_size = 268435456, ignore_errors = true)"""
            )
            raw.append(
                f"""SELECT body FROM read_csv('{path}', columns = {{'body': 'VARCHAR'}}, delim = '\x01', quote = '',
                    escape = '', header = false, max_line_size = 268435456, ignore_errors = true)"""
            )
        if staged.segments:
            # segments are read by DuckDB where they lie: no record passes through Python
            files = "[" + ", ".join(f"'{_sql_str(str(f))}'" for f in staged.segments) + "]"
            segment_bodies = f"SELECT body FROM read_parquet({files}) WHERE json_valid(body)"
            parsed.append(f"SELECT unnest(json_transform(body, '{_sql_str(columns)}')) FROM ({segment_bodies})")
            raw.append(segment_bodies)
        con.execute(
            "CREATE TEMP TABLE parsed AS SELECT * FROM ("
            + " UNION ALL BY NAME ".join(f"({q})" for q in parsed)
            + ") WHERE id IS NOT NULL"
        )
        row = con.execute("SELECT count(*) - count(DISTINCT id) FROM parsed").fetchone()
        duplicates = row[0] if row else 0
        known = "" if fresh else "WHERE id NOT IN (SELECT id FROM event_rows)"
        dedupe = "QUALIFY row_number() OVER (PARTITION BY id ORDER BY time) = 1" if duplicates else ""
        con.execute(f"CREATE TEMP TABLE inc AS SELECT * FROM parsed {known} {dedupe}")
        con.execute(
            f"""CREATE TEMP TABLE raw_other AS SELECT DISTINCT ON (id) id, body FROM (
                    SELECT json_extract_string(body, '$.id') AS id, body FROM ({" UNION ALL ".join(raw)})
                    WHERE NOT contains(body, '{RUN_MARKER}') AND json_valid(body))"""
        )
        # the maps are staged here, then written into run_rows with the rest of each run
        con.execute(
            "CREATE OR REPLACE TEMP TABLE run_maps (run_id VARCHAR, params MAP(VARCHAR, VARCHAR), "
            "metrics MAP(VARCHAR, DOUBLE))"
        )
        for statement in INGEST_SQL:
            con.execute(statement)
        unknown = con.execute(
            "SELECT type, count(*), min(id) FROM inc WHERE type NOT IN ("
            + ", ".join(f"'{t}'" for t in KNOWN_TYPES)
            + ") GROUP BY type ORDER BY type"
        ).fetchall()
        for etype, count, example in unknown:
            self.notices.append(
                f"skipped {count} event(s) of unknown type {etype!r} (e.g. {example}); a newer mlci wrote them"
            )

    def _stage(self, con: duckdb.DuckDBPyConnection, entries: list[TreeEntry], scratch: Path) -> _Staged | None:
        """The records named by `entries` where DuckDB reads them: event files as NDJSON (streamed
        from git in pack order), each readable segment as a Parquet file of its own."""
        events = [e for e in entries if e.path.startswith(EVENTS_DIR) and e.path.endswith(".json")]
        segments = [e for e in entries if e.path.startswith(SEGMENTS_DIR) and e.path.endswith(".parquet")]
        if not events and not segments:
            return None
        import duckdb

        staged = _Staged()
        if events:
            staged.ndjson = scratch / "records.ndjson"
            # a file that is not one record (a remote's garbage) is skipped, not fatal to every query;
            # nor is one whose body names another record (it would shadow that record)
            for n in self.repo.cat_blobs_to_lines(
                [e.oid for e in events], staged.ndjson, refuse=refuse_misnamed(events)
            ):
                self.notices.append(f"{events[n].path}: not one record named by its id; skipped (`mlci ledger fsck`)")
        for n, data in self.repo.stream_blobs([e.oid for e in segments]):
            seg = scratch / f"segment-{n}.parquet"
            seg.write_bytes(data or b"")
            try:
                con.execute(f"SELECT count(body) FROM read_parquet('{_sql_str(str(seg))}')").fetchall()
            except duckdb.Error as exc:
                self.notices.append(f"{segments[n].path}: unreadable segment skipped ({first_line(exc)})")
                continue
            staged.segments.append(seg)
        return staged

    @contextmanager
    def connect(self, *, refresh: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to an up-to-date cache, closed on exit.

        The warm path opens the file once: it reads the cached tip on the same connection
        it will query with, and only rebuilds (then reopens) when the ledger moved.
        """
        import duckdb

        con = None
        if self.path.exists():
            try:
                con = duckdb.connect(str(self.path), read_only=True)
                if refresh:
                    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
                    if meta.get("schema") != CACHE_SCHEMA or meta.get("tip") != (self.store.tip() or ""):
                        con.close()
                        con = None
            except duckdb.Error:
                if con is not None:
                    con.close()
                con = None
        if con is None:
            self.refresh()
            con = duckdb.connect(str(self.path), read_only=True)
        try:
            yield con
        finally:
            con.close()
