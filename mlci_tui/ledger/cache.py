"""The DuckDB cache of the ledger: derived, local (`.git/mlci/cache.duckdb`), never committed.

Keyed by the ledger tip it was built from (stored inside the file). A refresh copies the
file, adds only the records that arrived since its tip (a full rebuild when the tree
changed otherwise, e.g. after compaction), and renames the copy over the original; so
readers, which open read-only per query, never meet a lock or a half-written file, and no
process holds a long-lived read-write connection.
"""

from __future__ import annotations

import json
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

CACHE_SCHEMA = "14"
BUILD_MEMORY = os.environ.get("MLCI_CACHE_MEMORY", "1GB")  # DuckDB's limit for a cache build (it spills past it)
# One thread: a cold rebuild is Parquet copied into DuckDB's storage, and a second thread cost
# ~0.5 s more CPU at 100k runs (of ~3.6) on this shared 2-core machine, and wall time too under
# load (docs/benchmarks.md, the ledger: a cold rebuild in 3 s).
BUILD_THREADS = 1
CACHE_NAME = "cache.duckdb"
# DuckDB's storage compressions a cache build does not try: FSST's analysis of every string
# column cost a 100k-run cold rebuild ~0.2 s of CPU (of ~3.8) and saved nothing on its hashes
# and ids (the file 42.0 vs 42.2 MB); docs/benchmarks.md (the ledger).
STORAGE_UNUSED = "fsst"
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
    # every record but the runs, whose event row the `events` view takes from `run_rows`
    # (a run's id is its run_id, its target itself, its body not kept): 0.15 s of a 100k build
    "event_rows": "id VARCHAR, type VARCHAR, v INTEGER, time TIMESTAMP, target VARCHAR, body VARCHAR",
    # the params and metrics maps live in the row: a join per query cost more than the query
    "run_rows": ", ".join(f'"{n}" {t}' for n, t in RUN_COLUMNS)
    + ", params MAP(VARCHAR, VARCHAR), metrics MAP(VARCHAR, DOUBLE), v INTEGER, param_file VARCHAR, metric_file VARCHAR",
    # the values of the runs whose map does not hold them (FILE_OF): several files, or text params
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
    "params": f"""SELECT * FROM (
            SELECT run_id, param_file AS file, e.key AS name, e.value, TRY_CAST(e.value AS DOUBLE) AS num
            FROM (SELECT run_id, param_file, unnest(map_entries(params)) AS e FROM run_rows WHERE param_file IS NOT NULL)
            UNION ALL SELECT * FROM param_rows) WHERE run_id NOT IN {_HIDDEN}""",
    "metrics": f"""SELECT * FROM (
            SELECT run_id, metric_file AS file, e.key AS name, e.value
            FROM (SELECT run_id, metric_file, unnest(map_entries(metrics)) AS e FROM run_rows WHERE metric_file IS NOT NULL)
            UNION ALL SELECT * FROM metric_rows) WHERE run_id NOT IN {_HIDDEN}""",
    "steps": f"SELECT * FROM step_rows WHERE run_id NOT IN {_HIDDEN}",
    "mlflow_tags": f"SELECT * FROM mlflow_tag_rows WHERE run_id NOT IN {_HIDDEN}",
    "notes": f"SELECT id, run_id, text, time FROM note_rows WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}",
    "promotions": f"""SELECT id, run_id, stage, model, model_hash, "by", time FROM promotion_rows
        WHERE id NOT IN {_HIDDEN} AND run_id NOT IN {_HIDDEN}""",
    "stages": """SELECT stage, run_id, model, model_hash, "by", time FROM (
            SELECT *, row_number() OVER (PARTITION BY stage ORDER BY time DESC, id DESC) AS rn FROM promotions
        ) WHERE rn = 1""",
    # events about a redacted record (its tags, notes, promotions) are hidden with it
    "events": f"""SELECT id, type, v, time, target, body FROM (
            SELECT id, type, v, time, target, body FROM event_rows
            UNION ALL SELECT run_id, 'run', v, "time", run_id, NULL FROM run_rows) WHERE id NOT IN {_HIDDEN}
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


def _ts(expr: str) -> str:
    return f"TRY_CAST(rtrim({expr}, 'Z') AS TIMESTAMP)"


def _float(expr: str) -> str:
    """A JSON number, or a `{"$float": "NaN"}` wrapper (records.FLOAT_KEY; DuckDB casts its names), as DOUBLE."""
    return f"""CASE WHEN json_type({expr}) = 'OBJECT' THEN TRY_CAST({expr}->>'$."{FLOAT_KEY}"' AS DOUBLE)
        WHEN json_type({expr}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN TRY_CAST({expr}::VARCHAR AS DOUBLE) END"""


def _param_text(expr: str) -> str:
    return f"""CASE json_type({expr}) WHEN 'VARCHAR' THEN {expr}->>'$' WHEN 'NULL' THEN 'null'
        WHEN 'OBJECT' THEN coalesce({expr}->>'$."{FLOAT_KEY}"', {expr}::VARCHAR) ELSE {expr}::VARCHAR END"""


# The shape DuckDB parses a record's JSON into, once. Unknown fields are ignored.
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

# A record as the cache's tables hold it, one row per record: what a compacted segment carries
# beside its `body` (written at compaction, so a cold rebuild copies instead of parsing JSON),
# and what the event files of a refresh are parsed into. `params`, `metrics` and `steps` are
# the per-value rows of the run; `param_map`/`metric_map` the `runs` view's maps (file:name rule).
TYPED_COLUMNS: list[tuple[str, str]] = [
    ("id", "VARCHAR"),
    ("type", "VARCHAR"),
    ("body", "VARCHAR"),
    ("v", "INTEGER"),
    ("time", "TIMESTAMP"),
    ("target", "VARCHAR"),
    *[(n, t) for n, t in RUN_COLUMNS if n != "time"],
    ("remove", "BOOLEAN"),
    ("text", "VARCHAR"),
    ("stage", "VARCHAR"),
    ("model", "VARCHAR"),
    ("model_hash", "VARCHAR"),
    ("by", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("params", "STRUCT(file VARCHAR, name VARCHAR, value VARCHAR, num DOUBLE)[]"),
    ("metrics", "STRUCT(file VARCHAR, name VARCHAR, value DOUBLE)[]"),
    ("steps", "STRUCT(file VARCHAR, name VARCHAR, step BIGINT, value DOUBLE)[]"),
    ("mlflow_tags", "STRUCT(name VARCHAR, value VARCHAR)[]"),
    ("param_map", "MAP(VARCHAR, VARCHAR)"),
    ("metric_map", "MAP(VARCHAR, DOUBLE)"),
    ("param_file", "VARCHAR"),
    ("metric_file", "VARCHAR"),
]
TYPED_NAMES = [n for n, _ in TYPED_COLUMNS]

# A run whose params (or metrics) all come from one file has its per-value rows in its map
# already: its map keys are the plain names (the file:name rule), its values the list's. For
# such a run `param_file`/`metric_file` name that file, and the cache keeps no `param_rows`/
# `metric_rows` of it: the `params`/`metrics` views read them from the map (a 100k cold rebuild
# copied 1.5M rows less: ~1 s of ~3.3 s CPU). A param's `num` is then its text read as a number,
# so `param_file` is set only where that is what every `num` of the list says (a quoted "0.5"
# is text, num NULL: such a run keeps its rows).
FILE_OF = {
    "param_file": """CASE WHEN len(list_distinct(list_transform(l.params, lambda x: x.file))) = 1
        AND list_bool_and(list_transform(l.params, lambda x: x.num IS NOT DISTINCT FROM TRY_CAST(x.value AS DOUBLE)))
        THEN l.params[1].file END""",
    "metric_file": "CASE WHEN len(list_distinct(list_transform(l.metrics, lambda x: x.file))) = 1 THEN l.metrics[1].file END",
}
# Typed segments written before FILE_OF: read with those columns NULL (every run keeps its rows).
TYPED_NAMES_BEFORE_FILES = [n for n in TYPED_NAMES if n not in FILE_OF]

# What a segment stores is the typed row less what repeats another column: a run's `run_id`
# and `target` (its id) are NULL there, and a reader restores them (SEGMENT_READ); so are the
# `params`/`metrics` lists of a run whose `param_file`/`metric_file` is set: its map holds the
# same values, and no reader takes that run's values from the list (the views read its map:
# FILE_OF), so nothing restores them. All run on the typed columns, so what compaction writes
# and what `typed_mismatch` derives again agree. (The maps are what stays: leaving a map out
# and rebuilding it from the list on read cost a cold rebuild ~1.7 s of CPU more at 100k runs.)
SEGMENT_STORED_TYPED = {  # the typed layout before residual bodies (segment_read): lists kept
    "run_id": "CASE WHEN type = 'run' AND run_id = id THEN NULL ELSE run_id END",
    "target": "CASE WHEN type = 'run' AND target = id THEN NULL ELSE target END",
}
SEGMENT_STORED = {
    **SEGMENT_STORED_TYPED,
    "params": "CASE WHEN param_file IS NULL THEN params END",
    "metrics": "CASE WHEN metric_file IS NULL THEN metrics END",
}
SEGMENT_READ = {
    "run_id": "CASE WHEN type = 'run' THEN coalesce(run_id, id) ELSE run_id END",
    "target": "CASE WHEN type = 'run' THEN coalesce(target, id) ELSE target END",
}


def segment_columns(how: Mapping[str, str]) -> str:
    """The typed columns as a select list, with `how` (SEGMENT_STORED or SEGMENT_READ) applied."""
    return ", ".join(f'{how[n]} AS "{n}"' if n in how else f'"{n}"' for n in TYPED_NAMES)


def read_segments(files: str, *, by_name: bool = False) -> str:
    """A SELECT of the typed columns (SEGMENT_READ) from the typed segments `files` (a SQL list);
    `by_name` when some may be typed segments written before FILE_OF (those columns NULL there)."""
    if not by_name:
        return f"SELECT {segment_columns(SEGMENT_READ)} FROM read_parquet({files})"
    template = ", ".join(f'NULL::VARCHAR AS "{n}"' for n in FILE_OF)
    return f"""SELECT {segment_columns(SEGMENT_READ)} FROM (SELECT * FROM read_parquet({files}, union_by_name = true)
        UNION ALL BY NAME SELECT {template} WHERE false)"""


def _typed_column(name: str, ctype: str) -> str:
    """A typed column's value from the parsed record `i` (RECORD_COLUMNS); maps are joined later."""
    if ctype == "TIMESTAMP":
        return _ts(f'i."{name}"')
    if name == "target":
        return "coalesce(i.target, i.run_id)"
    if name == "stale":
        return "coalesce(i.stale, false)"
    if name in ("datasets", "deps"):
        return f"coalesce(i.{name}, '{{}}')::VARCHAR"
    if name == "warnings":
        return "coalesce(i.warnings, '[]')::VARCHAR"
    run = "CASE WHEN i.type = 'run' THEN {} END"
    if name == "params":  # MLflow keeps every param as text (`str(value)`): its num is that text read as a number
        value, num = _param_text("e.value"), _float("e.value")
        mlflow = "CASE WHEN i.source = 'import:mlflow' THEN TRY_CAST(e.value->>'$' AS DOUBLE) END"
        return run.format(
            "flatten(list_transform(map_entries(i.params), lambda f: list_transform(map_entries(f.value), "
            f"lambda e: struct_pack(file := f.key, name := e.key, value := {value}, num := coalesce({num}, {mlflow})))))"
        )
    if name == "metrics":
        return run.format(
            "flatten(list_transform(map_entries(i.metrics), lambda f: list_transform(map_entries(f.value), "
            f"lambda e: struct_pack(file := f.key, name := e.key, value := {_float('e.value')}))))"
        )
    if name == "steps":
        value = _float("(s->'$[3]')")
        return run.format(
            "list_transform(i.steps, lambda s: struct_pack(file := s->>'$[0]', name := s->>'$[1]', "
            f"step := TRY_CAST(s->>'$[2]' AS BIGINT), value := {value}))"
        )
    if name == "mlflow_tags":  # json_transform gives NULL (no rows) for tags that are not a map of texts
        return (
            "CASE WHEN i.type = 'run' AND i.source = 'import:mlflow' THEN list_transform(map_entries("
            """json_transform(i."import"->'tags', '"MAP(VARCHAR, VARCHAR)"')), """
            "lambda e: struct_pack(name := e.key, value := e.value)) END"
        )
    return f'i."{name}"'


def _maps_sql(lists: str, kind: str) -> str:
    """Each parsed run's `params` or `metrics` map (by row number `n`), keyed by the file:name
    rule: plain names when the run's values come from one file (no window), SQL_MAP_KEY else."""
    plain = f"""SELECT n, map_from_entries(list_transform({kind}, lambda x: struct_pack(k := x.name, v := x.value))) AS m
        FROM {lists} WHERE type = 'run' AND len(list_distinct(list_transform({kind}, lambda x: x.file))) <= 1"""
    ruled = f"""SELECT run_id AS n, map_from_entries(list(struct_pack(k := key, v := value) ORDER BY file, name)) AS m
        FROM (SELECT run_id, file, name, value, {SQL_MAP_KEY} AS key FROM (
            SELECT n AS run_id, unnest({kind}, recursive := true) FROM {lists} WHERE type = 'run'
                AND len(list_distinct(list_transform({kind}, lambda x: x.file))) > 1))
        GROUP BY run_id"""
    return f"({plain}) UNION ALL ({ruled})"


def derive_typed(con: duckdb.DuckDBPyConnection, bodies_sql: str, table: str, *, run_bodies: bool = False) -> None:
    """The temp view `table` (TYPED_COLUMNS) of the records whose canonical JSON `bodies_sql`
    selects as `body`: the one place a record's JSON becomes the cache's columns, used by a
    refresh for event files and by compaction for the segment it writes. Rows that are not a
    JSON object with an id are left out. A run's body is kept only with `run_bodies` (a segment
    holds every body; the cache none of a run's), so a refresh does not hold them in memory."""
    shape = _sql_str(json.dumps(RECORD_COLUMNS))
    columns = ", ".join(f'{_typed_column(n, t)} AS "{n}"' for n, t in TYPED_COLUMNS if n not in _DERIVED + _FILES)
    body = "i.body" if run_bodies else "CASE WHEN i.type = 'run' THEN NULL ELSE i.body END"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {table}_lists AS SELECT i.n, {body} AS body, {columns} FROM (
            SELECT row_number() OVER () AS n, body, unnest(json_transform(body, '{shape}'))
            FROM ({bodies_sql}) WHERE json_valid(body)) i WHERE i.id IS NOT NULL"""
    )
    # a run without params (or metrics) has a NULL map, as `run_rows` holds it: copied as it is
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {table}_maps AS SELECT r.n,
            CASE WHEN cardinality(p.m) > 0 THEN p.m END AS param_map,
            CASE WHEN cardinality(q.m) > 0 THEN q.m END AS metric_map
            FROM (SELECT n FROM {table}_lists WHERE type = 'run') r
            LEFT JOIN ({_maps_sql(f"{table}_lists", "params")}) p USING (n)
            LEFT JOIN ({_maps_sql(f"{table}_lists", "metrics")}) q USING (n)"""
    )
    select = ", ".join(
        f'm."{n}"' if n in _DERIVED else f'{FILE_OF[n]} AS "{n}"' if n in FILE_OF else f'l."{n}"' for n in TYPED_NAMES
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {table} AS SELECT {select}
            FROM {table}_lists l LEFT JOIN {table}_maps m USING (n)"""
    )


_DERIVED = ("param_map", "metric_map")  # typed columns computed across a run's values, not per field
_FILES = tuple(FILE_OF)  # computed from the run's lists


NAME_KINDS = ("metric", "param")  # `names.kind`; the maps are `<kind>_map` in `inc`, `<kind>s` in `run_rows`


def _names_sql(kind: str, maps: str, source: str) -> str:
    """The map keys of `source`'s runs not yet in `names` (remote_read strips the last clause)."""
    return f"""INSERT INTO names SELECT DISTINCT '{kind}', k FROM (SELECT unnest(map_keys({maps})) AS k FROM {source})
        WHERE k NOT IN (SELECT name FROM names WHERE kind = '{kind}')"""


# A fresh build takes the keys from `run_rows` once it is written: DuckDB's own storage reads
# them ~4x faster than the segments' Parquet maps (100k runs: 0.06 s against 0.22 s of CPU).
FRESH_NAMES_SQL = {
    _names_sql(k, f"{k}_map", "inc WHERE type = 'run'"): _names_sql(k, f"{k}s", "run_rows") for k in NAME_KINDS
}

# Every statement reads the temp table `inc` (TYPED_COLUMNS) of new, de-duplicated records.
INGEST_SQL = [
    # a segment's body keeps the newline an event file has; the view shows the JSON alone
    """INSERT INTO event_rows SELECT id, type, v, time, target, rtrim(body, chr(10)) FROM inc
        WHERE type IS DISTINCT FROM 'run'""",
    """INSERT INTO param_rows SELECT id, p.file, p.name, p.value, p.num
        FROM (SELECT id, unnest(params) AS p FROM inc WHERE type = 'run' AND param_file IS NULL)""",
    """INSERT INTO metric_rows SELECT id, m.file, m.name, m.value
        FROM (SELECT id, unnest(metrics) AS m FROM inc WHERE type = 'run' AND metric_file IS NULL)""",
    """INSERT INTO step_rows SELECT id, s.file, s.name, s.step, s.value
        FROM (SELECT id, unnest(steps) AS s FROM inc WHERE type = 'run' AND len(steps) > 0)""",
    """INSERT INTO mlflow_tag_rows SELECT id, t.name, t.value
        FROM (SELECT id, unnest(mlflow_tags) AS t FROM inc WHERE type = 'run' AND len(mlflow_tags) > 0)""",
    """INSERT INTO tag_rows SELECT id, target, name, coalesce(remove, false), time FROM inc WHERE type = 'tag'""",
    """INSERT INTO note_rows SELECT id, target, text, time FROM inc WHERE type = 'note'""",
    """INSERT INTO promotion_rows SELECT id, target, stage, model, model_hash, "by", time FROM inc
        WHERE type = 'promote'""",
    """INSERT INTO redaction_rows SELECT id, target, reason, time FROM inc WHERE type = 'redact'""",
    "INSERT INTO run_rows SELECT "
    + ", ".join(f'"{n}"' for n, _ in RUN_COLUMNS)
    + ", param_map, metric_map, v, param_file, metric_file FROM inc WHERE type = 'run'",
    *[_names_sql(kind, f"{kind}_map", "inc WHERE type = 'run'") for kind in NAME_KINDS],
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
    segments: list[Path] = field(default_factory=list)  # typed (TYPED_COLUMNS): copied as they are
    before_files: bool = False  # some of them are typed segments written before FILE_OF
    plain: list[Path] = field(default_factory=list)  # bodies only: parsed


def typed_schema(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """TYPED_COLUMNS as DuckDB describes them: a segment read with exactly these is copied."""
    columns = ", ".join(f'NULL::{t} AS "{n}"' for n, t in TYPED_COLUMNS)
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT {columns}").fetchall()]


def _files(paths: list[Path]) -> str:
    return "[" + ", ".join(f"'{_sql_str(str(f))}'" for f in paths) + "]"


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
                con.execute(f"SET threads TO {BUILD_THREADS}")
                # bounded: a million-run rebuild spills to the scratch folder instead of growing
                con.execute(f"SET memory_limit = '{BUILD_MEMORY}'")
                con.execute("SET enable_progress_bar = false")  # it would draw over the TUI or a hook's output
                con.execute(f"SET temp_directory = '{_sql_str(scratch)}'")
                con.execute(f"SET disabled_compression_methods = '{STORAGE_UNUSED}'")
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
        parts = []
        if staged.ndjson is not None:
            path = _sql_str(str(staged.ndjson))
            lines = f"""SELECT body FROM read_csv('{path}', columns = {{'body': 'VARCHAR'}}, delim = '\x01', quote = '',
                escape = '', header = false, max_line_size = 268435456, ignore_errors = true)"""
            derive_typed(con, lines, "typed_events")
            parts.append("SELECT * FROM typed_events")
        if staged.plain:  # segments of bodies only (an older mlci's): parsed like event files
            derive_typed(con, f"SELECT body FROM read_parquet({_files(staged.plain)})", "typed_plain")
            parts.append("SELECT * FROM typed_plain")
        if staged.segments:  # typed segments: copied, no JSON parsed
            parts.append(read_segments(_files(staged.segments), by_name=staged.before_files))
        # a view: each statement below reads only the columns it needs from the segments
        con.execute("CREATE TEMP VIEW inc AS " + " UNION ALL ".join(f"({q})" for q in parts))
        row = con.execute("SELECT count(*) - count(DISTINCT id) FROM inc").fetchone()
        if (row and row[0]) or not fresh:  # one id twice (an event file beside its segment's copy): the earlier
            known = "" if fresh else "WHERE id NOT IN (SELECT id FROM event_rows UNION ALL SELECT run_id FROM run_rows)"
            con.execute(
                f"CREATE TEMP TABLE inc_rows AS SELECT * FROM inc {known} "
                "QUALIFY row_number() OVER (PARTITION BY id ORDER BY time) = 1"
            )
            con.execute("CREATE OR REPLACE TEMP VIEW inc AS SELECT * FROM inc_rows")
        for statement in INGEST_SQL:
            con.execute(FRESH_NAMES_SQL.get(statement, statement) if fresh else statement)
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
        from git in pack order), each readable segment as a Parquet file of its own (typed, or
        bodies only)."""
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
        typed = typed_schema(con) if segments else []
        before_files = [(n, t) for n, t in typed if n not in FILE_OF]
        for n, data in self.repo.stream_blobs([e.oid for e in segments]):
            seg = scratch / f"segment-{n}.parquet"
            seg.write_bytes(data or b"")
            try:
                schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{_sql_str(str(seg))}')").fetchall()
            except duckdb.Error as exc:
                self.notices.append(f"{segments[n].path}: unreadable segment skipped ({first_line(exc)})")
                continue
            shape = [(r[0], r[1]) for r in schema]
            if shape in (typed, before_files):
                staged.segments.append(seg)
                staged.before_files |= shape == before_files
            elif ("body", "VARCHAR") in shape:
                staged.plain.append(seg)
            else:
                self.notices.append(f"{segments[n].path}: unreadable segment skipped (no body column)")
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
