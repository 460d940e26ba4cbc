"""Row and column diff of two versions of a dataset (`mlci data diff`, the PR report, the TUI).

DuckDB joins the two versions: with a key (the schema's `primary_key` or `--key`), one full
outer join writes the rows that differ (added, removed, changed, with a flag per column) to
a temp table, and every count and example is read from that small table; without a key, each
version is grouped by a hash of the whole row and the two groupings are joined, so rows are
compared as multisets (added and removed only). Types compare by family (`family`): any
integer width is an integer, any float a float, so a CSV and a Parquet of the same data are
equal. A numeric change within the column's tolerance (|new - old| <= abs + rel * |old|) is
no change; NULL -> NULL is none either. A column removed and another added with the same
values is reported as a rename. The connection runs under validation's memory limit and
spills to the scratch folder beyond it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import InputError
from mlci_tui.sanitize import display
from mlci_tui.validate.engine import FLOAT_SQL, INT_SQL, cell, lit, q

if TYPE_CHECKING:
    import duckdb

    from mlci_tui.gitio import Repo
    from mlci_tui.validate.spec import DatasetSpec

EXAMPLES = 3  # examples per column (and of added/removed rows) unless asked for more
DUPLICATES_SHOWN = 5
RENAME_CANDIDATES = 50  # removed x added column pairs tested for a rename
WIDE_INTEGERS = {"UBIGINT", "HUGEINT", "UHUGEINT"}


@dataclass(frozen=True)
class Tolerance:
    """A numeric column's tolerance: a change only when |new - old| > abs + rel * |old|."""

    abs: float = 0.0
    rel: float = 0.0

    @property
    def zero(self) -> bool:
        return self.abs == 0 and self.rel == 0


@dataclass
class ColumnDiff:
    column: str  # its name in the new version
    changed: int
    examples: list[dict[str, Any]] = field(default_factory=list)  # {"key": {...}, "old": v, "new": v}
    old_name: str | None = None  # when renamed
    tolerance: Tolerance | None = None


@dataclass
class SchemaDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: dict[str, list[str]] = field(default_factory=dict)  # column -> [old type, new type]
    renamed: dict[str, str] = field(default_factory=dict)  # old name -> new name
    reordered: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped or self.renamed or self.reordered)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "retyped": self.retyped,
            "renamed": self.renamed,
            "reordered": self.reordered,
        }


@dataclass
class RowDiff:
    """What changed between two versions; `key` is empty when rows were compared as multisets."""

    key: list[str]
    rows_old: int
    rows_new: int
    added: int
    removed: int
    changed: int  # always 0 without a key
    unchanged: int
    schema: SchemaDiff
    columns: list[ColumnDiff]  # columns with at least one changed value, most changes first
    added_examples: list[dict[str, Any]] = field(default_factory=list)  # key values (or whole rows)
    removed_examples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    old_hash: str = ""  # the two versions' content ids (set by diff_versions)
    new_hash: str = ""

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed or self.schema.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "compared_as": "key" if self.key else "multiset",
            "rows": {"old": self.rows_old, "new": self.rows_new},
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "schema": self.schema.to_dict(),
            "columns": [
                {
                    "column": c.column,
                    "old_name": c.old_name,
                    "changed": c.changed,
                    "tolerance": None if c.tolerance is None else {"abs": c.tolerance.abs, "rel": c.tolerance.rel},
                    "examples": c.examples,
                }
                for c in self.columns
            ],
            "added_examples": self.added_examples,
            "removed_examples": self.removed_examples,
            "notes": self.notes,
        }


def family(sql_type: str) -> str:
    """The type family a column compares by: integer widths and float widths are one family each."""
    t = sql_type.upper()
    if t in INT_SQL or t in WIDE_INTEGERS:
        return "integer"
    if t in FLOAT_SQL or t.startswith("DECIMAL"):
        return "float"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    return {"VARCHAR": "string", "BOOLEAN": "bool"}.get(t, t)


