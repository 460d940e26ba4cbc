"""Export: runs, params, metrics and steps out of the ledger, written by DuckDB.

The format follows the extension. Parquet and JSON hold one row per run with its params
and metrics maps and its step series nested, so one file carries everything. CSV cannot
nest: it writes four flat tables beside each other (`FILE.runs.csv`, `.params.csv`,
`.metrics.csv`, `.steps.csv`). `--table` writes one flat table to FILE in any format.
Every file is written to a temporary name and renamed into place: an interrupted export
leaves no half-written file. JSON is strict JSON: NaN and infinities become the strings
`mlci ... --json` writes ("NaN", "Infinity", "-Infinity"), not DuckDB's bare tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci_tui.errors import InputError, first_line
from mlci_tui.gitio import Repo
from mlci_tui.ledger.held import open_cache, sandboxed_cache
from mlci_tui.ledger.query.run import LISTED_FIELDS
from mlci_tui.numbers import NAN, NEG_INF, POS_INF

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# a run's fields as columns (the maps and steps are written beside them, or nested)
RUN_FIELDS = ", ".join(f'"{f}"' for f in LISTED_FIELDS if f not in ("time", "params", "metrics"))
TABLES = ("runs", "params", "metrics", "steps")


def format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path.name}: unknown export format (use .parquet, .csv, .json or .jsonl)")
    return fmt


def _copy_options(fmt: str) -> str:
    return {
        "parquet": "(FORMAT PARQUET, COMPRESSION ZSTD)",
        "csv": "(FORMAT CSV, HEADER)",
        "json": "(FORMAT JSON, ARRAY true)",
        "jsonl": "(FORMAT JSON)",
    }[fmt]


def _matching_ids(repo: Repo, where: str) -> list[str]:
    """The runs `--where` selects, as `mlci runs --where` reads it (the filter language, else SQL;
    `sql:` forces SQL: `listing.matching_ids`), on a locked-down connection of its own (`sql_guard`)."""
    from mlci_tui.ledger.query.listing import matching_ids

    with sandboxed_cache(repo) as con:
        try:
            return matching_ids(con, where)
        except InputError as exc:
            raise InputError(f"export: {exc}") from None


def _flat_sql(table: str, where: str, fmt: str) -> str:
    """One flat table, limited to the runs `where` selects."""
    runs = f"(SELECT run_id FROM runs WHERE {where})"
    if table == "runs":
        fields = RUN_FIELDS
        if fmt == "csv":  # CSV has no lists: tags joined by commas
            fields = fields.replace('"tags"', "array_to_string(tags, ',') AS tags")
        else:
            fields += ", params, metrics"
        return f"SELECT {fields}, datasets, deps, warnings FROM runs WHERE {where} ORDER BY started NULLS LAST, run_id"
    order = {"params": "run_id, file, name", "metrics": "run_id, file, name", "steps": "run_id, file, name, step"}
    return f"SELECT * FROM {table} WHERE run_id IN {runs} ORDER BY {order[table]}"


def _nested_sql(where: str) -> str:
    """One row per run: its fields, params and metrics maps, and every step of every series."""
    return f"""
        SELECT {", ".join("r." + f.strip() for f in RUN_FIELDS.split(","))}, r.params, r.metrics,
               coalesce(s.steps, []) AS steps, r.datasets, r.deps, r.warnings
        FROM (SELECT * FROM runs WHERE {where}) r
        LEFT JOIN (
            SELECT run_id, list(struct_pack(file := file, name := name, step := step, value := value)
                                ORDER BY file, name, step) AS steps
            FROM steps GROUP BY run_id
        ) s USING (run_id)
        ORDER BY r.started NULLS LAST, r.run_id"""


def export(
    repo: Repo,
    target: Path,
    *,
    table: str | None = None,
    where: str | None = None,
    force: bool = False,
    finish_csv: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write the export; returns the files written. `finish_csv` rewrites each CSV file before
    it is renamed into place (`output.inert_csv_file`, which this layer cannot import)."""
    import duckdb

    fmt = format_of(target)
    ids = _matching_ids(repo, where) if where else None
    predicate = "run_id IN (SELECT run_id FROM _export_ids)" if where else "true"
    if table:
        jobs = [(target, _flat_sql(table, predicate, fmt))]
    elif fmt == "csv":
        stem = target.with_suffix("")
        jobs = [(stem.with_name(f"{stem.name}.{t}.csv"), _flat_sql(t, predicate, fmt)) for t in TABLES]
    else:
        jobs = [(target, _nested_sql(predicate))]
    for path, _sql in jobs:
        if path.exists() and not force:
            raise InputError(f"{path}: exists; use --force to replace it")
        if not path.parent.is_dir():
            raise InputError(f"{path.parent}: no such folder")
    written = []
    with open_cache(repo) as con:
        if ids is not None:  # the user's predicate ran on a locked-down connection: only its answer comes here
            import pyarrow as pa

            con.register("_export_ids", pa.table({"run_id": pa.array(ids, pa.string())}))
        for path, sql in jobs:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                if fmt in ("json", "jsonl"):
                    sql = strict_json_sql(con, sql)
                con.execute(f"COPY ({sql}) TO '{_quote(str(tmp))}' {_copy_options(fmt)}")
                if fmt == "csv" and finish_csv is not None:
                    finish_csv(tmp)
                os.replace(tmp, path)
            except duckdb.Error as exc:
                raise InputError(f"export: {first_line(exc)}" + (" (check --where)" if where else "")) from None
            finally:
                if tmp.exists():
                    tmp.unlink()
            written.append(path)
    return written


