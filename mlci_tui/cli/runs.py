"""Handlers of the query and ledger subcommands: thin wrappers over the core."""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from mlci_tui import config as config_mod
from mlci_tui import output
from mlci_tui.cli.console import notice, open_ledger, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options
from mlci_tui.errors import InputError, first_line
from mlci_tui.gitio import Repo
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sanitize import display

RUN_TABLE_COLUMNS = ["run", "time", "kind", "branch", "commit", "message"]
RUN_FIELDS = [
    "run_id",
    "kind",
    "name",
    "status",
    "started",
    "ended",
    "commit",
    "tree",
    "patch_id",
    "branch",
    "author",
    "message",
    "source",
    "parent",
    "sweep_id",
    "trial_id",
    "stale",
    "tags",
    "params",
    "metrics",
]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def record(args: argparse.Namespace) -> int:
    from mlci_tui.capture.build import capture_workspace

    repo = Repo.find()
    cfg = config_mod.load(repo.root)
    rec = capture_workspace(repo, cfg, message=args.message, commit_rev=args.commit, name=args.name)
    LedgerStore(repo).append([rec])
    for warning in rec.get("warnings", []):
        notice(f"warning: {warning}")
    say(f"recorded {rec['kind']} run {rec['run_id'][:8]} ({rec['run_id']})")
    return 0


def capture(args: argparse.Namespace) -> int:
    from mlci_tui.capture.write import capture_revs

    repo = Repo.find()
    config_mod.load(repo.root)  # a broken working-tree config is reported before any work
    revs = args.revs or ([] if args.range_spec else ["HEAD"])
    report = capture_revs(repo, revs, range_spec=args.range_spec)
    for rec in report.added:
        say(f"captured {rec['commit'][:12]} as run {rec['run_id'][:8]}")
    if report.present:
        say(f"{len(report.present)} commit(s) already in the ledger")
    if report.empty:
        say(f"{len(report.empty)} commit(s) hold no params or metrics files: no run")
    return 0


def _sort_clause(sort: str | None, params: list[str], metrics: list[str]) -> tuple[str, list[Any]]:
    if not sort:
        return "ORDER BY started DESC NULLS LAST, time DESC, run_id", []
    desc = sort.startswith("-")
    key = sort.lstrip("-+")
    direction = "DESC" if desc else "ASC"
    columns = {n for n in RUN_FIELDS if n not in ("params", "metrics", "tags")} | {"time", "started", "ended"}
    if key in columns:
        return f'ORDER BY "{key}" {direction} NULLS LAST, run_id', []
    if key in metrics:
        # NaN sorts above every number in DuckDB: a diverged run must not list as the best
        return f"ORDER BY nullif(metrics[?], 'NaN'::DOUBLE) {direction} NULLS LAST, run_id", [key]
    if key in params:
        return (
            f"ORDER BY coalesce(TRY_CAST(params[?] AS DOUBLE), NULL) {direction} NULLS LAST, params[?] {direction}, run_id",
            [key, key],
        )
    qualified = [k for k in metrics + params if k.endswith(f":{key}")]
    if qualified:
        raise InputError(
            f"--sort {display(key)!r} is ambiguous: it comes from several files; name one of "
            + ", ".join(display(k) for k in qualified[:5])
        )
    raise InputError(f"--sort {display(key)!r}: no such column, metric or param")


def _keys(con: Any, kind: str) -> list[str]:
    """Every metric or param map key in the ledger (kept by the cache; no scan of the runs)."""
    return [r[0] for r in con.execute("SELECT name FROM names WHERE kind = ? ORDER BY name", [kind]).fetchall()]


def _listing_memo(repo: Repo, args: argparse.Namespace) -> tuple[Path, str] | None:
    """Where the full `runs --json/--csv` listing is memoised, and the key it must carry.

    The unfiltered listing is what scripts and editors ask for again and again; keyed by the
    ledger tip (plus cache schema and mlci version) it is served without importing DuckDB,
    byte for byte what the query would print.
    """
    if args.format not in ("json", "csv") or args.where or args.sort or args.limit is not None:
        return None
    from mlci_tui import __version__
    from mlci_tui.ledger.cache import CACHE_SCHEMA

    key = f"mlci-listing {LedgerStore(repo).tip() or '-'} {CACHE_SCHEMA} {__version__}"
    return repo.state_dir / f"runs-listing.{args.format}", key


def runs(args: argparse.Namespace) -> int:
    repo = Repo.find()
    memo = _listing_memo(repo, args)
    if memo is not None:
        from mlci_tui.ledger.cache import CACHE_NAME

        path, key = memo
        try:
            if not (repo.state_dir / CACHE_NAME).exists():
                raise FileNotFoundError(CACHE_NAME)  # a dropped cache drops the memo derived from it
            with open(path, encoding="utf-8") as cached:
                if cached.readline().rstrip("\n") == key:
                    sys.stdout.write(cached.read())
                    return 0
        except OSError:
            pass
        buffer = io.StringIO()
        code = _runs(repo, args, buffer)
        sys.stdout.write(buffer.getvalue())
        if code == 0 and _listing_memo(repo, args) == memo:  # the ledger did not move meanwhile
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(key + "\n" + buffer.getvalue(), encoding="utf-8")
            os.replace(tmp, path)
        return code
    return _runs(repo, args, sys.stdout)