def _numeric(fam: str) -> bool:
    return fam in ("integer", "float")


@dataclass(frozen=True)
class _Pair:
    """One column present in both versions: how each side is read to compare it."""

    old: str  # name in the old version
    new: str  # name in the new version
    old_type: str
    new_type: str

    @property
    def numeric(self) -> bool:
        return _numeric(family(self.old_type)) and _numeric(family(self.new_type))

    def common_type(self) -> str | None:
        """The type both sides are cast to (None: compared as they are)."""
        fo, fn = family(self.old_type), family(self.new_type)
        if fo == fn == "integer":
            wide = {self.old_type.upper(), self.new_type.upper()} & WIDE_INTEGERS
            return "HUGEINT" if wide else "BIGINT"
        if self.numeric:
            return "DOUBLE"
        if fo == fn:
            return None if self.old_type == self.new_type else self.old_type
        return "VARCHAR"

    def exprs(self, o: str = "o", n: str = "n") -> tuple[str, str]:
        a, b = f"{o}.{q(self.old)}", f"{n}.{q(self.new)}"
        t = self.common_type()
        return (a, b) if t is None else (f"CAST({a} AS {t})", f"CAST({b} AS {t})")


def _changed_sql(pair: _Pair, tol: Tolerance | None) -> str:
    """The predicate 'this column's value changed' in a joined row (o: old, n: new)."""
    a, b = pair.exprs()
    if tol is None or tol.zero or not pair.numeric:
        return f"({a} IS DISTINCT FROM {b})"
    a, b = f"CAST({a} AS DOUBLE)", f"CAST({b} AS DOUBLE)"
    within = f"abs({b} - {a}) <= {tol.abs!r} + {tol.rel!r} * abs({a})"
    return f"({a} IS DISTINCT FROM {b} AND coalesce(NOT ({within}), true))"