# NaN and infinities as the strings `mlci ... --json` writes (output.json_value): DuckDB's
# own JSON writer emits bare NaN/Infinity tokens, which strict JSON parsers refuse.
_NON_FINITE = (
    f"CASE WHEN isnan({{x}}) THEN '\"{NAN}\"'::JSON WHEN isinf({{x}}) AND {{x}} > 0 THEN '\"{POS_INF}\"'::JSON "
    f"WHEN isinf({{x}}) THEN '\"{NEG_INF}\"'::JSON ELSE to_json({{x}}) END"
)


def strict_json_sql(con: Any, sql: str) -> str:
    """`sql` with every float, at any depth (maps, lists, structs), made strict-JSON safe."""
    relation = con.sql(sql)
    columns = []
    for name, dtype in zip(relation.columns, relation.types):
        quoted = _ident(name)
        fixed = _json_safe(f"q.{quoted}", dtype, 0)
        columns.append(f"{fixed} AS {quoted}" if fixed else f"q.{quoted}")
    return f"SELECT {', '.join(columns)} FROM ({sql}) q"


def _json_safe(expr: str, dtype: Any, depth: int) -> str | None:
    """An expression writing `expr` with non-finite floats as strings; None when it holds no float."""
    kind = dtype.id
    if kind in ("double", "float"):
        return _NON_FINITE.format(x=expr)
    if kind == "map":
        children = dict(dtype.children)
        value = _json_safe(f"e{depth}.value", children["value"], depth + 1)
        if value is None:
            return None
        entry = f"struct_pack(key := e{depth}.key, value := {value})"
        return f"map_from_entries(list_transform(map_entries({expr}), lambda e{depth}: {entry}))"
    if kind == "list":
        item = _json_safe(f"x{depth}", dtype.children[0][1], depth + 1)
        return None if item is None else f"list_transform({expr}, lambda x{depth}: {item})"
    if kind == "struct":
        fields = []
        changed = False
        for field, sub in dtype.children:
            ident = _ident(field)
            ref = f"{expr}.{ident}"
            fixed = _json_safe(ref, sub, depth + 1)
            changed = changed or fixed is not None
            fields.append(f"{ident} := {fixed or ref}")
        return f"struct_pack({', '.join(fields)})" if changed else None
    return None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote(text: str) -> str:
    return text.replace("'", "''")
