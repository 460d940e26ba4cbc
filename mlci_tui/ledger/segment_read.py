"""A segment's records as their canonical bodies: the one place that turns a Parquet segment's
rows back into the bytes an event file holds (a union, a rewrite check, `redact`, compaction and
verification compare or hash them).

A segment written in the residual layout (its footer's `LAYOUT_KEY` says `RESIDUAL`) stores a
run's body as a **residual**: the canonical JSON of the record less the keys its typed columns
give back exactly (`restored`), without the newline a full body keeps. `rebuild` puts those keys
back and gives the body byte for byte; compaction stores a residual only where that holds
(`residual`), so the format is exact by construction. Any other row, and every row of an older
segment, holds its full body with its newline.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from mlci_tui.ledger import records
from mlci_tui.numbers import NAN, NEG_INF, POS_INF

LAYOUT_KEY = b"mlci.bodies"  # Parquet footer metadata: how the body column holds a run's body
RESIDUAL = b"residual"  # a run row's body without its newline is a residual (`rebuild`)


def _text_keys() -> tuple[list[str], list[str]]:
    """The run keys a residual leaves out that a column of their name gives back as it is (the
    run's text fields: cache.RUN_COLUMNS, less `run_id`, restored on its own, and the fields
    the cache keeps as JSON text), and those given back as times in the form mlci writes them."""
    from mlci_tui.ledger.cache import RUN_COLUMNS

    json_text = ("run_id", "datasets", "deps", "warnings")
    texts = ["id", "type", *(n for n, t in RUN_COLUMNS if t == "VARCHAR" and n not in json_text)]
    return texts, [n for n, t in RUN_COLUMNS if t == "TIMESTAMP"]


def rebuild_columns() -> list[str]:
    """The columns `rebuild` reads: a segment's `body` and what gives the left-out keys back
    (`restored`: the text and time fields, `v`, `run_id`, `steps`, the maps of a run of one file)."""
    texts, times = _text_keys()
    return [*texts, "body", "v", "run_id", *times, "steps", "param_map", "param_file", "metric_map", "metric_file"]


def _one_shot(encoder: json.JSONEncoder) -> Any:
    """`encoder.encode` for a parsed JSON value, with the C encoder made once (as
    `JSONEncoder.iterencode` makes it, without the circular check: a parse has no cycles)
    instead of at every call."""
    from json import encoder as std

    c_make_encoder = getattr(std, "c_make_encoder", None)  # None without the C accelerator
    if c_make_encoder is None:
        return encoder.encode
    make = c_make_encoder(
        None,
        encoder.default,
        std.encode_basestring_ascii if encoder.ensure_ascii else std.encode_basestring,
        encoder.indent,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    return lambda value: "".join(make(value, 0))


# records.dumps without its float walk, for parsed JSON (the `{"$float": ...}` wrappers kept as
# objects): the canonical form `ledger/verify.py` holds every record to
canonical = _one_shot(json.JSONEncoder(**records.JSON_OPTIONS))
_canonical = canonical
_WRAPPED = {POS_INF: {records.FLOAT_KEY: POS_INF}, NEG_INF: {records.FLOAT_KEY: NEG_INF}}


def is_residual_layout(schema: Any) -> bool:
    """Whether a segment's Arrow schema (from its footer) is of the residual layout."""
    return (schema.metadata or {}).get(LAYOUT_KEY) == RESIDUAL


def restored(table: Any) -> list[dict[str, Any] | None]:
    """Per row of a typed segment table: the keys a run's typed columns give back, with the JSON
    value each gives (None for a row that is not a run). A NULL column gives nothing back."""
    types = table.column("type").to_pylist()
    runs = [n for n, kind in enumerate(types) if kind == "run"]
    out: list[dict[str, Any] | None] = [None] * len(types)
    if not runs:
        return out
    columns = _given_back(table if len(runs) == len(types) else table.take(runs))
    dense = [k for k, values in columns.items() if None not in values]  # a dict of them at once
    sparse = [k for k in columns if k not in dense]
    for n, row in zip(runs, zip(*[columns[k] for k in dense])):
        out[n] = dict(zip(dense, row))
    if sparse:
        for n, row in zip(runs, zip(*[columns[k] for k in sparse])):
            out[n].update((k, v) for k, v in zip(sparse, row) if v is not None)  # type: ignore[union-attr]
    return out