def describe(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE SELECT * FROM {view}").fetchall()]


def _schema(old: list[tuple[str, str]], new: list[tuple[str, str]]) -> tuple[SchemaDiff, list[_Pair]]:
    """Columns added, removed, retyped (by family) and reordered; renames found later."""
    to, tn = dict(old), dict(new)
    out = SchemaDiff(
        added=[c for c in tn if c not in to],
        removed=[c for c in to if c not in tn],
        retyped={c: [to[c], tn[c]] for c in tn if c in to and family(to[c]) != family(tn[c])},
    )
    pairs = [_Pair(c, c, to[c], tn[c]) for c in to if c in tn]
    return out, pairs


def _reordered(old: list[tuple[str, str]], new: list[tuple[str, str]], renamed: dict[str, str]) -> bool:
    shared = {renamed.get(c, c) for c, _t in old} & {c for c, _t in new}
    order_old = [renamed.get(c, c) for c, _t in old if renamed.get(c, c) in shared]
    order_new = [c for c, _t in new if c in shared]
    return order_old != order_new


def _rename_candidates(schema: SchemaDiff, old: dict[str, str], new: dict[str, str]) -> list[_Pair]:
    pairs = []
    for r in schema.removed:
        for a in schema.added:
            fo, fn = family(old[r]), family(new[a])
            if fo == fn or (_numeric(fo) and _numeric(fn)):
                pairs.append(_Pair(r, a, old[r], new[a]))
    return pairs[:RENAME_CANDIDATES]


def _take_renames(schema: SchemaDiff, equal: list[_Pair]) -> list[_Pair]:
    """Assign each removed column at most one added column with the same values, in order."""
    taken: list[_Pair] = []
    for p in equal:
        if p.old in schema.renamed or any(t.new == p.new for t in taken):
            continue
        schema.renamed[p.old] = p.new
        taken.append(p)
    schema.removed = [c for c in schema.removed if c not in schema.renamed]
    schema.added = [c for c in schema.added if c not in schema.renamed.values()]
    return taken


def diff_views(
    con: duckdb.DuckDBPyConnection,
    old: str,
    new: str,
    key: Sequence[str],
    tolerances: dict[str, Tolerance] | None = None,
    *,
    examples: int = EXAMPLES,
    output: Path | None = None,
    labels: tuple[str, str] = ("old version", "new version"),
) -> RowDiff:
    """Diff view `old` against view `new` on `con` (key columns `key`, or none: multisets).

    `tolerances` by column name (the new version's); `output`: a Parquet file to write the
    row-level diff to (one row per added or removed row, one per changed value)."""
    schema_old, schema_new = describe(con, old), describe(con, new)
    tolerances = tolerances or {}
    for label, cols in zip(labels, (schema_old, schema_new)):
        missing = [k for k in key if k not in dict(cols)]
        if missing:
            raise InputError(f"{label}: no key column {', '.join(missing)} (columns: {_names(cols)})")
    schema, pairs = _schema(schema_old, schema_new)
    candidates = _rename_candidates(schema, dict(schema_old), dict(schema_new))
    if key:
        result = _keyed(con, (old, new), labels, list(key), schema, pairs, candidates, tolerances, examples, output)
    else:
        result = _multiset(con, old, new, schema, pairs, candidates, examples, output)
    schema.reordered = _reordered(schema_old, schema_new, schema.renamed)
    return result


def _names(cols: list[tuple[str, str]]) -> str:
    names = [c for c, _t in cols]
    return ", ".join(names[:20]) + (" …" if len(names) > 20 else "")


# ------------------------------------------------------------------------------------ keyed
def _check_keys(con: duckdb.DuckDBPyConnection, view: str, key: list[str], label: str) -> int:
    """The version's row count; InputError naming key values that repeat or are missing."""
    cols = ", ".join(q(k) for k in key)
    nulls = " OR ".join(f"{q(k)} IS NULL" for k in key)
    row = con.execute(
        f"SELECT sum(n)::BIGINT, count(*) FILTER (WHERE n > 1 OR {nulls}), "
        f"min(struct_pack({cols}, n), {DUPLICATES_SHOWN}) FILTER (WHERE n > 1 OR {nulls}) "
        f"FROM (SELECT {cols}, count(*) AS n FROM {view} GROUP BY ALL)"
    ).fetchone()
    assert row is not None
    rows, bad, shown = int(row[0] or 0), int(row[1] or 0), row[2] or []
    if bad:
        items = []
        for s in shown:
            values = ", ".join(f"{k}={display(repr(cell(s[k])))}" for k in key)
            items.append(f"({values}) x{s['n']}" if all(s[k] is not None for k in key) else f"({values}) missing")
        more = f" and {bad - len(shown):,} more" if bad > len(shown) else ""
        raise InputError(
            f"{label}: key {', '.join(key)} is not unique: {'; '.join(items)}{more}"
            " (set primary_key, or --key, to columns that identify a row)"
        )
    return rows


def _keyed(
    con: duckdb.DuckDBPyConnection,
    views: tuple[str, str],
    labels: tuple[str, str],
    key: list[str],
    schema: SchemaDiff,
    pairs: list[_Pair],
    candidates: list[_Pair],
    tolerances: dict[str, Tolerance],
    examples: int,
    output: Path | None,
) -> RowDiff:
    old, new = views
    rows_old = _check_keys(con, old, key, labels[0])
    rows_new = _check_keys(con, new, key, labels[1])
    key_pairs = [p for p in pairs if p.old in key]
    on = " AND ".join(f"{a} = {b}" for a, b in (p.exprs() for p in key_pairs))
    joined = f"{old} AS o JOIN {new} AS n ON {on}"
    if candidates:
        tests = ", ".join(f"count_if({a} IS DISTINCT FROM {b})" for a, b in (p.exprs() for p in candidates))
        tested = con.execute(f"SELECT count(*), {tests} FROM {joined}").fetchone()
        assert tested is not None
        if tested[0]:
            pairs = pairs + _take_renames(schema, [p for p, d in zip(candidates, tested[1:]) if d == 0])
    compared = [p for p in pairs if p.old not in key]
    tol_of = {p.new: tolerances.get(p.new) for p in compared}
    first = key_pairs[0].exprs()
    keys_sql = [f"coalesce({a}, {b}) AS {q(p.new)}" for p, (a, b) in ((p, p.exprs()) for p in key_pairs)]
    flags = [f"{_changed_sql(p, tol_of[p.new])} AS __c{i}" for i, p in enumerate(compared)]
    values = [f"o.{q(p.old)} AS __o{i}, n.{q(p.new)} AS __n{i}" for i, p in enumerate(compared)]
    kind = f"CASE WHEN {first[0]} IS NULL THEN 'added' WHEN {first[1]} IS NULL THEN 'removed' ELSE 'changed' END"
    inner = ", ".join([*keys_sql, f"{kind} AS __kind", *flags, *values])
    any_change = " OR ".join(f"__c{i}" for i in range(len(compared))) or "false"
    masked = [
        f"CASE WHEN __c{i} THEN __o{i} END AS __o{i}, CASE WHEN __c{i} THEN __n{i} END AS __n{i}"
        for i in range(len(compared))
    ]
    kept = ", ".join([*(q(p.new) for p in key_pairs), "__kind", *(f"__c{i}" for i in range(len(compared))), *masked])
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __mlci_diff AS SELECT {kept} FROM "
        f"(SELECT {inner} FROM {old} AS o FULL OUTER JOIN {new} AS n ON {on}) "
        f"WHERE __kind <> 'changed' OR {any_change}"
    )
    counts = ", ".join(
        ["count_if(__kind = 'added')", "count_if(__kind = 'removed')", "count_if(__kind = 'changed')"]
        + [f"count_if(__c{i} AND __kind = 'changed')" for i in range(len(compared))]
    )
    counted = con.execute(f"SELECT {counts} FROM __mlci_diff").fetchone()
    assert counted is not None
    added, removed, changed = (int(x or 0) for x in counted[:3])
    names = [p.new for p in key_pairs]
    order = ", ".join(q(n) for n in names)
    columns = []
    for i, p in enumerate(compared):
        n_changed = int(counted[3 + i] or 0)
        if not n_changed:
            continue
        got = con.execute(
            f"SELECT {order}, __o{i}, __n{i} FROM __mlci_diff WHERE __kind = 'changed' AND __c{i} "
            f"ORDER BY {order} LIMIT {int(examples)}"
        ).fetchall()
        shown = [
            {"key": {k: cell(v) for k, v in zip(names, r[: len(names)])}, "old": cell(r[-2]), "new": cell(r[-1])}
            for r in got
        ]
        tol = tol_of[p.new]
        columns.append(
            ColumnDiff(
                p.new,
                n_changed,
                shown,
                old_name=p.old if p.old != p.new else None,
                tolerance=tol if tol is not None and not tol.zero and p.numeric else None,
            )
        )
    columns.sort(key=lambda c: -c.changed)

    def keys_of(kind: str) -> list[dict[str, Any]]:
        got = con.execute(
            f"SELECT {order} FROM __mlci_diff WHERE __kind = '{kind}' ORDER BY {order} LIMIT {int(examples)}"
        ).fetchall()
        return [{k: cell(v) for k, v in zip(names, r)} for r in got]

    added_examples, removed_examples = keys_of("added"), keys_of("removed")
    if output is not None:
        _write_keyed(con, names, compared, output)
    con.execute("DROP TABLE __mlci_diff")
    return RowDiff(
        key=names,
        rows_old=rows_old,
        rows_new=rows_new,
        added=added,
        removed=removed,
        changed=changed,
        unchanged=rows_old - removed - changed,
        schema=schema,
        columns=columns,
        added_examples=added_examples,
        removed_examples=removed_examples,
    )