def _runs(repo: Repo, args: argparse.Namespace, out: TextIO) -> int:
    import duckdb

    with open_ledger(repo) as con:
        metric_keys = _keys(con, "metric")
        param_keys = _keys(con, "param")
        order, binds = _sort_clause(args.sort, param_keys, metric_keys)
        limit = args.limit if args.limit is not None else (50 if args.format in ("table", "md") else 0)
        where = f"WHERE ({args.where})" if args.where else ""
        sql = f"SELECT * FROM runs {where} {order}" + (f" LIMIT {int(limit)}" if limit and limit > 0 else "")
        try:
            cur = con.execute(sql, binds)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            total = con.execute(f"SELECT count(*) FROM runs {where}").fetchone()[0]
        except duckdb.Error as exc:
            raise InputError(f"--where: {first_line(exc)}") from None
    if args.format in ("json", "csv"):
        listing = [{k: r.get(k) for k in RUN_FIELDS} | {"time": r.get("time")} for r in rows]
        output.write(listing, RUN_FIELDS[:1] + ["time"] + RUN_FIELDS[1:], args.format, out)
        return 0
    shown_metrics = [k for k in metric_keys if any(k in (r["metrics"] or {}) for r in rows)][:8]
    shown_params = [k for k in param_keys if args.all_params or _differs(rows, k)][:6]
    table = []
    for r in rows:
        row = {
            "run": r["run_id"][:8],
            "time": r["started"],
            "kind": r["kind"] + (" (stale)" if r.get("stale") else ""),
            "branch": r["branch"],
            "commit": (r["commit"] or "")[:8],
            "message": (r["name"] or (r["message"] or "").split("\n", 1)[0])[:40],
        }
        for k in shown_metrics:
            row[k] = (r["metrics"] or {}).get(k)
        for k in shown_params:
            row[f"{k}"] = _param_cell((r["params"] or {}).get(k))
        table.append(row)
    output.write(table, RUN_TABLE_COLUMNS + shown_metrics + shown_params, args.format, out)
    if args.format != "table":
        return 0
    if total > len(rows):
        print(f"({len(rows)} of {total} runs; --limit 0 shows all)", file=out)
    elif not rows:
        print("no runs yet: commit params/metrics files with the hooks installed, or run `mlci capture`", file=out)
    return 0


def _param_cell(value: str | None) -> Any:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return number if re.fullmatch(r"[-+0-9.eE]+", value) else value


def _differs(rows: list[dict[str, Any]], key: str) -> bool:
    return len({(r["params"] or {}).get(key) for r in rows}) > 1


def sql(args: argparse.Namespace) -> int:
    import duckdb

    repo = Repo.find()
    with open_ledger(repo) as con:
        try:
            cur = con.execute(args.query)
            if cur.description is None:
                return 0
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        except duckdb.Error as exc:
            raise InputError(f"sql: {first_line(exc)}") from None
    output.write(rows, names, args.format, sys.stdout)
    return 0


def _resolve(repo: Repo, con: Any, ref: str) -> str:
    from mlci_tui.ledger.resolve import resolve_run

    resolved = resolve_run(repo, con, ref)
    if resolved.notice:
        notice(resolved.notice)
    return resolved.run_id


