"""The runs filter language, compiled to a DuckDB predicate over the `runs` view.

    acc > 0.9 and lr in (0.1, 0.01)
    model ~ "cnn.*" or not (status = "failed")
    min(loss) < 0.2 and loss@step=100 < 0.5
    metric(status) > 1          explicit kinds when a name is ambiguous
    sql: metrics['acc'] > 0.9   raw SQL after the prefix (also `:`)

One parser for every front end: the TUI's filter box compiles with `compile_filter`; the
command line's `--where` with `compile_where`, which takes what does not parse as the
language as SQL (as `--where` always did), so `acc > 0.7` and `metrics['acc'] > 0.7` both work.

Every value from the expression is a bound parameter: the compiled SQL holds only
keywords, operators, column names of the runs view and `?` placeholders. Names are
looked up in what the ledger holds (run fields, metric keys, param keys, step series);
an unknown or ambiguous name is an error that says what it could be. Nothing here
imports Textual or DuckDB.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from mlci_tui.sanitize import display


class FilterError(ValueError):
    """A filter that cannot be compiled; the message is for the user, with a position."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


RAW_PREFIXES = ("sql:", ":")

# name in the language -> (SQL over the runs view, type)
FIELDS: dict[str, tuple[str, str]] = {
    "id": ("run_id", "id"),
    "run_id": ("run_id", "id"),
    "kind": ("kind", "text"),
    "name": ("name", "text"),
    "status": ("status", "text"),
    "branch": ("branch", "text"),
    "author": ("author", "text"),
    "message": ("message", "text"),
    "subject": ("coalesce(name, split_part(message, chr(10), 1))", "text"),
    "commit": ("commit", "text"),
    "tree": ("tree", "text"),
    "source": ("source", "text"),
    "parent": ("parent", "text"),
    "sweep_id": ("sweep_id", "text"),
    "trial_id": ("trial_id", "text"),
    "stale": ("stale", "bool"),
    "time": ("coalesce(started, time)", "time"),
    "started": ("started", "time"),
    "ended": ("ended", "time"),
    "tag": ("tags", "tags"),
    "tags": ("tags", "tags"),
}