OUTPUT_FIELDS = ("change", "column", "old", "new")


def _out_name(name: str) -> str:
    return f"key.{name}" if name in OUTPUT_FIELDS else name


def _write_keyed(con: duckdb.DuckDBPyConnection, names: list[str], compared: list[_Pair], output: Path) -> None:
    keys = ", ".join(f"{q(n)} AS {q(_out_name(n))}" for n in names)
    parts = [
        f"SELECT {keys}, __kind AS change, NULL::VARCHAR AS {q('column')}, NULL::VARCHAR AS old, NULL::VARCHAR AS new "
        "FROM __mlci_diff WHERE __kind <> 'changed'"
    ]
    for i, p in enumerate(compared):
        parts.append(
            f"SELECT {keys}, 'changed', {lit(p.new)}, CAST(__o{i} AS VARCHAR), CAST(__n{i} AS VARCHAR) "
            f"FROM __mlci_diff WHERE __kind = 'changed' AND __c{i}"
        )
    order = ", ".join(q(_out_name(n)) for n in names)
    _copy(con, f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY {order}, change, {q('column')}", output)


def _copy(con: duckdb.DuckDBPyConnection, select: str, output: Path) -> None:
    """COPY to a temp file beside `output`, then rename: never a half-written file."""
    import os

    tmp = _tmp_of(output)
    try:
        con.execute(f"COPY ({select}) TO {lit(str(tmp))} (FORMAT parquet)")
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------------------------ multiset
def _row_hash(pairs: list[_Pair], side: str) -> str:
    exprs = [p.exprs()[0 if side == "o" else 1] for p in pairs]
    return f"hash({', '.join(exprs)})" if exprs else "0"


def _multiset(
    con: duckdb.DuckDBPyConnection,
    old: str,
    new: str,
    schema: SchemaDiff,
    pairs: list[_Pair],
    candidates: list[_Pair],
    examples: int,
    output: Path | None,
) -> RowDiff:
    """Rows as multisets of whole-row hashes over the shared columns: added and removed only."""
    if candidates:  # a rename, without a key: the two columns hold the same multiset of values
        fp = [
            (f"sum(hash({a}))", f"count({a})", f"sum(hash({b}))", f"count({b})")
            for a, b in (p.exprs() for p in candidates)
        ]
        got_o = con.execute(f"SELECT {', '.join(f'{x}, {y}' for x, y, _a, _b in fp)} FROM {old} AS o").fetchone()
        got_n = con.execute(f"SELECT {', '.join(f'{x}, {y}' for _a, _b, x, y in fp)} FROM {new} AS n").fetchone()
        assert got_o is not None and got_n is not None
        equal = [p for i, p in enumerate(candidates) if got_o[2 * i : 2 * i + 2] == got_n[2 * i : 2 * i + 2]]
        pairs = pairs + _take_renames(schema, equal)
    ho, hn = _row_hash(pairs, "o"), _row_hash(pairs, "n")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mlci_ho AS SELECT {ho} AS h, count(*) AS c FROM {old} AS o GROUP BY 1")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mlci_hn AS SELECT {hn} AS h, count(*) AS c FROM {new} AS n GROUP BY 1")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mlci_hd AS SELECT h, coalesce(n.c, 0) - coalesce(o.c, 0) AS d, "
        "least(coalesce(o.c, 0), coalesce(n.c, 0)) AS same "
        "FROM __mlci_ho AS o FULL OUTER JOIN __mlci_hn AS n USING (h)"
    )
    row = con.execute(
        "SELECT (SELECT sum(c) FROM __mlci_ho), (SELECT sum(c) FROM __mlci_hn), "
        "sum(greatest(d, 0)), sum(greatest(-d, 0)), sum(same) FROM __mlci_hd"
    ).fetchone()
    assert row is not None
    rows_old, rows_new, added, removed, unchanged = (int(x or 0) for x in row)

    def rows_of(view: str, alias: str, hexpr: str, sign: str) -> list[dict[str, Any]]:
        got = con.execute(
            f"SELECT DISTINCT * FROM {view} AS {alias} WHERE {hexpr} IN (SELECT h FROM __mlci_hd WHERE d {sign} 0) "
            f"LIMIT {int(examples)}"
        )
        names = [d[0] for d in got.description or []]
        return [{k: cell(v) for k, v in zip(names, r)} for r in got.fetchall()]

    added_rows = rows_of(new, "n", hn, ">") if added else []
    removed_rows = rows_of(old, "o", ho, "<") if removed else []
    if output is not None:
        rows_sql = [
            f"SELECT 'added' AS change, d AS copies, CAST(struct_pack(n.*) AS VARCHAR) AS row FROM {new} AS n "
            f"JOIN (SELECT h, d FROM __mlci_hd WHERE d > 0) AS x ON {hn} = x.h",
            f"SELECT 'removed', -d, CAST(struct_pack(o.*) AS VARCHAR) FROM {old} AS o "
            f"JOIN (SELECT h, d FROM __mlci_hd WHERE d < 0) AS x ON {ho} = x.h",
        ]
        _copy(con, f"SELECT DISTINCT * FROM ({' UNION ALL '.join(rows_sql)}) ORDER BY change, row", output)
    for t in ("__mlci_ho", "__mlci_hn", "__mlci_hd"):
        con.execute(f"DROP TABLE {t}")
    return RowDiff(
        key=[],
        rows_old=rows_old,
        rows_new=rows_new,
        added=added,
        removed=removed,
        changed=0,
        unchanged=unchanged,
        schema=schema,
        columns=[],
        added_examples=added_rows,
        removed_examples=removed_rows,
        notes=[
            "no key (primary_key or --key): rows compared as multisets of whole rows, so a changed row "
            "counts as one removed and one added"
        ],
    )


