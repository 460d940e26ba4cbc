"""Checks compiled to DuckDB SQL over a file read in place (CSV, Parquet, JSONL).

One aggregate query computes every check's failure count and the profile statistics of
the version; only when a check fails does a targeted query fetch its most common offending
values and a few sample rows (0-based row index, key columns). DuckDB runs under an
explicit memory limit, thread count and spill directory. No pandas.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import ConfigError
from mlci_tui.sanitize import display
from mlci_tui.sql_guard import one_select, time_limit
from mlci_tui.validate.results import CheckResult
from mlci_tui.validate.spec import FLOAT_TYPES, INTEGER_TYPES, ColumnSpec, DatasetSpec, Tolerance

if TYPE_CHECKING:
    import duckdb

MEMORY_LIMIT = os.environ.get("MLCI_DUCKDB_MEMORY_LIMIT", "1GB")
THREADS = int(os.environ.get("MLCI_DUCKDB_THREADS", "0") or 0) or (os.cpu_count() or 1)  # every core, as DuckDB does
MAX_PROFILE_COLUMNS = 200
QUANTILE_LEVELS = [i / 20 for i in range(21)]
SAMPLE_ROWS = 5
TOP_VALUES = 5
MAX_CELL = 60
CATEGORIES = 50
INT_SQL = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
FLOAT_SQL = {"FLOAT", "DOUBLE", "REAL"}
BITMAP_SQL = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
BITMAP_BITS = 1 << 29  # exact distinct bitmaps: 64 MiB in all, split between DuckDB's threads
HINTS = {
    "type": "fix the values, or change the column's declared type",
    "nullable": "fill the missing values, or set nullable: true",
    "unique": "remove the duplicate rows, or drop unique: true",
    "primary_key": "key values must be present and unique: remove duplicates and fill missing keys",
    "min": "fix the rows below the minimum, or lower min",
    "max": "fix the rows above the maximum, or raise max",
    "allowed_values": "fix the rows, or add the value to allowed_values (quote strings)",
    "regex": "fix the values, or widen the regex (it must match the whole value)",
    "length": "fix the values, or change length",
    "references": "add the missing keys to the referenced dataset, or fix the rows",
    "row_count": "check the data is complete, or change row_count",
    "columns": "declare the column, or remove it from the data",
    "sql": "the query returns the failing rows; fix them or the query",
}


class DataError(Exception):
    """The data cannot be read (corrupt, truncated, not the declared format): a data failure."""


def connect(spill: Path) -> duckdb.DuckDBPyConnection:
    import duckdb

    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        ":memory:",
        config={"memory_limit": MEMORY_LIMIT, "threads": THREADS, "temp_directory": str(spill)},
    )
    con.execute("SET enable_progress_bar = false")
    return con


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


# ------------------------------------------------------------------------------------ reading
def precheck(local: Path, fmt: str, csv_opts: dict[str, Any]) -> list[str] | None:
    """Cheap sniffing before DuckDB, for one clear message instead of a parser's paragraph."""
    size = local.stat().st_size
    if size == 0:
        raise DataError("empty file (0 bytes)")
    with open(local, "rb") as fh:
        head = fh.read(65536)
        if fmt == "parquet":
            fh.seek(max(0, size - 4))
            tail = fh.read(4)
            if head[:4] != b"PAR1":
                raise DataError("not a Parquet file (no PAR1 magic at the start)")
            if tail != b"PAR1" or size < 12:
                raise DataError("truncated or corrupt Parquet file (no PAR1 footer at the end)")
            return None
    encoding = (csv_opts or {}).get("encoding") or "utf-8"
    if b"\0" in head and encoding != "utf-16":
        offset = head.index(b"\0")
        raise DataError(f"binary data (NUL byte at offset {offset}), not {fmt.upper()} text")
    if encoding == "utf-8":
        cut = head if size <= len(head) else head[: head.rfind(b"\n") + 1] or head
        try:
            text = cut.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = cut[: exc.start].count(b"\n") + 1
            raise DataError(
                f"not UTF-8 text (byte {cut[exc.start]:#04x} at offset {exc.start}, line {line}); "
                "set csv.encoding (latin-1, utf-16) if that is the file's encoding"
            ) from None
        if fmt in ("csv", "tsv"):
            return _check_ragged(text, _delimiter(fmt, csv_opts))
    return None


def _check_ragged(text: str, delim: str) -> list[str] | None:
    """The header's fields; DataError when a row in the first 64 KiB has another width."""
    lines = text.splitlines()
    if len(lines) > 1:
        lines = lines[:-1]  # the last line of a chunk may be cut short
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delim)
    header: list[str] | None = None
    for n, row in enumerate(reader, 1):
        if not row:
            continue
        if header is None:
            header = row
        elif len(row) != len(header):
            raise DataError(f"ragged rows: line {n} has {len(row)} fields, the header has {len(header)}")
    return header


