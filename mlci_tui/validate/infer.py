"""`mlci data infer`: a starter `datasets:` entry from the data itself.

Every string literal is written double-quoted, so YAML 1.1 cannot turn `NO` into false
when the config is read back.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from mlci_tui.errors import EXIT_FAILED, ConfigError, InputError
from mlci_tui.gitio import Repo
from mlci_tui.validate import engine, source
from mlci_tui.validate.run import precheck_content, read_format
from mlci_tui.validate.spec import FORMATS, MAX_COLUMN_NAME, DatasetSpec
from mlci_tui.validate.spec import is_ident as spec_ident

TYPE_NAMES = {
    "TINYINT": "int8",
    "SMALLINT": "int16",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "UTINYINT": "uint8",
    "USMALLINT": "uint16",
    "UINTEGER": "uint32",
    "UBIGINT": "uint64",
    "FLOAT": "float32",
    "DOUBLE": "float64",
    "VARCHAR": "string",
    "BOOLEAN": "bool",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
}
MAX_ALLOWED = 12
SNIFFED_DELIMITERS = ",\t;| "


def _y(value: Any) -> str:
    """A YAML scalar: strings always quoted (JSON strings are valid YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _key(name: str) -> str:
    return name if name.replace("_", "").isalnum() and not name[0].isdigit() else json.dumps(name)


def sniff_csv_options(local: Path, fmt: str) -> dict[str, Any]:
    """The delimiter and header of delimited text nobody described yet.

    Python's sniffer picks the delimiter among `, tab ; |` and space (DuckDB's sniffer never
    tries a space, numpy's `savetxt` default); DuckDB's sniffer, told that delimiter, says
    whether the first row is a header. Line ends (LF, CRLF) need no option: the reader
    takes either. Only what differs from the format's defaults is returned."""
    with open(local, "rb") as fh:
        sample = fh.read(65536).decode("utf-8", "replace")
    sample = sample[: sample.rfind("\n") + 1] or sample
    default = "\t" if fmt == "tsv" else ","
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=SNIFFED_DELIMITERS).delimiter
    except csv.Error:
        delimiter = default
    con = duckdb.connect()
    try:
        row = con.execute("SELECT HasHeader FROM sniff_csv(?, delim = ?)", [str(local), delimiter]).fetchone()
    except duckdb.Error:
        row = None
    finally:
        con.close()
    opts: dict[str, Any] = {}
    if delimiter != default:
        opts["delimiter"] = delimiter
    if row is not None and row[0] is False:
        opts["header"] = False
    return opts


def _check_names(path: str, cols: list[tuple[str, str]], csv_opts: dict[str, Any]) -> None:
    """A name mlci would refuse in its own config, refused here with the real reason."""
    for i, (col, _t) in enumerate(cols, 1):
        if len(col) > MAX_COLUMN_NAME:
            hint = "" if csv_opts.get("header") is False else "; is the first row data? (csv: {header: false})"
            raise InputError(
                f"{path}: column {i}'s name is {len(col):,} characters; column names are limited to "
                f"{MAX_COLUMN_NAME}{hint}"
            )
        if not spec_ident(col):
            raise InputError(f"{path}: column {i}'s name {col[:40]!r} holds a quote or a control character")


def infer_schema(repo: Repo, spec: DatasetSpec, name: str, *, sniff: bool = True) -> str:
    """The `datasets:` entry for the data at `spec.path`; `sniff`: the entry has no `csv:` block
    (delimiter and header are sniffed, and written into the entry)."""
    scratch = repo.state_dir / "validate" / "infer"
    content = source.resolve(repo, spec.path, source.WORKTREE, scratch, spec.format or None)
    try:
        fmt = read_format(spec, content)
        csv_opts = dict(spec.csv)
        sniffed: dict[str, Any] = {}
        if fmt in ("csv", "tsv") and sniff and content.files is None:
            sniffed = sniff_csv_options(content.local, fmt)
            csv_opts.update(sniffed)
        precheck_content(content, fmt, csv_opts)
        con = engine.connect(scratch / "spill")
        try:
            rel = engine.relation_sql(content.read, fmt, csv_opts)
            cols = engine.describe(con, rel)
            _check_names(spec.path, cols, csv_opts)
            aggs = ["count(*)"]
            for col, _t in cols:
                c = engine.q(col)
                aggs += [f"count({c})", f"approx_count_distinct({c})"]
            row = con.execute(f"SELECT {', '.join(aggs)} FROM {rel}").fetchone()
            assert row is not None
            total = int(row[0])
            lines = [f"{_key(name)}:", f"  path: {_y(spec.path)}"]
            if spec.format and spec.format != format_of(spec.path):
                lines.append(f"  format: {_y(spec.format)}")
            if sniffed:
                lines.append("  csv: {" + ", ".join(f"{k}: {_y(v)}" for k, v in sniffed.items()) + "}")
            lines += ["  row_count: {min: 1}", "  columns:"]
            for i, (col, ctype) in enumerate(cols):
                nonnull, distinct = int(row[1 + 2 * i]), int(row[2 + 2 * i])
                parts = []
                tname = TYPE_NAMES.get(ctype)
                if tname:
                    parts.append(f"type: {tname}")
                parts.append(f"nullable: {'false' if nonnull == total and total else 'true'}")
                if tname == "string" and 0 < distinct <= MAX_ALLOWED:
                    values = [
                        v
                        for (v,) in con.execute(
                            f"SELECT DISTINCT {engine.q(col)} FROM {rel} WHERE {engine.q(col)} IS NOT NULL ORDER BY 1 LIMIT {MAX_ALLOWED + 1}"
                        ).fetchall()
                    ]
                    if len(values) <= MAX_ALLOWED:
                        parts.append("allowed_values: [" + ", ".join(_y(v) for v in values) + "]")
                elif tname and tname.startswith(("int", "uint")) and distinct == nonnull == total and total > 1:
                    parts.append("unique: true")
                lines.append(f"    {_key(col)}: {{{', '.join(parts)}}}")
        finally:
            con.close()
    except engine.DataError as exc:
        raise InputError(f"cannot read {spec.path} as {spec.format}: {exc}", exit_code=EXIT_FAILED) from None
    except duckdb.Error as exc:
        raise InputError(
            f"cannot read {spec.path} as {spec.format}: {engine.clean_error(exc)}", exit_code=EXIT_FAILED
        ) from None
    finally:
        source.clean_scratch(scratch)
    return "\n".join(lines) + "\n"


def format_of(path: str) -> str | None:
    """The format the extension names (None: none), as a bare path reads it."""
    return FORMATS.get(Path(path).suffix.lower())


def write_into_config(root: Path, name: str, entry: str, *, replace: bool = False) -> None:
    """Add the entry under `datasets:` in mlci.yaml (or, with `replace`, put it in place of the
    existing one), keeping comments (ruamel round trip)."""
    from ruamel.yaml import YAML

    path = root / "mlci.yaml"
    yaml = YAML()
    yaml.preserve_quotes = True
    doc = yaml.load(path.read_text()) if path.exists() else None
    if doc is None:
        doc = {}
    datasets = doc.get("datasets")
    if datasets is None:
        doc["datasets"] = datasets = {}
    if name in datasets and not replace:
        raise ConfigError(f"mlci.yaml: datasets.{name} exists already; pick another --name, or --replace it")
    datasets[name] = yaml.load(entry)[name]
    buf = io.StringIO()
    yaml.dump(doc, buf)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".mlci.yaml.")
    with os.fdopen(fd, "w") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)