# ------------------------------------------------------------------------------------ versions
class VersionError(InputError):
    """One of the two versions cannot be read (not here, corrupt, truncated): the CLI's exit 2;
    the report, the hooks and CI skip that diff with this message as the warning."""


def version_of(repo: Repo, ref: str | None) -> str:
    """Where a version is read: None -> the working tree; a commit-ish -> that commit; a run
    id or a promoted stage -> the commit of its run (the order every run reference follows)."""
    from mlci_tui.validate import source

    if ref is None:
        return source.WORKTREE
    commit = repo.commit_of(ref)
    if commit is not None:
        return commit
    from mlci_tui.ledger.cache import LedgerCache
    from mlci_tui.ledger.query.run import load_run
    from mlci_tui.ledger.resolve import resolve_run

    with LedgerCache(repo).connect() as con:
        run = load_run(con, resolve_run(repo, con, ref))
    if not run.commit:
        raise InputError(f"{display(ref)}: run {run.run_id[:12]} has no commit to read the dataset from")
    return run.commit


def tolerances_of(spec: DatasetSpec, flags: Tolerance | None = None) -> dict[str, Tolerance]:
    """Each column's tolerance: `--abs`/`--rel` (every column) over the schema's `diff:`."""
    out = {n: Tolerance(*c.diff) for n, c in spec.columns.items() if c.diff is not None}
    return {"*": flags} if flags is not None and not flags.zero else out