def _delimiter(fmt: str, csv_opts: dict[str, Any]) -> str:
    return (csv_opts or {}).get("delimiter") or ("\t" if fmt == "tsv" else ",")


# no BOOLEAN: DuckDB's sniffer reads a column of NO/YES as booleans, the YAML 1.1 trap again
CSV_TYPES = "['BIGINT', 'DOUBLE', 'TIME', 'DATE', 'TIMESTAMP', 'VARCHAR']"


def relation_sql(
    local: Path | list[Path],
    fmt: str,
    csv_opts: dict[str, Any],
    *,
    all_varchar: bool = False,
    text_columns: list[str] | None = None,
) -> str:
    """The table function reading the file; declared string columns stay text (zip codes keep their zeros).

    A list of files (a folder dataset's shards) is one table: columns matched by name, not
    position (a shard with its columns in another order still lines up), and no hive
    partition columns from the path (the cache's objects have none: both read alike)."""
    many = isinstance(local, list)
    path = "[" + ", ".join(lit(str(f)) for f in local) + "]" if isinstance(local, list) else lit(str(local))
    union = ", union_by_name = true, hive_partitioning = false" if many else ""
    if fmt == "parquet":
        return f"read_parquet({path}{union})"
    if fmt == "jsonl":
        return f"read_json({path}, format = 'newline_delimited', maximum_object_size = 16777216{union})"
    opts = csv_opts or {}
    parts = [
        f"header = {lit(bool(opts.get('header', True)))}",
        f"delim = {lit(_delimiter(fmt, opts))}",
        "skip = 0",
        "strict_mode = true",
    ]
    if many:
        parts += ["union_by_name = true", "hive_partitioning = false"]
    if opts.get("quote"):
        parts.append(f"quote = {lit(opts['quote'])}")
    if opts.get("encoding") and opts["encoding"] != "utf-8":
        parts.append(f"encoding = {lit(opts['encoding'])}")
    if all_varchar:
        parts.append("all_varchar = true")
    else:
        parts.append(f"auto_type_candidates = {CSV_TYPES}")
        if text_columns:
            parts.append("types = {" + ", ".join(f"{lit(c)}: 'VARCHAR'" for c in text_columns) + "}")
    return f"read_csv({path}, {', '.join(parts)})"


def pin_csv(con: duckdb.DuckDBPyConnection, rel: str, local: Path | list[Path]) -> str:
    """A CSV relation with the sniffed dialect and column types written out (`auto_detect = false`).

    DuckDB sniffs a CSV each time a query binds `read_csv` (view, DESCRIBE, the aggregate, the
    sample query: ~0.1 s each on a large file); sniffing once and pinning the result reads the
    same way. Any other relation, or a prompt that does not name this file as expected, is
    returned unchanged, and so is a list of files (sniff_csv reads one file; each shard is sniffed)."""
    if not rel.startswith("read_csv(") or isinstance(local, list):
        return rel
    row = con.execute(f"SELECT Prompt FROM sniff_csv{rel[len('read_csv') :]}").fetchone()
    prompt = str(row[0]).strip() if row else ""
    # DuckDB 2.0 writes a CRLF file's new_line as an escaped CR LF that it then reads as 0 rows:
    # leave new_line out (the reader takes LF and CR LF line ends without it)
    newline = re.findall(r", new_line='[^']*'", prompt)
    if prompt.startswith(f"FROM read_csv({lit(str(local))}, ") and prompt.endswith(");") and len(newline) == 1:
        return prompt[len("FROM ") : -1].replace(newline[0], "")
    return rel


def describe(con: duckdb.DuckDBPyConnection, rel: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]