def show(args: argparse.Namespace) -> int:
    repo = Repo.find()
    with open_ledger(repo) as con:
        run_id = _resolve(repo, con, args.run)
        cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        run = dict(zip(names, cur.fetchone()))
        params = con.execute(
            "SELECT file, name, value FROM params WHERE run_id = ? ORDER BY file, name", [run_id]
        ).fetchall()
        metrics = con.execute(
            """SELECT m.file, m.name, m.value, s.n, s.lo, s.hi, s.last_step FROM metrics m LEFT JOIN (
                   SELECT name, count(*) n, min(value) lo, max(value) hi, max(step) last_step
                   FROM steps WHERE run_id = ? GROUP BY name) s USING (name)
               WHERE m.run_id = ? ORDER BY m.file, m.name""",
            [run_id, run_id],
        ).fetchall()
        series = con.execute(
            """SELECT file, name, count(*), min(value), max(value), arg_max(value, step), max(step) FROM steps
               WHERE run_id = ? GROUP BY file, name ORDER BY file, name""",
            [run_id],
        ).fetchall()
        notes = con.execute("SELECT time, text FROM notes WHERE run_id = ? ORDER BY time", [run_id]).fetchall()
        stages = [r[0] for r in con.execute("SELECT stage FROM stages WHERE run_id = ?", [run_id]).fetchall()]
        warnings = con.execute("SELECT warnings FROM run_rows WHERE run_id = ?", [run_id]).fetchone()[0]
    if args.format == "json":
        import json

        doc = {k: run.get(k) for k in RUN_FIELDS}
        doc["time"] = run.get("started")
        doc["params_by_file"] = [{"file": f, "name": n, "value": v} for f, n, v in params]
        doc["metrics_by_file"] = [{"file": f, "name": n, "value": v} for f, n, v, *_ in metrics]
        doc["steps"] = [
            {"file": f, "name": n, "count": c, "min": lo, "max": hi, "last": last, "last_step": ls}
            for f, n, c, lo, hi, last, ls in series
        ]
        doc["notes"] = [{"time": t, "text": x} for t, x in notes]
        doc["stages"] = stages
        doc["warnings"] = json.loads(warnings or "[]")
        print(json.dumps(output.json_value(doc), indent=2, ensure_ascii=True))
        return 0
    fields = [{"field": k, "value": run.get(k)} for k in RUN_FIELDS if k not in ("params", "metrics")]
    fields += [{"field": "stages", "value": ", ".join(stages) or None}]
    output.write(fields, ["field", "value"], args.format, sys.stdout, truncate=False)
    print()
    output.write(
        [{"file": f, "param": n, "value": v} for f, n, v in params], ["file", "param", "value"], args.format, sys.stdout
    )
    print()
    output.write(
        [{"file": f, "metric": n, "value": v} for f, n, v, *_ in metrics],
        ["file", "metric", "value"],
        args.format,
        sys.stdout,
    )
    if series:
        print()
        output.write(
            [
                {"file": f, "series": n, "steps": c, "min": lo, "max": hi, "last": last, "last step": ls}
                for f, n, c, lo, hi, last, ls in series
            ],
            ["file", "series", "steps", "min", "max", "last", "last step"],
            args.format,
            sys.stdout,
        )
    import json

    from mlci_tui.sanitize import markdown_cell

    def shown(text: str) -> str:
        # in Markdown every line is markup: escape it line by line, as a cell is
        if args.format == "md":
            return "\n".join(markdown_cell(line) for line in text.split("\n"))
        return display(text, multiline=True)

    for when, text in notes:
        print(f"\nnote ({output.cell_text(when)}):\n{shown(text)}")
    for warning in json.loads(warnings or "[]"):
        print(f"warning: {shown(warning)}")
    return 0


def _append_about(args: argparse.Namespace, build: Any) -> int:
    repo = Repo.find()
    with open_ledger(repo) as con:
        run_id = _resolve(repo, con, args.run)
    event = build(run_id)
    LedgerStore(repo).append([event])
    return run_id  # type: ignore[return-value]


def tag(args: argparse.Namespace) -> int:
    from mlci_tui.ledger import events

    run_id = _append_about(args, lambda rid: events.tag(rid, args.name, remove=args.remove))
    say(f"{'untagged' if args.remove else 'tagged'} {str(run_id)[:8]} {args.name}")
    return 0


def note(args: argparse.Namespace) -> int:
    from mlci_tui.ledger import events

    run_id = _append_about(args, lambda rid: events.note(rid, args.text))
    say(f"noted on {str(run_id)[:8]}")
    return 0


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "record",
        record,
        "record the working tree's params and metrics as a run (workspace, or ci with --commit)",
        "mlci record -m 'try lr 0.01' --name lr-0.01",
    )
    p.add_argument("-m", "--message", help="what this run is about")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--commit", metavar="REV", help="record a `ci` run linked to this commit")
    p = add_command(
        sub,
        "capture",
        capture,
        "capture commits from their committed files (no checkout)",
        "mlci capture --range origin/main..HEAD",
    )
    p.add_argument("revs", nargs="*", metavar="REV", help="commits to capture (default HEAD)")
    p.add_argument("--range", dest="range_spec", metavar="A..B", help="every commit in A..B")
    p = add_command(sub, "runs", runs, "list runs", "mlci runs --where \"kind = 'commit'\" --sort -acc --limit 5")
    p.add_argument("--where", help="SQL predicate over the runs view, e.g. \"metrics['acc'] > 0.9\"")
    p.add_argument("--sort", help="column, metric or param name; prefix - for descending (default -time)")
    p.add_argument("--limit", type=int, help="at most N runs (default 50 in a table, all otherwise; 0 = all)")
    p.add_argument("--all-params", action="store_true", help="show every param, not only those that differ")
    add_format_options(p)
    p = add_command(sub, "show", show, "show one run: fields, params, metrics, steps, tags, notes", "mlci show HEAD~1")
    p.add_argument("run", help="run id or prefix, promoted stage, or commit-ish")
    add_format_options(p)
    p = add_command(
        sub,
        "sql",
        sql,
        "run a read-only SQL query over the ledger views",
        "mlci sql \"SELECT run_id, metrics['acc'] FROM runs\"",
    )
    p.add_argument("query")
    add_format_options(p)
    p = add_command(sub, "tag", tag, "tag a run (or remove a tag)", "mlci tag HEAD baseline")
    p.add_argument("run")
    p.add_argument("name")
    p.add_argument("--remove", action="store_true", help="remove the tag instead")
    p = add_command(sub, "note", note, "attach a note to a run", "mlci note HEAD 'lr too high, diverged'")
    p.add_argument("run")
    p.add_argument("text")