def diff_versions(
    repo: Repo,
    spec: DatasetSpec,
    old_where: str,
    new_where: str,
    *,
    key: Sequence[str] | None = None,
    tolerance: Tolerance | None = None,
    examples: int = EXAMPLES,
    output: Path | None = None,
    labels: tuple[str, str] = ("old version", "new version"),
    fetch: bool = False,
) -> RowDiff:
    """Diff dataset `spec` as `old_where` holds it against `new_where` (WORKTREE, INDEX or a
    commit), read as validation reads them (the content cache for pointers, never a checkout).
    With `fetch` (the CLI), a pointer's version missing from the cache is first downloaded
    from the data remote, as `mlci data pull` would (reports and hooks never use the network).
    VersionError names the version that cannot be read and why."""
    import shutil
    import tempfile

    import duckdb

    from mlci_tui.sql_guard import lock_down
    from mlci_tui.validate import engine, source
    from mlci_tui.validate.run import _clean_error, _files_of, _text_columns, precheck_content, read_format

    state = repo.state_dir / "validate"
    state.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="diff-", dir=state))
    try:
        sides = []
        for label, where in zip(labels, (old_where, new_where)):
            try:
                try:
                    content = source.resolve(repo, spec.path, where, scratch, spec.format or None)
                except source.Unavailable as missing:
                    if not fetch or isinstance(missing, source.Absent) or not fetch_version(repo, spec.path, where):
                        raise
                    content = source.resolve(repo, spec.path, where, scratch, spec.format or None)
                fmt = read_format(spec, content)
                header = precheck_content(content, fmt, spec.csv)
            except (source.Unavailable, engine.DataError) as exc:
                raise VersionError(f"{label} of {spec.path}: {exc}") from None
            sides.append((label, content, fmt, header))
        con = engine.connect(scratch / "spill")
        allowed = [f for _l, c, _f, _h in sides for f in _files_of(c)]
        lock_down(
            con,
            read=allowed + ([_tmp_of(output)] if output is not None else []),
            directories=[scratch / "spill"],
            memory=None,  # engine.connect set validation's own limit
        )
        try:
            for all_varchar in (False, True):
                try:
                    for view, (label, content, fmt, header) in zip(("__mlci_old", "__mlci_new"), sides):
                        rel = engine.relation_sql(
                            content.read,
                            fmt,
                            spec.csv,
                            all_varchar=all_varchar and fmt in ("csv", "tsv"),
                            text_columns=_text_columns(spec, header),
                        )
                        try:
                            rel = engine.pin_csv(con, rel, content.read)
                            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {rel}")
                            describe(con, view)
                        except duckdb.ConversionException:
                            raise
                        except duckdb.Error as exc:
                            raise VersionError(
                                f"{label} of {spec.path}: cannot read it as {fmt}: {_clean_error(exc, content)}"
                            ) from None
                    tolerances = tolerances_of(spec, tolerance)
                    if "*" in tolerances:
                        tolerances = {c: tolerances["*"] for c, _t in describe(con, "__mlci_new")}
                    result = diff_views(
                        con,
                        "__mlci_old",
                        "__mlci_new",
                        list(key if key is not None else spec.primary_key),
                        tolerances,
                        examples=examples,
                        output=output,
                        labels=labels,
                    )
                    result.old_hash, result.new_hash = sides[0][1].content_hash, sides[1][1].content_hash
                    return result
                except duckdb.ConversionException as exc:
                    if all_varchar or not any(f in ("csv", "tsv") for _l, _c, f, _h in sides):
                        raise VersionError(f"{spec.path}: {engine.clean_error(exc)}") from None
                except duckdb.Error as exc:
                    raise VersionError(f"{spec.path}: {engine.clean_error(exc)}") from None
            raise AssertionError("unreachable")
        finally:
            con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_version(repo: Repo, path: str, where: str) -> bool:
    """Download the objects the mlci pointer of `path` at `where` names from the default data
    remote into the cache; False when there is no such pointer or no remote (the caller's
    "not in the cache" error then stands)."""
    from mlci_tui.data.add import parallel_jobs
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.pointer import POINTER_SUFFIX, parse_pointer
    from mlci_tui.data.remotes import open_default_remote
    from mlci_tui.data.transfer import fetch
    from mlci_tui.data.workspace import pointers_at, read_pointer_file
    from mlci_tui.errors import ConfigError
    from mlci_tui.validate import source

    name = path + POINTER_SUFFIX
    if where == source.WORKTREE:
        pointers = [read_pointer_file(repo.root, name)] if (repo.root / name).is_file() else []
    elif where == source.INDEX:
        staged = repo.run("cat-file", "blob", f":{name}", check=False)
        pointers = [parse_pointer(staged.stdout.decode("utf-8"), name)] if staged.returncode == 0 else []
    else:
        pointers, _problems = pointers_at(repo, where, [name])
    try:
        remote = open_default_remote(repo.root)
    except ConfigError:
        return False
    if not pointers or remote is None:
        return False
    fs, base, _name = remote
    result = fetch(DataCache.for_repo(repo.root), pointers, fs, base, parallel_jobs(repo.root, None))
    return not (result.failed or result.missing)