def clean_error(exc: BaseException) -> str:
    """DuckDB's message cut to what a user needs: its first line, and the line number."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = re.sub(r"^(Invalid Input|Conversion|IO|Binder|Parser) Error: ", "", first)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    detail = ""
    for marker in (
        "Expected Number of Columns",
        "Could not convert",
        "Invalid unicode",
        "not possible to automatically",
    ):
        hit = next((s.strip() for s in text.splitlines() if marker in s), "")
        if hit:
            detail = hit
            break
    if "not possible to automatically detect" in text:
        detail = "rows have differing numbers of fields, or the file is not CSV"
    out = first if not detail or detail in first else f"{first}: {detail}"
    if line and f"Line: {line.group(1)}" not in out:
        out += f" (line {line.group(1)})"
    return display(out)[:300]


# ------------------------------------------------------------------------------------ typing
@dataclass
class Column:
    name: str
    actual: str  # DuckDB type of the data
    spec: ColumnSpec | None
    value: str = ""  # the SQL expression of the typed value
    type_failure: str | None = None  # row predicate of a type failure

    @property
    def numeric(self) -> bool:
        base = self.value_type
        return base in INT_SQL or base in FLOAT_SQL or base.startswith("DECIMAL")

    @property
    def value_type(self) -> str:
        if self.spec and self.spec.sql_type and self.value != q(self.name):
            return self.spec.sql_type
        return self.actual


def type_column(name: str, actual: str, spec: ColumnSpec | None, fmt: str) -> Column:
    col = Column(name, actual, spec, value=q(name))
    if spec is None or spec.type is None:
        return col
    declared, raw = spec.type, q(name)
    target = spec.sql_type or "VARCHAR"
    is_int = actual in INT_SQL
    is_num = is_int or actual in FLOAT_SQL or actual.startswith("DECIMAL")
    if declared in INTEGER_TYPES:
        if is_int and (declared == "integer" or actual == target):
            return col
        dbl = f"TRY_CAST({raw} AS DOUBLE)"
        col.value = f"TRY_CAST({raw} AS {target})"
        col.type_failure = f"({raw} IS NOT NULL AND ({dbl} IS NULL OR {dbl} <> floor({dbl}) OR {col.value} IS NULL))"
    elif declared in FLOAT_TYPES:
        if is_num:
            return col
        col.value = f"TRY_CAST({raw} AS {target})"
        col.type_failure = f"({raw} IS NOT NULL AND {col.value} IS NULL)"
    elif declared == "string":
        if actual == "VARCHAR":
            return col
        col.value = f"CAST({raw} AS VARCHAR)"
        if fmt == "parquet":  # a typed file: a non-string column is a type mismatch
            col.type_failure = f"({raw} IS NOT NULL)"
    else:
        if actual == target:
            return col
        col.value = f"TRY_CAST({raw} AS {target})"
        col.type_failure = f"({raw} IS NOT NULL AND {col.value} IS NULL)"
    return col


# ------------------------------------------------------------------------------------ compiling
@dataclass
class Planned:
    result: CheckResult
    tolerance: Tolerance
    predicate: str | None = None  # a row predicate: count_if(...) and the sample query
    aggregate: str | None = None  # a count that is not a row predicate (unique, pk): failures = it - distinct
    distinct: str | None = None  # exact count(DISTINCT ...) subtracted from `aggregate` (unique, pk)
    column: Column | None = None
    sql: str | None = None  # raw SQL check


@dataclass
class Plan:
    columns: dict[str, Column]
    checks: list[Planned] = field(default_factory=list)
    profile_columns: list[Column] = field(default_factory=list)
    categorical: set[str] = field(default_factory=set)


def _params(check: Any) -> dict[str, Any]:
    return {check.kind: check.value, **check.tolerance.describe()}


def _predicate(kind: str, value: Any, col: Column, refs: dict[str, tuple[str, str]]) -> str | None:
    v = col.value
    vt = col.spec.sql_type if col.spec and col.spec.sql_type else col.actual
    typed = (lambda x: f"CAST({lit(x)} AS {vt})") if vt in ("DATE", "TIMESTAMP") else lit
    if kind == "type":
        return col.type_failure
    if kind == "nullable":
        return f"({q(col.name)} IS NULL)"
    if kind == "min":
        return f"({v} < {typed(value)})"
    if kind == "max":
        return f"({v} > {typed(value)})"
    if kind == "allowed_values":
        return f"({v} NOT IN ({', '.join(typed(x) for x in value)}))"
    if kind == "regex":
        return f"(NOT regexp_full_match(CAST({v} AS VARCHAR), {lit(value)}))"
    if kind == "length":
        parts = []
        if value.get("min") is not None:
            parts.append(f"length(CAST({v} AS VARCHAR)) < {int(value['min'])}")
        if value.get("max") is not None:
            parts.append(f"length(CAST({v} AS VARCHAR)) > {int(value['max'])}")
        return f"({' OR '.join(parts)})" if parts else None
    if kind == "references":
        other, other_col = refs[str(value)]
        return f"({v} NOT IN (SELECT {q(other_col)} FROM {other} WHERE {q(other_col)} IS NOT NULL))"
    return None


def plan(
    spec: DatasetSpec, schema: list[tuple[str, str]], fmt: str, refs: dict[str, tuple[str, str]] | None = None
) -> Plan:
    refs = refs or {}
    actual = dict(schema)
    columns = {name: type_column(name, t, spec.columns.get(name), fmt) for name, t in schema}
    out = Plan(columns)
    missing = [c for c in spec.columns if c not in actual]
    if missing:
        r = CheckResult("columns", None, {"missing": missing}, spec.schema_severity)
        r.status, r.failures = "fail", len(missing)
        r.message = f"declared column(s) missing from the data: {', '.join(missing)}"
        r.hint = "the data lacks a declared column: fix the file or the schema"
        out.checks.append(Planned(r, Tolerance(spec.schema_severity)))
    if spec.strict:
        extra = [c for c in actual if c not in spec.columns]
        r = CheckResult("columns", None, {"strict": True, "extra": extra}, spec.schema_severity)
        if extra:
            r.status, r.failures = "fail", len(extra)
            r.message = f"undeclared column(s) (schema.strict): {', '.join(extra[:20])}"
        r.hint = HINTS["columns"]
        out.checks.append(Planned(r, Tolerance(spec.schema_severity)))
    if spec.row_count:
        params = {k: v for k, v in spec.row_count.items() if v is not None}
        out.checks.append(Planned(CheckResult("row_count", None, params, spec.severity), Tolerance(spec.severity)))
    if spec.primary_key and not any(k in missing for k in spec.primary_key):
        keys = [columns[k].value for k in spec.primary_key]
        nulls = " OR ".join(f"{k} IS NULL" for k in keys)
        # failures: rows with a null key part, plus repeats of a complete key beyond its first
        if len(keys) == 1:
            distinct = f"count(DISTINCT {keys[0]})"  # nulls are not counted
        else:
            distinct = f"count(DISTINCT ({', '.join(keys)})) FILTER (WHERE NOT ({nulls}))"
        out.checks.append(
            Planned(
                CheckResult("primary_key", None, {"primary_key": spec.primary_key}, spec.severity),
                Tolerance(spec.severity),
                aggregate="count(*)",
                distinct=distinct,
            )
        )
    for name, cspec in spec.columns.items():
        if name not in actual:
            continue
        col = columns[name]
        for check in cspec.checks:
            result = CheckResult(check.kind, name, _params(check), check.tolerance.severity)
            if check.kind == "unique":
                out.checks.append(
                    Planned(
                        result,
                        check.tolerance,
                        aggregate=f"count({col.value})",
                        distinct=f"count(DISTINCT {col.value})",
                        column=col,
                    )
                )
                continue
            pred = _predicate(check.kind, check.value, col, refs)
            if check.kind == "type" and pred is None:
                out.checks.append(Planned(result, check.tolerance, column=col))  # the data's type matches
                continue
            if pred is None:
                continue
            if check.kind != "nullable" and check.kind != "type":
                pred = f"({col.value} IS NOT NULL AND {pred})"  # only `nullable` concerns nulls
            out.checks.append(Planned(result, check.tolerance, predicate=pred, column=col))
    for sql_check in spec.checks:
        r = CheckResult("sql", None, {"name": sql_check.name, "sql": sql_check.sql}, sql_check.tolerance.severity)
        out.checks.append(Planned(r, sql_check.tolerance, sql=sql_check.sql))
    declared = [columns[c] for c in spec.columns if c in columns]
    rest = [c for n, c in columns.items() if n not in spec.columns]
    out.profile_columns = (declared + rest)[:MAX_PROFILE_COLUMNS]
    return out


def _orderable(t: str) -> bool:
    return not any(t.startswith(p) for p in ("STRUCT", "MAP", "UNION", "JSON")) and not t.endswith("]")


def profile_aggregates(
    plan_: Plan, histograms: set[str] | None, known: dict[str, str] | None = None, *, one_pass: bool = False
) -> list[tuple[str, str]]:
    """Statistics of every profiled column; histograms (a quantile sketch for numeric columns,
    value counts for others) only for `histograms` (drift and allowed-value columns: the sketch
    is the costliest aggregate), or for every numeric column when None. `known` maps an
    expression computed anyway to its key: a column whose exact distinct count a unique check
    computes takes that count instead of an estimate. In a file parsed in `one_pass` (CSV,
    JSONL) a string column with allowed values counts each of them with `count_if`, cheaper
    there than `histogram()`'s map (values outside the list are the rest: "other")."""
    known = known or {}
    aggs: list[tuple[str, str]] = []
    for i, col in enumerate(plan_.profile_columns):
        v = col.value
        aggs.append((f"p{i}_n", f"count({v})"))
        if not _orderable(col.value_type):
            continue
        aggs.append((f"p{i}_min", f"min({v})"))
        aggs.append((f"p{i}_max", f"max({v})"))
        exact = f"count(DISTINCT {v})"
        aggs.append((f"p{i}_d", exact if exact in known else f"approx_count_distinct({v})"))
        if col.numeric:
            d = f"CAST({v} AS DOUBLE)"
            aggs.append((f"p{i}_mean", f"avg({d})"))
            aggs.append((f"p{i}_std", f"stddev_samp({d})"))
            if histograms is None or col.name in histograms:
                aggs.append((f"p{i}_q", f"approx_quantile({d}, {QUANTILE_LEVELS})"))
        elif histograms is not None and col.name in histograms:
            allowed = allowed_strings(col) if one_pass else None
            if allowed:
                aggs += [(f"p{i}_v{j}", f"count_if({v} = {lit(x)})") for j, x in enumerate(allowed)]
            else:
                aggs.append((f"p{i}_h", f"histogram(CAST({v} AS VARCHAR))"))
    return aggs