STEP_AGGREGATES = {
    "min": "min(s.value)",
    "max": "max(s.value)",
    "avg": "avg(s.value)",
    "mean": "avg(s.value)",
    "first": "arg_min(s.value, s.step)",
    "last": "arg_max(s.value, s.step)",
    "count": "count(s.value)",
}
KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
COMPARISONS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]*`)
  | (?P<op>==|!=|<>|<=|>=|!~|[=<>~(),@])
  | (?P<name>[A-Za-z_][\w.\-/:]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, op, keyword, end
    text: str
    value: Any
    pos: int


@dataclass(frozen=True)
class Names:
    """What the ledger holds, for name lookup."""

    metrics: Collection[str] = ()
    params: Collection[str] = ()
    steps: Collection[str] = ()


@dataclass
class Compiled:
    sql: str  # a predicate over the runs view, '' for "everything"
    binds: list[Any] = field(default_factory=list)
    raw: bool = False
    # step aggregates, each one GROUP BY over the steps view joined to the runs (a correlated
    # subquery per run is several times slower on large ledgers): "LEFT JOIN (...) ON ..."
    joins: str = ""
    join_binds: list[Any] = field(default_factory=list)
    # raw SQL that `compile_where` fell back to: why the text was not read as the language
    not_a_filter: str = ""

    def source(self) -> str:
        """What to select FROM: the runs view and the step aggregates the filter needs."""
        return f"runs {self.joins}".strip()


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"unexpected character {display(text[pos])!r} at {pos + 1}", pos)
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "number":
            tokens.append(Token("number", raw, float(raw), pos))
        elif kind == "string":
            body = raw[1:-1]
            tokens.append(Token("string", raw, re.sub(r"\\(.)", r"\1", body), pos))
        elif kind == "quoted":
            tokens.append(Token("name", raw, raw[1:-1], pos))
        elif kind == "op":
            tokens.append(Token("op", raw, raw, pos))
        elif kind == "name":
            low = raw.lower()
            tokens.append(Token("keyword", low, low, pos) if low in KEYWORDS else Token("name", raw, raw, pos))
        pos = m.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


@dataclass
class _Operand:
    sql: str
    binds: list[Any]
    kind: str  # number, text, param, time, bool, id, tags, literal
    label: str
    literal: Any = None


class _Parser:
    def __init__(self, text: str, names: Names) -> None:
        self.text = text
        self.names = names
        self.tokens = tokenize(text)
        self.i = 0
        self.joins: dict[tuple[Any, ...], tuple[str, str, list[Any]]] = {}  # key -> (alias, sql, binds)

    # ------------------------------------------------------------------ helpers
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def expect(self, text: str) -> Token:
        tok = self.take()
        if tok.text != text:
            raise self.error(f"expected {text!r}", tok)
        return tok

    def error(self, message: str, tok: Token) -> FilterError:
        where = "at the end" if tok.kind == "end" else f"at {tok.pos + 1} ({display(tok.text)!r})"
        return FilterError(f"{message} {where}", tok.pos)

    # ------------------------------------------------------------------ grammar
    def parse(self) -> tuple[str, list[Any]]:
        sql, binds = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.error("expected `and`, `or` or the end", tok)
        return sql, binds

    def or_expr(self) -> tuple[str, list[Any]]:
        sql, binds = self.and_expr()
        while self.peek().text == "or" and self.peek().kind == "keyword":
            self.take()
            right, more = self.and_expr()
            sql, binds = f"({sql} OR {right})", binds + more
        return sql, binds

    def and_expr(self) -> tuple[str, list[Any]]:
        sql, binds = self.not_expr()
        while self.peek().text == "and" and self.peek().kind == "keyword":
            self.take()
            right, more = self.not_expr()
            sql, binds = f"({sql} AND {right})", binds + more
        return sql, binds

    def not_expr(self) -> tuple[str, list[Any]]:
        if self.peek().kind == "keyword" and self.peek().text == "not":
            self.take()
            sql, binds = self.not_expr()
            return f"(NOT coalesce({sql}, false))", binds
        return self.comparison()

    def comparison(self) -> tuple[str, list[Any]]:
        tok = self.peek()
        if tok.text == "(" and tok.kind == "op":
            self.take()
            sql, binds = self.or_expr()
            self.expect(")")
            return sql, binds
        left = self.operand()
        op = self.peek()
        if op.kind == "op" and op.text in COMPARISONS:
            self.take()
            right = self.operand()
            return self.compare(left, COMPARISONS[op.text], right, op)
        if op.kind == "op" and op.text in ("~", "!~"):
            self.take()
            pattern = self.take()
            if pattern.kind != "string":
                raise self.error("expected a quoted regular expression", pattern)
            self.check_regex(pattern)
            neg = "NOT " if op.text == "!~" else ""
            if left.kind == "tags":
                return f"({neg}len(list_filter({left.sql}, t -> regexp_matches(t, ?))) > 0)", [
                    *left.binds,
                    pattern.value,
                ]
            return f"({neg}coalesce(regexp_matches(CAST({left.sql} AS VARCHAR), ?), false))", [
                *left.binds,
                pattern.value,
            ]
        if op.kind == "keyword" and op.text in ("in", "not"):
            negate = False
            if op.text == "not":
                if self.peek(1).text != "in":
                    raise self.error("expected `in` after `not`", self.peek(1))
                self.take()
                negate = True
            self.take()
            values = self.literal_list()
            sql, binds = self.membership(left, values, op)
            return (f"(NOT coalesce({sql}, false))" if negate else sql), binds
        if op.kind == "keyword" and op.text == "is":
            self.take()
            negate = self.peek().text == "not"
            if negate:
                self.take()
            null = self.take()
            if null.kind == "name" and null.text.lower() == "nan":
                return f"({'NOT ' if negate else ''}coalesce(isnan({left.sql}), false))", list(left.binds)
            if null.text != "null":
                raise self.error("expected `null` or `nan` after `is`", null)
            return f"({left.sql} IS {'NOT ' if negate else ''}NULL)", list(left.binds)
        if left.kind == "bool":
            return f"coalesce({left.sql}, false)", list(left.binds)
        raise self.error(f"expected a comparison after {display(left.label)!r} (=, !=, <, >, ~, in, is null)", op)

    def literal_list(self) -> list[Token]:
        self.expect("(")
        values: list[Token] = []
        while True:
            tok = self.take()
            if tok.kind not in ("number", "string") and not (tok.kind == "keyword" and tok.text in ("true", "false")):
                raise self.error("expected a number or a quoted string", tok)
            values.append(tok)
            sep = self.take()
            if sep.text == ")":
                return values
            if sep.text != ",":
                raise self.error("expected `,` or `)`", sep)

    def check_regex(self, tok: Token) -> None:
        try:
            re.compile(tok.value)
        except re.error as exc:
            raise self.error(f"bad regular expression ({exc})", tok) from None

    # ------------------------------------------------------------------ operands
    def operand(self) -> _Operand:
        tok = self.take()
        if tok.kind == "number":
            return _Operand("?", [tok.value], "literal", tok.text, tok.value)
        if tok.kind == "string":
            return _Operand("?", [tok.value], "literal", tok.text, tok.value)
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            return _Operand("?", [tok.text == "true"], "literal", tok.text, tok.text == "true")
        if tok.kind != "name":
            raise self.error("expected a name, a number or a quoted string", tok)
        nxt = self.peek()
        if nxt.kind == "op" and nxt.text == "(" and tok.text.lower() in (*STEP_AGGREGATES, "metric", "param"):
            self.take()
            arg = self.take()
            if arg.kind not in ("name", "string"):
                raise self.error("expected a name", arg)
            self.expect(")")
            func = tok.text.lower()
            name = str(arg.value)
            if func == "metric":
                return self.metric(name, arg)
            if func == "param":
                return self.param(name, arg)
            return self.step_aggregate(func, name, arg)
        if nxt.kind == "op" and nxt.text == "@":
            self.take()
            step = self.take()
            if step.kind == "name" and step.text.lower() == "step":
                self.expect("=")
                step = self.take()
            if step.kind != "number" or step.value != int(step.value):
                raise self.error("expected a step number after `@` (loss@step=100)", step)
            return self.at_step(str(tok.value), int(step.value), tok)
        return self.name(str(tok.value), tok)

    def name(self, name: str, tok: Token) -> _Operand:
        low = name.lower()
        if low in FIELDS and not tok.text.startswith("`"):
            sql, kind = FIELDS[low]
            return _Operand(sql, [], kind, name)
        is_metric = name in self.names.metrics
        is_param = name in self.names.params
        if is_metric and is_param:
            raise self.error(
                f"{display(name)!r} is both a metric and a param: write metric({name}) or param({name})", tok
            )
        if is_metric:
            return self.metric(name, tok)
        if is_param:
            return self.param(name, tok)
        suffix = [k for k in (*self.names.metrics, *self.names.params) if k.endswith("." + name)]
        if len(set(suffix)) == 1:
            return self.name(suffix[0], Token("name", "`" + suffix[0] + "`", suffix[0], tok.pos))
        if len(set(suffix)) > 1:
            shown = ", ".join(display(k) for k in sorted(set(suffix))[:5])
            raise self.error(f"{display(name)!r} is ambiguous: {shown}", tok)
        known = [*FIELDS, *self.names.metrics, *self.names.params]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(display(c) for c in close)}?" if close else ""
        strings = ' (quote text values: "...")' if not close else ""
        raise self.error(f"unknown name {display(name)!r}: no run field, metric or param{hint}{strings}", tok)

    def metric(self, name: str, tok: Token) -> _Operand:
        if name not in self.names.metrics:
            raise self.error(f"no metric named {display(name)!r}", tok)
        return _Operand("metrics[?]", [name], "number", name)

    def param(self, name: str, tok: Token) -> _Operand:
        if name not in self.names.params:
            raise self.error(f"no param named {display(name)!r}", tok)
        return _Operand("params[?]", [name], "param", name)

    def _series(self, name: str, tok: Token) -> tuple[str, list[Any]]:
        if name in self.names.steps:
            return "s.name = ?", [name]
        if ":" in name:
            file, _, plain = name.rpartition(":")
            if plain in self.names.steps:
                return "s.file = ? AND s.name = ?", [file, plain]
        close = difflib.get_close_matches(name, list(self.names.steps), n=3)
        hint = f"; did you mean {', '.join(display(c) for c in close)}?" if close else ""
        raise self.error(f"no step series named {display(name)!r}{hint}", tok)

    def _join(self, key: tuple[Any, ...], aggregate: str, cond: str, binds: list[Any]) -> str:
        """A per-run aggregate of the steps, joined once however often the filter uses it."""
        if key not in self.joins:
            alias = f"_s{len(self.joins) + 1}"
            sql = (
                f"LEFT JOIN (SELECT s.run_id AS {alias}_run, {aggregate} AS {alias}_v FROM steps s "
                f"WHERE {cond} GROUP BY s.run_id) AS {alias} ON {alias}.{alias}_run = runs.run_id"
            )
            self.joins[key] = (alias, sql, binds)
        alias = self.joins[key][0]
        return f"{alias}.{alias}_v"

    def step_aggregate(self, func: str, name: str, tok: Token) -> _Operand:
        cond, binds = self._series(name, tok)
        column = self._join((func, *binds), STEP_AGGREGATES[func], cond, binds)
        if func == "count":
            column = f"coalesce({column}, 0)"
        return _Operand(column, [], "number", f"{func}({name})")

    def at_step(self, name: str, step: int, tok: Token) -> _Operand:
        cond, binds = self._series(name, tok)
        column = self._join(("at", step, *binds), "max(s.value)", f"{cond} AND s.step = ?", [*binds, step])
        return _Operand(column, [], "number", f"{name}@step={step}")

    # ------------------------------------------------------------------ typing
    def compare(self, left: _Operand, op: str, right: _Operand, tok: Token) -> tuple[str, list[Any]]:
        if left.kind == "literal" and right.kind != "literal":
            flipped = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
            return self.compare(right, flipped, left, tok)
        if right.kind != "literal":
            # two columns: compare numerically when both are numbers, else as text
            if left.kind in ("number",) and right.kind in ("number",):
                return f"({left.sql} {op} {right.sql})", [*left.binds, *right.binds]
            return f"(CAST({left.sql} AS VARCHAR) {op} CAST({right.sql} AS VARCHAR))", [*left.binds, *right.binds]
        if left.kind == "literal":
            raise self.error("compare a name with a value, not two values", tok)
        return self.compare_literal(left, op, right.literal, tok)

    def compare_literal(self, left: _Operand, op: str, value: Any, tok: Token) -> tuple[str, list[Any]]:
        binds = list(left.binds)
        if left.kind == "number":
            if isinstance(value, bool) or not isinstance(value, float):
                raise self.error(f"{display(left.label)!r} is a number: compare it with a number", tok)
            # IEEE: NaN (a diverged loss) is neither above nor below anything; DuckDB sorts it last
            return f"(NOT isnan({left.sql}) AND {left.sql} {op} ?)", [*binds, *binds, value]
        if left.kind == "param":
            if isinstance(value, bool):
                return f"(lower({left.sql}) {op} ?)", [*binds, "true" if value else "false"]
            if isinstance(value, float):
                return f"(TRY_CAST({left.sql} AS DOUBLE) {op} ?)", [*binds, value]
            return f"({left.sql} {op} ?)", [*binds, value]
        if left.kind == "bool":
            if not isinstance(value, bool):
                raise self.error(f"{display(left.label)!r} is true or false", tok)
            return f"(coalesce({left.sql}, false) {op} ?)", [*binds, value]
        if left.kind == "time":
            if not isinstance(value, str):
                raise self.error(f"{display(left.label)!r} is a time: compare it with a quoted date", tok)
            return f"({left.sql} {op} TRY_CAST(? AS TIMESTAMP))", [*binds, value]
        if left.kind == "tags":
            if op not in ("=", "<>") or not isinstance(value, str):
                raise self.error("tags take = or != with a quoted tag name, or ~", tok)
            sql = f"list_contains({left.sql}, ?)"
            return (f"({sql})" if op == "=" else f"(NOT {sql})"), [*binds, value]
        text = _literal_text(value)
        if left.kind == "id" and op == "=":
            return f"starts_with({left.sql}, ?)", [*binds, text]
        if left.kind == "id" and op == "<>":
            return f"(NOT starts_with({left.sql}, ?))", [*binds, text]
        return f"({left.sql} {op} ?)", [*binds, text]

    def membership(self, left: _Operand, values: list[Token], tok: Token) -> tuple[str, list[Any]]:
        if left.kind == "literal":
            raise self.error("`in` needs a name on its left", tok)
        parts: list[str] = []
        binds: list[Any] = []
        for v in values:
            literal: Any = (v.text == "true") if v.kind == "keyword" else v.value
            sql, more = self.compare_literal(left, "=", literal, v)
            parts.append(sql)
            binds += more
        return "(" + " OR ".join(parts) + ")", binds


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)
    return str(value)