def _tmp_of(output: Path) -> Path:
    import os

    return output.with_name(f".{output.name}.tmp-{os.getpid()}")


# ------------------------------------------------------------------------------------ text
# Plain text pieces every renderer (the CLI, Markdown, HTML, the TUI) escapes for its medium.
def key_text(values: dict[str, Any]) -> str:
    """`customer_id=5` (a row's key values, or a whole row without a key)."""
    from mlci_tui.output import cell_text

    return ", ".join(f"{k}={cell_text(v)}" for k, v in values.items())


def example_text(example: dict[str, Any]) -> str:
    """`customer_id=5: 1.5 -> 2.5`, the two values in the digits that tell them apart."""
    from mlci_tui.numbers import digits_to_tell_apart
    from mlci_tui.output import cell_text

    old, new = example["old"], example["new"]
    digits = digits_to_tell_apart([old, new])
    shown = ["NULL" if v is None else cell_text(v, digits) for v in (old, new)]
    return f"{key_text(example['key'])}: {shown[0]} -> {shown[1]}"


def counts_text(d: RowDiff) -> str:
    parts = [f"{d.added:,} added", f"{d.removed:,} removed"]
    if d.key:
        parts.append(f"{d.changed:,} changed")
    parts.append(f"{d.unchanged:,} unchanged")
    return f"rows {d.rows_old:,} -> {d.rows_new:,}: " + ", ".join(parts)