def allowed_strings(col: Column) -> list[str] | None:
    """A string column's allowed values, when there are few enough to count one by one."""
    if col.spec is None or col.value_type != "VARCHAR":
        return None
    for check in col.spec.checks:
        if check.kind == "allowed_values" and 0 < len(check.value) <= CATEGORIES:
            return [str(x) for x in check.value]
    return None


def _metadata_answers(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """Whether DuckDB answers `sql` from the file's metadata (Parquet row-group statistics):
    its plan then reads no rows. A file written without statistics would be scanned instead,
    so the caller keeps those aggregates in its one pass."""
    text = "\n".join(str(r[-1]) for r in con.execute(f"EXPLAIN {sql}").fetchall())
    return re.search(r"(?i)parquet|table.scan|seq.scan|read.json|read.csv", text) is None


def statistics_pass(
    con: duckdb.DuckDBPyConnection, rel: str, plan_: Plan, profile: bool
) -> tuple[dict[str, Any], dict[int, int], set[str]]:
    """Count, min and max of plain columns, and the verdict of null and range checks, from the
    file's statistics: (values by aggregate expression, failures of the settled checks by
    index, expressions answered). In Parquet these cost milliseconds instead of a share of the
    scan (10M rows: the one pass 2.2 s -> 1.8 s); a range check whose bounds the statistics
    do not prove is left to the pass, and so is every column of a type whose statistics DuckDB
    does not trust in this file (a float column that may hold NaN) or that has none."""
    plain = {
        c.name: c
        for c in [*(plan_.profile_columns if profile else []), *(p.column for p in plan_.checks if p.column)]
        if c.value == q(c.name) and _orderable(c.value_type)
    }
    by_type: dict[str, list[Column]] = {}
    for plain_col in plain.values():
        by_type.setdefault(plain_col.value_type, []).append(plain_col)
    # by type, and counts apart (DuckDB answers count(col) from statistics only without nulls);
    # all groups in one EXPLAIN first, each group on its own only when that fails
    groups: list[tuple[list[str], dict[int, str]]] = []
    for cols in by_type.values():
        groups.append(
            ([f"{a}({c.value})" for c in cols for a in ("min", "max")], _range_tests(plan_, {c.name for c in cols}))
        )
        groups.append(([f"count({c.value})" for c in cols], {}))

    def select(chosen: list[tuple[list[str], dict[int, str]]]) -> str:
        cols = [f"{e} AS s{i}" for i, e in enumerate(e for g, _t in chosen for e in g)]
        return "SELECT " + ", ".join([*cols, *(f"{t} AS f{n}" for _g, ts in chosen for n, t in ts.items())])

    if groups and not _metadata_answers(con, f"{select(groups)} FROM {rel}"):
        groups = [g for g in groups if _metadata_answers(con, f"{select([g])} FROM {rel}")]
    exprs: dict[str, str] = {"count(*)": "rows"}
    tests: dict[int, str] = {}  # check index -> "could fail" per the column's bounds
    for group, group_tests in groups:
        exprs.update({e: f"s{len(exprs) + i}" for i, e in enumerate(group)})
        tests.update(group_tests)
    if len(exprs) == 1:
        return {}, {}, set()
    answers = [f"{e} AS {k}" for e, k in exprs.items()] + [f"{t} AS f{n}" for n, t in tests.items()]
    row = con.execute(f"SELECT {', '.join(answers)} FROM {rel}").fetchone()
    assert row is not None
    got = dict(zip([*exprs, *(f"f{n}" for n in tests)], row))
    settled: dict[int, int] = {}
    for n, p in enumerate(plan_.checks):
        col = p.column
        if col is None or p.predicate is None:
            continue
        if p.result.check == "nullable" and f"count({col.value})" in exprs:
            settled[n] = int(got["count(*)"]) - int(got[f"count({col.value})"] or 0)  # exact
        elif n in tests and not got[f"f{n}"]:  # false, or null: no value at all
            settled[n] = 0
    values = {e: got[e] for e in exprs}
    return values, settled, set(exprs)


def _range_tests(plan_: Plan, names: set[str]) -> dict[int, str]:
    """min/max checks on `names` as tests of the column's bounds: `min(col) < min` may fail."""
    out: dict[int, str] = {}
    for n, p in enumerate(plan_.checks):
        col, kind = p.column, p.result.check
        if p.predicate is None or col is None or col.name not in names or kind not in ("min", "max"):
            continue
        bound = Column(col.name, col.actual, col.spec, f"{kind}({col.value})")
        test = _predicate(kind, p.result.params[kind], bound, {})
        if test:
            out[n] = test
    return out


# ------------------------------------------------------------------------------------ running
def jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (bytes, bytearray)):
        return value[:32].hex()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def cell(value: Any) -> Any:
    value = jsonable(value)
    if isinstance(value, str):
        text = display(value)
        return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
    return value