def _given_back(runs: Any) -> dict[str, list[Any]]:
    """Key -> the JSON value each run of `runs` (a table of runs only) gets back from its columns
    (None: nothing; a column of NULLs is left out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = runs.num_rows
    texts, times = _text_keys()
    columns: dict[str, list[Any]] = {}
    for key in texts:
        if runs.column(key).null_count < n:
            columns[key] = runs.column(key).to_pylist()
    for key in times:  # as records.now_iso writes a time: `2025-03-03T10:00:00.123456Z`
        if runs.column(key).null_count < n:
            text = pc.replace_substring(runs.column(key).cast(pa.string()), " ", "T")
            columns[key] = pc.binary_join_element_wise(text, "Z", "").to_pylist()
    # a run's run_id is stored NULL where it is its id (cache.SEGMENT_STORED)
    columns["run_id"] = [r if r is not None else i for r, i in zip(runs.column("run_id").to_pylist(), columns["id"])]
    columns["v"] = runs.column("v").to_pylist()
    columns["params"] = _files(runs, "param_map", "param_file", _param_values)
    columns["metrics"] = _files(runs, "metric_map", "metric_file", _float_values)
    if runs.column("steps").null_count < n:
        columns["steps"] = [
            None if s is None else [[x["file"], x["name"], x["step"], _float_json(x["value"])] for x in s]
            for s in runs.column("steps").to_pylist()
        ]
    return columns


def _files(table: Any, map_name: str, file_name: str, values: Any) -> list[dict[str, Any] | None]:
    """`{file: {name: value}}` for a run whose values come from one file (its map holds them
    all, under their plain names: cache.FILE_OF), else None. The map's keys and values are
    converted flat, once (a map's own conversion makes a tuple per entry: 2x slower)."""
    files = table.column(file_name).to_pylist()
    out: list[dict[str, Any] | None] = [None] * len(files)
    if not any(f is not None for f in files):
        return out
    maps = table.column(map_name).combine_chunks()
    offsets, names, items = maps.offsets.to_pylist(), maps.keys.to_pylist(), maps.items.to_pylist()
    for row, file in enumerate(files):
        if file is not None:
            start, end = offsets[row], offsets[row + 1]
            given = values(names[start:end], items[start:end])
            if given is not None:
                out[row] = {file: given}
    return out


def _float_json(value: float | None) -> Any:
    """A DOUBLE as the record writes it: a finite float, else the `{"$float": ...}` wrapper."""
    if value is None or math.isfinite(value):
        return value
    return {records.FLOAT_KEY: NAN} if math.isnan(value) else _WRAPPED[POS_INF if value > 0 else NEG_INF]


def _float_values(names: list[str], values: list[float | None]) -> dict[str, Any]:
    try:
        if math.isfinite(sum(values)):  # type: ignore[arg-type] # no NaN, infinity or NULL: as they are
            return dict(zip(names, values))
    except TypeError:  # a NULL: a value that is no number (the body keeps it)
        pass
    return {k: _float_json(v) for k, v in zip(names, values)}


_WORDS = {"true": True, "false": False, "null": None}


def _param_value(text: str) -> Any:
    """A param's text (cache._param_text) back to its JSON value: a number for a text that reads
    as one (where `param_file` is set, such a text came from a JSON number: FILE_OF), true, false
    or null, an object or array whose canonical JSON it is, else the text as a string. Where that
    guess is wrong, the rebuilt body differs and compaction keeps the key. Numbers are read
    without `json.loads` (a call per value cost more than the rest of a rebuild)."""
    first = text[:1]
    if first and first in "-0123456789":
        if text.isdigit() or (first == "-" and text[1:].isdigit()):
            return int(text)
        try:
            number = float(text)  # DuckDB's spelling of the double: 0.00001 for 1e-05
        except ValueError:
            return text
        return number if math.isfinite(number) else text  # "-inf": a string (a NaN param is {"$float": ...})
    if text in _WORDS:
        return _WORDS[text]
    if first in ("{", "["):
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            return text
        return value if _canonical(value) == text else text
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON: such a text was a string


def _param_values(names: list[str], texts: list[str | None]) -> dict[str, Any] | None:
    if None in texts:
        return None  # no text to read back: the body keeps its params
    return dict(zip(names, map(_param_value, texts)))  # type: ignore[arg-type]


def rebuild(stored: str, restore: dict[str, Any] | None) -> str | None:
    """A row's canonical body (with its newline) from what its body column holds and what its
    typed columns give back (`restored`). A full body (with its newline) is returned as it is.
    None when the stored text is not what compaction writes (one body, one stored form): a
    residual that is not canonical JSON of an object, or that holds a key its columns give back
    with the same value; a run's body stored whole where a residual gives it back."""
    return rebuild_parsed(stored, restore)[0]


def rebuild_parsed(stored: str, restore: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """`rebuild`, and the record a residual was parsed and rebuilt into (what parsing the body
    gives: a checker need not parse it again); None for a body stored whole or refused."""
    if restore is None:
        return stored, None
    if stored.endswith("\n"):
        return (stored if residual(stored, restore) == stored else None), None
    try:
        record = json.loads(stored)
        if type(record) is not dict or _canonical(record) != stored:
            return None, None
    except (ValueError, RecursionError):  # not JSON; NaN as a bare literal (never canonical)
        return None, None
    body = _put_back(record, restore)
    return body, None if body is None else record


def _put_back(record: dict[str, Any], restore: dict[str, Any]) -> str | None:
    """The body of a parsed residual: each key its columns give back put in (None: the residual
    holds one with the value the column gives, which compaction never stores)."""
    if record.keys().isdisjoint(restore):  # the common case: one update
        record.update(restore)
        return _canonical(record) + "\n"
    for key, value in restore.items():
        if key not in record:
            record[key] = value
        elif _canonical(record[key]) == _canonical(value):
            return None
    return _canonical(record) + "\n"


def residual(body: str, restore: dict[str, Any] | None) -> str:
    """What the segment stores for a body (with its newline): its residual where `rebuild` gives
    the body back byte for byte (the keys whose column says something else kept in it), else the
    body itself."""
    if restore is None:
        return body
    try:
        record = json.loads(body)
        if type(record) is not dict:
            return body
        kept = {k: v for k, v in record.items() if k not in restore}
        stored = _canonical(kept)
        if _put_back(kept, restore) == body:
            return stored
        kept = {k: v for k, v in record.items() if k not in restore or _canonical(v) != _canonical(restore[k])}
        stored = _canonical(kept)
    except (ValueError, RecursionError):  # not JSON, or NaN as a bare literal: not canonical
        return body
    return stored if rebuild(stored, restore) == body else body


def table_bodies(table: Any) -> list[str | None]:
    """Every row's body (with its newline), from a segment table read with `rebuild_columns()`
    where its layout is residual; a row whose stored text `rebuild` refuses gives None."""
    return table_rebuilt(table)[0]


def table_rebuilt(table: Any) -> tuple[list[str | None], list[dict[str, Any] | None]]:
    """`table_bodies`, and per row the record its residual was rebuilt into (`rebuild_parsed`)."""
    stored = table.column("body").to_pylist()
    if not is_residual_layout(table.schema):
        return [b if b is None or b.endswith("\n") else b + "\n" for b in stored], [None] * len(stored)
    made = [(None, None) if s is None else rebuild_parsed(s, r) for s, r in zip(stored, restored(table))]
    return [body for body, _r in made], [record for _b, record in made]


def read_bodies(source: Any) -> tuple[list[Any], list[Any], list[str | None]]:
    """A segment's ids, types and bodies (`table_bodies`), from a path or a file object."""
    table = read_table(source)
    return table.column("id").to_pylist(), table.column("type").to_pylist(), table_bodies(table)


def read_table(source: Any) -> Any:
    """The columns of a segment that its bodies are made of: id, type and body, and in the
    residual layout the typed columns `rebuild` reads."""
    import pyarrow.parquet as pq

    footer = pq.ParquetFile(source)
    columns = rebuild_columns() if is_residual_layout(footer.schema_arrow) else ["id", "type", "body"]
    return footer.read(columns=columns)


def redaction_targets(source: Any) -> set[str]:
    """The targets of a segment's tombstones (`redact` rows), from a path or a file object: only
    the type and body columns are read (a record that is not a run keeps its whole body in every
    layout: no rebuild), on one thread (Arrow's pool can abort the process at exit once started:
    apache/arrow#34314)."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(source).read(columns=["type", "body"], use_threads=False)
    rows = zip(table.column("type").to_pylist(), table.column("body").to_pylist())
    return {t for rtype, body in rows if rtype == "redact" and body for t in [records.redaction_target(body)] if t}


def segment_bodies(segments: Iterable[bytes], ids: set[str] | None) -> dict[str, bytes]:
    """Record id -> canonical body (with its newline) from Parquet segments, for `ids` (None: all)."""
    found: dict[str, bytes] = {}
    for data in segments:
        if not data:
            continue
        try:
            rids, _types, bodies = read_bodies(io.BytesIO(data))
        except Exception:  # an unreadable segment: fsck names it; the cache skips it
            continue
        for rid, body in zip(rids, bodies):
            if isinstance(rid, str) and isinstance(body, str) and (ids is None or rid in ids):
                found.setdefault(rid, body.encode())
    return found


def segment_records(data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
    if not data:
        return
    _ids, _types, bodies = read_bodies(io.BytesIO(data))
    for body in bodies:
        if body is None:
            continue
        try:
            yield records.loads(body), body.encode()
        except ValueError:
            continue