def schema_texts(s: SchemaDiff) -> list[str]:
    out = []
    if s.added:
        out.append("columns added: " + ", ".join(s.added))
    if s.removed:
        out.append("columns removed: " + ", ".join(s.removed))
    if s.renamed:
        out.append("renamed (same values): " + ", ".join(f"{a} -> {b}" for a, b in s.renamed.items()))
    if s.retyped:
        out.append("retyped: " + ", ".join(f"{c} {a} -> {b}" for c, (a, b) in s.retyped.items()))
    if s.reordered:
        out.append("columns reordered")
    return out


def summary_lines(d: RowDiff, *, columns: int = 10) -> list[str]:
    """A diff in a few plain lines (the TUI's Data tab): counts, schema changes, the columns
    that changed with an example each, the first added and removed keys."""
    lines = [counts_text(d), *schema_texts(d.schema)]
    for c in d.columns[:columns]:
        example = f": {example_text(c.examples[0])}" if c.examples else ""
        lines.append(f"{column_name(c)}: {c.changed:,} changed{example}")
    for kind, shown, count in (("added", d.added_examples, d.added), ("removed", d.removed_examples, d.removed)):
        if shown and d.key:
            lines.append(f"{kind} (first {len(shown)} of {count:,}): " + "; ".join(key_text(k) for k in shown))
    return lines


def column_name(c: ColumnDiff) -> str:
    return c.column if c.old_name is None else f"{c.old_name} -> {c.column}"