def run_plan(
    con: duckdb.DuckDBPyConnection,
    rel: str,
    plan_: Plan,
    spec: DatasetSpec,
    histograms: set[str] | None,
    *,
    profile: bool = True,
    columnar: bool = False,
) -> tuple[int, dict[str, Any], list[CheckResult]]:
    """The aggregate pass, then targeted queries for the checks that failed.

    Every aggregate is computed once (a unique column that is also the primary key shares
    its exact distinct count). In Parquet, counts, minima and maxima come from the file's
    statistics where it has them, and null and range checks they prove are settled without
    a scan; the exact distinct counts and the histograms (value counts, quantile sketches)
    run as narrow queries of their own: each reads only its columns, while inside the wide
    query either slows every other aggregate of it (measured 2-3x). A text file is parsed
    once: an integer key's exact distinct count is a bitmap in the same pass, over a window
    guessed from its first row (`key_windows`); only a key with values outside the window is
    counted after the pass, over its range (`exact_distincts`). Without `profile` only what
    the checks need is computed (the version's profile is stored)."""
    import duckdb

    known, settled, answered = statistics_pass(con, rel, plan_, profile) if columnar else ({}, {}, set())
    aggs: dict[str, str] = {"count(*)": "rows"}  # expression -> key, each computed once
    distincts: dict[str, str] = {}

    def key(expr: str) -> str:
        return aggs.setdefault(expr, f"a{len(aggs)}")

    check_keys: dict[int, tuple[str, str | None]] = {}
    for n, p in enumerate(plan_.checks):
        if n in settled:
            continue
        if p.predicate:
            check_keys[n] = (key(f"count_if({p.predicate})"), None)
        elif p.aggregate:
            d = distincts.setdefault(p.distinct, f"d{len(distincts)}") if p.distinct else None
            check_keys[n] = (key(p.aggregate), d)
    sketches: dict[str, str] = {}  # value counts and quantile sketches
    wanted = profile_aggregates(plan_, histograms, distincts, one_pass=not columnar) if profile else []
    for pkey, expr in wanted:
        if expr in distincts or expr in answered:
            continue
        (sketches if pkey.endswith(("_h", "_q")) else aggs).setdefault(expr, pkey)
    # integer keys: counted after the pass, once their range is known (statistics, or the pass)
    integer_keys = {f"count(DISTINCT {c.value})": c.value for c in plan_.columns.values() if c.value_type in BITMAP_SQL}
    later = {
        e: k
        for e, k in distincts.items()
        if e in integer_keys and (not columnar or f"min({integer_keys[e]})" in answered)
    }
    for expr in later if not columnar else ():
        key(f"min({integer_keys[expr]})")
        key(f"max({integer_keys[expr]})")
    # a text file: the keys' bitmaps in the one pass, over a window around the first row's value
    windows = {} if columnar else key_windows(con, rel, {e: integer_keys[e] for e in later}, plan_)
    in_pass = {e: (key(bitmap), key(outside)) for e, (bitmap, outside) in windows.items()}
    wide = [(k, e) for e, k in aggs.items()]
    narrow = [[(k, e) for e, k in d.items() if e not in later] for d in (distincts, sketches)]
    # Parquet: exact distincts and sketches each in a narrow query of their own columns (inside
    # the wide query they slow every other aggregate: 19M rows, profile 11.7 s -> 2.9 s CPU)
    values = _aggregate(con, rel, [wide, *narrow] if columnar else [wide + narrow[0] + narrow[1]])
    bounds = {**known, **{e: values[k] for e, k in aggs.items()}}
    for expr, (bitmap_key, outside_key) in in_pass.items():
        if not values[outside_key]:  # every value inside the window: the bitmap counted them all
            values[later.pop(expr)] = int(values[bitmap_key] or 0)
    values.update(exact_distincts(con, rel, {k: (integer_keys[e], bounds) for e, k in later.items()}))
    computed = {**aggs, **sketches, **distincts}
    for pkey, expr in wanted:
        values[pkey] = known[expr] if expr in answered else values[computed[expr]]
    for n, (agg_key, d_key) in check_keys.items():
        values[f"c{n}"] = int(values[agg_key] or 0) - (int(values[d_key] or 0) if d_key else 0)
    for n, failures in settled.items():
        values[f"c{n}"] = failures
    rows = int(values["rows"])
    results = []
    for n, p in enumerate(plan_.checks):
        r = p.result
        r.rows = rows
        if r.check == "row_count":
            lo, hi = (
                spec.row_count.get("min") if spec.row_count else None,
                spec.row_count.get("max") if spec.row_count else None,
            )
            bad = (lo is not None and rows < lo) or (hi is not None and rows > hi)
            if bad:
                r.status, r.failures = _verdict(p.tolerance), 1
                r.message = f"{rows:,} rows, expected " + (
                    f"at least {lo:,}" if lo is not None and rows < lo else f"at most {hi:,}"
                )
                r.hint = HINTS["row_count"]
            results.append(r)
            continue
        if r.check == "columns":
            results.append(r)
            continue
        if p.sql is not None:
            counted = f"SELECT count(*) FROM ({p.sql}) AS failing"
            what = f"mlci.yaml: datasets.{spec.name}.checks {p.result.params['name']}"
            one_select(con, counted, what)
            try:
                with time_limit(con, what):
                    count = con.execute(counted).fetchone()
            except duckdb.Error as exc:
                raise ConfigError(
                    f"mlci.yaml: datasets.{spec.name}.checks {p.result.params['name']}: {clean_error(exc)}"
                ) from None
            r.failures = int(count[0]) if count else 0
        else:
            r.failures = int(values.get(f"c{n}") or 0)
        if r.failures and not p.tolerance.allows(r.failures, rows):
            r.status = _verdict(p.tolerance)
            r.hint = HINTS.get(r.check, "")
            _explain(con, rel, p, spec, plan_)
        elif r.failures:
            r.message = f"{r.failures:,} failing row(s) within tolerance"
        results.append(r)
    return rows, values, results


