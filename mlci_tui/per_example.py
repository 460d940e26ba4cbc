"""Per-example evaluation results (`gate.per_example`), read at two commits and paired by key.

Each side's file is read where the run's commit holds it (a git blob, or the data a pointer
names: `validate/source.py`), in an in-memory DuckDB connection that joins the two on the key,
so 100,000 examples never pass through Python objects. The paired gate needs the same keys on
both sides: a mismatch is an input error naming the keys, never a silent inner join.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import CheckFailed, InputError, first_line
from mlci_tui.gitio import Repo

if TYPE_CHECKING:
    import duckdb

SHOWN_KEYS = 10  # missing keys named in an error
_READERS = {".parquet": "read_parquet", ".pq": "read_parquet", ".csv": "read_csv", ".tsv": "read_csv"}
_READERS |= {".jsonl": "read_json", ".ndjson": "read_json", ".json": "read_json"}


@dataclass
class Paired:
    """Scores of the same examples on both sides, aligned by key."""

    base: Any  # numpy arrays of float
    head: Any
    binary: bool  # every score is 0 or 1: McNemar's test applies


class Missing(Exception):
    """A side has no per-example file (or its data is not here): the gate falls back, with this reason."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reader(path: str) -> str:
    found = _READERS.get(Path(path).suffix.lower())
    if found is None:
        raise InputError(f"gate.per_example.path: {path}: expected a .parquet, .csv, .tsv or .jsonl file")
    return found


def _score_sql(spec: dict[str, Any]) -> str:
    if spec["score"]:
        return f"CAST({_ident(spec['score'])} AS DOUBLE)"
    label, prediction = _ident(spec["label"]), _ident(spec["prediction"])
    return f"CAST(coalesce({label} = {prediction}, false) AS DOUBLE)"


def _local(repo: Repo, path: str, commit: str | None, side: str, scratch: Path) -> Path:
    from mlci_tui.validate.source import resolve

    if not commit:
        raise Missing(f"the {side} run has no commit to read {path} from")
    try:
        content = resolve(repo, path, commit, scratch)
    except CheckFailed as exc:  # Absent, or a pointer whose data is not in the cache
        raise Missing(f"{side} {commit[:8]}: {first_line(exc)}") from None
    if content.is_folder:
        raise InputError(f"gate.per_example.path: {path} is a folder at {commit[:8]}; name one file")
    return content.local


def read_paired(repo: Repo, spec: dict[str, Any], base_commit: str | None, head_commit: str | None) -> Paired:
    """Both sides' scores by key. Raises `Missing` when a side has no file, InputError on a bad file or
    on keys that differ (naming up to SHOWN_KEYS of them)."""
    import duckdb

    path = spec["path"]
    reader = _reader(path)
    with tempfile.TemporaryDirectory(prefix="mlci-examples-") as scratch:
        base_file = _local(repo, path, base_commit, "baseline", Path(scratch))
        head_file = _local(repo, path, head_commit, "candidate", Path(scratch))
        con = duckdb.connect()
        try:
            for side, file in (("base", base_file), ("head", head_file)):
                _load(con, side, reader, file, spec, path)
            _same_keys(con, path, spec["key"])
            arrays = con.execute(
                "SELECT b.score AS base, h.score AS head FROM base b JOIN head h USING (k) ORDER BY k"
            ).fetchnumpy()
            binary = con.execute(
                "SELECT bool_and(b.score IN (0, 1) AND h.score IN (0, 1)) FROM base b JOIN head h USING (k)"
            ).fetchall()[0][0]
        finally:
            con.close()
    return Paired(arrays["base"], arrays["head"], bool(binary))


def _load(con: duckdb.DuckDBPyConnection, side: str, reader: str, file: Path, spec: dict[str, Any], path: str) -> None:
    import duckdb

    key = _ident(spec["key"])
    try:
        con.execute(
            f"CREATE TABLE {side} AS SELECT CAST({key} AS VARCHAR) AS k, {_score_sql(spec)} AS score FROM {reader}(?)",
            [str(file)],
        )
        dup = con.execute(f"SELECT k, count(*) FROM {side} GROUP BY k HAVING count(*) > 1 LIMIT 1").fetchall()
        nulls = con.execute(f"SELECT count(*) FROM {side} WHERE k IS NULL OR score IS NULL").fetchall()[0][0]
    except duckdb.Error as exc:
        raise InputError(f"gate.per_example: {path} ({_side_name(side)}): {first_line(exc)}") from None
    if dup:
        raise InputError(f"gate.per_example: {path} ({_side_name(side)}): key {dup[0][0]!r} appears {dup[0][1]} times")
    if nulls:
        raise InputError(f"gate.per_example: {path} ({_side_name(side)}): {nulls} rows with no key or no score")


def _side_name(side: str) -> str:
    return "baseline" if side == "base" else "candidate"


def _same_keys(con: duckdb.DuckDBPyConnection, path: str, key: str) -> None:
    problems = []
    for have, lack in (("base", "head"), ("head", "base")):
        rows = con.execute(
            f"SELECT k, count(*) OVER () FROM {have} ANTI JOIN {lack} USING (k) ORDER BY k LIMIT {SHOWN_KEYS}"
        ).fetchall()
        if rows:
            names = ", ".join(str(r[0]) for r in rows)
            more = f" ({rows[0][1]} in all)" if rows[0][1] > len(rows) else ""
            problems.append(f"{key} missing from the {_side_name(lack)}: {names}{more}")
    if problems:
        raise InputError(f"gate.per_example: {path}: the two sides hold different examples; " + "; ".join(problems))