def compile_filter(text: str, names: Names) -> Compiled:
    """Compile a filter to a predicate over the `runs` view with bound parameters."""
    stripped = text.strip()
    for prefix in RAW_PREFIXES:
        if stripped.lower().startswith(prefix):
            raw = stripped[len(prefix) :].strip()
            if not raw:
                raise FilterError("raw SQL: write a predicate over the runs view after the prefix", 0)
            if ";" in raw:
                raise FilterError("raw SQL: one predicate, no `;`", stripped.index(";"))
            return Compiled(f"({raw})", [], raw=True)
    if not stripped:
        return Compiled("", [])
    parser = _Parser(stripped, names)
    sql, binds = parser.parse()
    joins = list(parser.joins.values())
    return Compiled(sql, binds, joins=" ".join(j[1] for j in joins), join_binds=[b for j in joins for b in j[2]])


def compile_where(text: str, names: Names) -> Compiled:
    """`--where TEXT`: the filter language, or, where TEXT does not compile as it, a raw SQL
    predicate (`raw`, to be guarded like `sql:`), remembering why (`not_a_filter`)."""
    try:
        return compile_filter(text, names)
    except FilterError as exc:
        stripped = text.strip()
        if stripped.lower().startswith(RAW_PREFIXES):
            raise
        return Compiled(f"({stripped})", [], raw=True, not_a_filter=str(exc))