def exact_distincts(
    con: duckdb.DuckDBPyConnection, rel: str, keys: dict[str, tuple[str, dict[str, Any]]]
) -> dict[str, int]:
    """Exact distinct counts of integer columns whose minimum and maximum are known, by key.

    A bitmap over the range (`bitstring_agg`, one bit per possible value) counts exactly, ~10x
    faster than `count(DISTINCT)`'s hash table (10M keys: 0.16 s vs 1.5 s); beyond
    BITMAP_BITS per thread, or if DuckDB refuses the bitmap, it is `count(DISTINCT)`."""
    import duckdb

    exprs: list[tuple[str, str]] = []
    out: dict[str, int] = {}
    for k, (v, bounds) in keys.items():
        lo, hi = bounds.get(f"min({v})"), bounds.get(f"max({v})")
        if lo is None or hi is None:
            out[k] = 0  # no value at all
        elif int(hi) - int(lo) < BITMAP_BITS // THREADS:
            exprs.append((k, f"bit_count(bitstring_agg({v}, {int(lo)}, {int(hi)}))"))
        else:
            exprs.append((k, f"count(DISTINCT {v})"))
    try:
        counts = _aggregate(con, rel, [exprs])
    except duckdb.Error:
        counts = _aggregate(con, rel, [[(k, f"count(DISTINCT {keys[k][0]})") for k, _e in exprs]])
    return {**out, **{k: int(v or 0) for k, v in counts.items()}}


# the value range of each integer type a bitmap takes (bounds outside it are clamped)
INT_RANGES = {
    "TINYINT": (-(2**7), 2**7 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1),
    "INTEGER": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
    "UTINYINT": (0, 2**8 - 1),
    "USMALLINT": (0, 2**16 - 1),
    "UINTEGER": (0, 2**32 - 1),
}


def key_windows(
    con: duckdb.DuckDBPyConnection, rel: str, keys: dict[str, str], plan_: Plan
) -> dict[str, tuple[str, str]]:
    """For a text file's integer keys (`count(DISTINCT v)` -> v): a bitmap and an outside count
    to compute in the one pass, by distinct expression.

    The exact bitmap needs the key's range before the pass, which a CSV has nowhere; a second
    parse to count it after the pass cost ~20% of the validation (10M rows: 1.1 s of 6.2 s CPU),
    while `count(DISTINCT)` in the pass costs more still (x1.5: its hash table slows every other
    aggregate). So the window is guessed from the first row (one `LIMIT 1` read, ~10 ms): the
    BITMAP_BITS // THREADS values from a quarter window below it. When no value falls outside
    (sequential or shuffled ids of up to ~10^8 rows) the bitmap is the exact count; otherwise the
    pass's min and max give the second pass its range, as before (`exact_distincts`)."""
    if not keys:
        return {}
    types = {c.value: c.value_type for c in plan_.columns.values()}
    values = list(dict.fromkeys(keys.values()))
    row = con.execute(f"SELECT {', '.join(values)} FROM {rel} LIMIT 1").fetchone()
    if row is None:
        return {}
    first = dict(zip(values, row))
    width = BITMAP_BITS // THREADS
    out = {}
    for expr, v in keys.items():
        start, bounds = first[v], INT_RANGES.get(types.get(v, ""))
        if start is None or bounds is None:
            continue
        lowest, highest = bounds
        lo = max(lowest, int(start) - width // 4)
        hi = min(highest, lo + width - 1)
        inside = f"{v} BETWEEN {lo} AND {hi}"
        out[expr] = (
            f"bit_count(bitstring_agg(CASE WHEN {inside} THEN {v} END, {lo}, {hi}))",
            f"count_if(NOT ({inside}))",
        )
    return out


def _aggregate(con: duckdb.DuckDBPyConnection, rel: str, queries: list[list[tuple[str, str]]]) -> dict[str, Any]:
    """Run each list of (key, aggregate expression) as one query over `rel`; the values by key."""
    values: dict[str, Any] = {}
    for part in queries:
        if not part:
            continue
        sql = "SELECT " + ", ".join(f"{expr} AS {k}" for k, expr in part) + f" FROM {rel}"
        row = con.execute(sql).fetchone()
        assert row is not None
        values.update(zip([k for k, _ in part], row))
    return values


def _verdict(tolerance: Tolerance) -> str:
    return "fail" if tolerance.severity == "error" else "warn"


def _explain(con: duckdb.DuckDBPyConnection, rel: str, p: Planned, spec: DatasetSpec, plan_: Plan) -> None:
    """The targeted query of a failed check: most common offending values, a few sample rows."""
    r = p.result
    keys = [k for k in spec.primary_key if k in plan_.columns]
    numbered = f"(SELECT row_number() OVER () - 1 AS __mlci_row, * FROM {rel})"
    if p.sql is not None:
        sampled = f"SELECT * FROM ({p.sql}) AS failing LIMIT {SAMPLE_ROWS}"
        what = f"mlci.yaml: datasets.{spec.name}.checks {r.params['name']}"
        one_select(con, sampled, what)
        with time_limit(con, what):
            rows = con.execute(sampled)
            names = [d[0] for d in rows.description or []]
            r.samples = [{"row": None, "values": {n: cell(v) for n, v in zip(names, t)}} for t in rows.fetchall()]
        return
    predicate = p.predicate
    shown = list(dict.fromkeys(keys + ([p.column.name] if p.column else [])))
    if r.check == "unique" and p.column:
        v = p.column.value
        predicate = f"({v} IN (SELECT {v} FROM {rel} WHERE {v} IS NOT NULL GROUP BY 1 HAVING count(*) > 1))"
    elif r.check == "primary_key":
        ks = [plan_.columns[k].value for k in spec.primary_key]
        tup = ks[0] if len(ks) == 1 else f"({', '.join(ks)})"
        nulls = " OR ".join(f"{k} IS NULL" for k in ks)
        predicate = f"({nulls} OR {tup} IN (SELECT {tup} FROM {rel} GROUP BY 1 HAVING count(*) > 1))"
        shown = list(spec.primary_key)
    if predicate is None:
        return
    if p.column is not None:
        raw = q(p.column.name)
        top = con.execute(
            f"SELECT {raw} AS v, count(*) AS n FROM {rel} WHERE {predicate} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_VALUES}"
        ).fetchall()
        r.top_values = [[cell(v), int(c)] for v, c in top]
    cols = ", ".join(q(c) for c in shown) or "*"
    sample = con.execute(f"SELECT __mlci_row, {cols} FROM {numbered} WHERE {predicate} LIMIT {SAMPLE_ROWS}")
    names = [d[0] for d in sample.description or []][1:]
    r.samples = [{"row": int(t[0]), "values": {n: cell(v) for n, v in zip(names, t[1:])}} for t in sample.fetchall()]


def _value_counts(col: Column, values: dict[str, Any], i: int) -> dict[Any, Any] | None:
    """A column's value counts: `histogram()`'s map, or one count per allowed value."""
    if values.get(f"p{i}_h"):
        return dict(values[f"p{i}_h"])
    allowed = allowed_strings(col)
    if allowed and f"p{i}_v0" in values:
        return {x: values[f"p{i}_v{j}"] or 0 for j, x in enumerate(allowed)}
    return None


def build_profile(plan_: Plan, values: dict[str, Any], rows: int, total_columns: int) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for i, col in enumerate(plan_.profile_columns):
        n = values.get(f"p{i}_n")
        entry: dict[str, Any] = {"type": col.actual, "nulls": rows - int(n or 0)}
        if f"p{i}_min" in values:
            entry["min"] = jsonable(values[f"p{i}_min"])
            entry["max"] = jsonable(values[f"p{i}_max"])
            entry["distinct"] = int(values[f"p{i}_d"] or 0)
        if f"p{i}_mean" in values:
            entry["mean"] = jsonable(values[f"p{i}_mean"])
            entry["std"] = jsonable(values[f"p{i}_std"])
            quantiles = values.get(f"p{i}_q")
            if quantiles:
                entry["histogram"] = {
                    "kind": "quantiles",
                    "levels": QUANTILE_LEVELS,
                    "edges": [jsonable(x) for x in quantiles],
                }
        counted = _value_counts(col, values, i)
        if counted:
            counts = sorted(((str(k), int(c)) for k, c in counted.items() if c), key=lambda kv: (-kv[1], kv[0]))
            listed = sum(c for _, c in counts)
            entry["histogram"] = {
                "kind": "categories",
                "values": dict(counts[:CATEGORIES]),
                "other": sum(c for _, c in counts[CATEGORIES:]) + max(0, int(n or 0) - listed),
            }
        columns[col.name] = entry
    return {"rows": rows, "columns": columns, "columns_total": total_columns}
