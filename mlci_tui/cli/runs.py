"""`mlci record`, `capture`, `runs`, `show`, `sql`, `tag`, `note`, `export`: runs into the ledger, and read back.

`record` and `capture` are typed command functions: their handlers (`*_handler`) only read
the arguments, and the CI steps (ci/steps.py) call them directly.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlci_tui import output
from mlci_tui.cli.console import notice, open_ledger, resolve_ref, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options, add_table_options
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    from mlci_tui import config as config_mod
    from mlci_tui.ledger.query.run import Run

RUN_TABLE_COLUMNS = ["run", "time", "kind", "branch", "commit", "message"]
WHERE_HELP = (
    'filter: the TUI\'s language ("acc > 0.9 and lr in (0.1, 0.01)"), else a SQL predicate over the '
    "runs view (\"metrics['acc'] > 0.9\"); `sql:` forces SQL"
)


def record_handler(args: argparse.Namespace) -> int:
    """record the working tree's params and metrics as a run (workspace, or ci with --commit)

    Example: mlci record -m 'try lr 0.01' --name lr-0.01
    """
    return record(Repo.find(), message=args.message, commit=args.commit, name=args.name, repeat=args.repeat)


def record(
    repo: Repo,
    *,
    message: str | None = None,
    commit: str | None = None,
    name: str | None = None,
    repeat: int | None = None,
) -> int:
    """`mlci record`: the working tree's params and metrics as a run (a `ci` run of `commit` if given);
    `repeat` (-1: the next free index) records it as that repeat of the commit, a group's member."""
    from mlci_tui import config as config_mod
    from mlci_tui.capture.build import capture_workspace, repeat_id
    from mlci_tui.ledger.store import LedgerStore

    cfg = config_mod.load(repo.root)
    store = LedgerStore(repo)
    index = repeat
    if repeat is not None and repeat < 0:  # the next index no run of this kind and commit holds
        sha = repo.commit_of(commit or "HEAD")
        kind = "ci" if commit else "workspace"
        index = 0
        while sha and store.has_ids([repeat_id(kind, sha, index)]):
            index += 1
    rec = capture_workspace(repo, cfg, message=message, commit_rev=commit, name=name, repeat=index)
    if index is not None and store.has_ids([rec["run_id"]]):
        raise InputError(
            f"--repeat {index}: that repeat of {rec['commit'][:12]} is recorded already (run {rec['run_id'][:8]})"
        )
    store.append([rec])
    for warning in rec.get("warnings", []):
        notice(f"warning: {warning}")
    what = f" (repeat {index} of {rec['commit'][:8]})" if index is not None else ""
    say(f"recorded {rec['kind']} run {rec['run_id'][:8]} ({rec['run_id']}){what}")
    return 0


def capture_handler(args: argparse.Namespace) -> int:
    """capture commits from their committed files (no checkout)

    Example: mlci capture --range origin/main..HEAD
    """
    return capture(Repo.find(), args.revs, range_spec=args.range_spec)


def capture(repo: Repo, revs: list[str] | None = None, *, range_spec: str | None = None) -> int:
    """`mlci capture [REV...] [--range A..B]`: runs from the committed files (no REV and no range: HEAD)."""
    from mlci_tui import config as config_mod
    from mlci_tui.capture.write import capture_revs

    config_mod.load(repo.root)  # a broken working-tree config is reported before any work
    revs = revs or ([] if range_spec else ["HEAD"])
    report = capture_revs(repo, revs, range_spec=range_spec)
    for rec in report.added:
        say(f"captured {rec['commit'][:12]} as run {rec['run_id'][:8]}")
    if report.present:
        say(f"{len(report.present)} commit(s) already in the ledger")
    if report.empty:
        say(f"{len(report.empty)} commit(s) hold no params or metrics files: no run")
    return 0


def _listing_memo(repo: Repo, args: argparse.Namespace) -> tuple[Path, str, str | None] | None:
    """Where the full `runs --json/--csv` listing is memoised, the key it must carry, and the
    ledger tip it lists.

    The unfiltered listing is what scripts and editors ask for again and again; keyed by the
    ledger tip (plus cache schema and mlci version) it is served without importing DuckDB,
    byte for byte what the query would print. Not when the listing is read from the published
    segments (MLCI_LEDGER_READ=remote): the local tip does not name what that reads.
    """
    if args.format not in ("json", "csv") or args.where or args.sort or args.limit is not None or args.groups:
        return None
    if os.environ.get("MLCI_LEDGER_READ") == "remote":
        return None
    from mlci_tui import __version__
    from mlci_tui.ledger.cache import CACHE_SCHEMA
    from mlci_tui.ledger.refs import LEDGER_REF

    tip = repo.rev_parse(LEDGER_REF)
    key = f"mlci-listing {tip or '-'} {CACHE_SCHEMA} {__version__}"
    raw = ".raw" if args.raw and args.format == "csv" else ""  # `--raw` keeps formulas: a listing of its own
    return repo.state_dir / f"runs-listing.{args.format}{raw}", key, tip


def runs(args: argparse.Namespace) -> int:
    """list runs

    Example: mlci runs --where "kind = 'commit'" --sort -acc --limit 5
    """
    repo = Repo.find()
    memo = _listing_memo(repo, args)
    if memo is None:
        return _runs(repo, args, sys.stdout)
    listing = _memoised_listing(repo, args, memo)
    if listing is not None:
        sys.stdout.write(listing)
        return 0
    buffer = io.StringIO()
    code = _runs(repo, args, buffer)
    sys.stdout.write(buffer.getvalue())
    if code == 0 and _listing_memo(repo, args) == memo:  # the ledger did not move meanwhile
        _write_memo(memo[0], memo[1], buffer.getvalue())
    return code


def _memoised_listing(repo: Repo, args: argparse.Namespace, memo: tuple[Path, str, str | None]) -> str | None:
    """The full listing without a query, when it can be had byte for byte: the memo at this
    tip, or the memo of an earlier tip with the runs added since (`_memo_with_new_runs`), while
    the cache exists (a dropped cache drops the memo derived from it); with no cache, rendered
    from the records (`listing.listed_from_records`: a fresh clone's first listing, no cache
    built). Either rewrites the memo. None: the query answers (and rewrites the memo)."""
    from mlci_tui.ledger.cache import CACHE_NAME

    path, key, tip = memo
    if not (repo.state_dir / CACHE_NAME).exists():
        listing = _listing_from_records(repo, args, tip)
    else:
        try:
            with open(path, encoding="utf-8") as held_file:
                held = held_file.readline().rstrip("\n")
                if held == key:
                    return held_file.read()
                listing = _memo_with_new_runs(repo, args, held, key, held_file.read())
        except OSError:
            return None
    if listing is not None:
        try:
            _write_memo(path, key, listing)
        except OSError:
            pass  # a read-only .git: the listing is printed all the same
    return listing


def _listing_from_records(repo: Repo, args: argparse.Namespace, tip: str | None) -> str | None:
    """The full listing rendered from the ledger's records through the one formatter, or None
    when the ledger holds anything `listed_from_records` cannot render exactly."""
    from mlci_tui.ledger.query.listing import listed_from_records
    from mlci_tui.ledger.query.run import LISTED_FIELDS
    from mlci_tui.ledger.store import LedgerStore

    runs = listed_from_records(LedgerStore(repo), tip) if tip else []
    if runs is None:
        return None
    out = io.StringIO()
    output.write([r.listed() for r in runs], LISTED_FIELDS, args.format, out, raw=args.raw)
    return out.getvalue()


def _write_memo(path: Path, key: str, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # a clone that never built a cache has no .git/mlci
    tmp.write_text(key + "\n" + text, encoding="utf-8")
    os.replace(tmp, path)


def _memo_with_new_runs(repo: Repo, args: argparse.Namespace, held: str, key: str, text: str) -> str | None:
    """The memoised listing brought up to `key`'s tip without a query: when the ledger only
    gained runs since the memo's tip (a capture, a record) and they all sort before its first
    row, their rows (through the one formatter) go in front. None: the query rebuilds it."""
    old, new = held.split(" "), key.split(" ")
    if len(old) != 4 or old[0] != "mlci-listing" or old[2:] != new[2:] or "-" in (old[1], new[1]):
        return None
    from mlci_tui.ledger.query.listing import newest_first, runs_added
    from mlci_tui.ledger.query.run import LISTED_FIELDS
    from mlci_tui.ledger.store import LedgerStore

    added = runs_added(LedgerStore(repo), old[1], new[1])
    if not added or any(r.run_id in text for r in added):  # a run listed already: the query decides
        return None
    rows = io.StringIO()
    output.write([r.listed() for r in newest_first(added)], LISTED_FIELDS, args.format, rows, raw=args.raw)
    head = rows.getvalue()
    if args.format == "json":
        if text == "[]\n":
            return head
        if not (
            text.startswith("[\n  ") and _listed_before(head[:-3].rsplit("\n  ", 1)[-1], text[4:].split("\n", 1)[0])
        ):
            return None
        return head[:-3] + ",\n  " + text[4:]
    header, _, body = text.partition("\n")
    if not head.startswith(header + "\n") or (body and not _csv_before(head, text)):
        return None
    return head + body


def _sort_fields(row: dict[str, Any]) -> tuple[str, str, str]:
    """(started or time, time, run id) of a listed row, as formatted: fixed-width ISO times."""
    return (str(row.get("started") or row.get("time") or ""), str(row.get("time") or ""), str(row.get("run_id")))


def _before(last_new: dict[str, Any], first_old: dict[str, Any]) -> bool:
    """Whether a new row sorts before an old one (newest first, then the run id)."""
    new, old = _sort_fields(last_new), _sort_fields(first_old)
    return new[:2] > old[:2] or (new[:2] == old[:2] and new[2] < old[2])


def _listed_before(new_line: str, old_line: str) -> bool:
    import json

    try:
        return _before(json.loads(new_line.rstrip(",")), json.loads(old_line.rstrip(",")))
    except ValueError:
        return False


def _csv_before(head: str, text: str) -> bool:
    """Whether the last row of CSV `head` sorts before the first of CSV `text` (a cell may hold
    a newline: both are read as CSV, not as lines)."""
    import csv

    new = list(csv.DictReader(io.StringIO(head)))
    old = next(iter(csv.DictReader(io.StringIO(text))), None)
    return bool(new) and old is not None and _before(new[-1], old)


def _runs(repo: Repo, args: argparse.Namespace, out: TextIO) -> int:
    from mlci_tui.ledger.query.listing import list_runs
    from mlci_tui.ledger.query.run import LISTED_FIELDS

    limit = args.limit if args.limit is not None else (50 if args.format in ("table", "md") else 0)
    with open_ledger(repo) as con:
        listing = list_runs(con, where=args.where, sort=args.sort, limit=limit)
    runs = listing.runs
    if args.groups:
        metrics = [k for k in listing.metric_keys if any(k in r.metrics for r in runs)]
        return _group_table(repo, args, runs, metrics, out)
    if args.format in ("json", "csv"):
        output.write([r.listed() for r in runs], LISTED_FIELDS, args.format, out, raw=args.raw)
        return 0
    wide = getattr(args, "wide", False)
    shown_metrics = [k for k in listing.metric_keys if any(k in r.metrics for r in runs)]
    from mlci_tui.ledger.query.runs_view import metric_priority

    cfg = _listing_config(repo)
    gated = [k for k in (cfg.gated_metrics() if cfg else []) if k in shown_metrics]
    shown_metrics = metric_priority(shown_metrics, cfg.direction if cfg else lambda _m: None, gated)
    shown_params = [k for k in listing.param_keys if args.all_params or _differs(runs, k)]
    if not wide:
        shown_metrics, shown_params = shown_metrics[:8], shown_params[:6]
    table = []
    for r in runs:
        row: dict[str, Any] = {
            "run": r.run_id[:8],
            "time": r.started,
            "kind": (r.kind or "") + (" (stale)" if r.stale else ""),
            "branch": r.branch,
            "commit": (r.commit or "")[:8],
            "message": r.subject if wide else r.subject[:40],
        }
        for k in shown_metrics:
            row[k] = r.metrics.get(k)
        for k in shown_params:
            row[k] = _param_cell(r.params.get(k))
        table.append(row)
    priority = ["run", "message", *shown_metrics, *shown_params, "commit", "time", "kind", "branch"]
    hidden = output.write(
        table,
        RUN_TABLE_COLUMNS + shown_metrics + shown_params,
        args.format,
        out,
        width=None if wide else output.terminal_width(out),
        priority=priority,
        essential=2 + len(gated),  # id, subject, the gate's metrics
        shrink=["message", "branch"],
        precision=args.precision,
        truncate=not wide,
    )
    if args.format != "table":
        return 0
    _more_columns(hidden, out)
    if listing.total > len(runs):
        _below(f"({len(runs)} of {listing.total} runs; --limit 0 shows all)", out)
    elif not runs:
        _below("no runs yet: commit params/metrics files with the hooks installed, or run `mlci capture`", out)
    return 0


def _more_columns(hidden: list[str], out: TextIO) -> None:
    """The line under a table that left columns out (`output.write`'s answer)."""
    if hidden:
        _below(f"({len(hidden)} more columns: --wide)", out)


def _below(text: str, out: TextIO) -> None:
    """A line under a table, wrapped within the table's width."""
    print(output.fit_text(text, output.terminal_width(out)), file=out)


def _group_table(repo: Repo, args: argparse.Namespace, runs: list[Run], metrics: list[str], out: TextIO) -> int:
    """`runs --groups`: one row per group of repeats (one commit, params equal but the seed), its
    metrics as `mean ± sd (n)` (docs/user-guide.md: repeats and groups). The table fits the
    terminal as `mlci runs` does: the id, the subject and the gate's metrics first."""
    from mlci_tui import config as config_mod
    from mlci_tui.ledger.query.groups import group_runs
    from mlci_tui.ledger.query.runs_view import metric_priority

    cfg = config_mod.load(repo.root)
    seed = cfg.section("train")["repeats"]["seed_param"]
    wide = args.wide or args.format in ("json", "csv")
    gated = [k for k in cfg.gated_metrics() if k in metrics]
    if args.format in ("table", "md"):
        metrics = metric_priority(metrics, cfg.direction, gated)
    if not wide:
        metrics = metrics[:8]
    table = []
    for group in group_runs(runs, seed):
        first = group.runs[0]
        row: dict[str, Any] = {
            "run": first.run_id[:8],
            "runs": group.n,
            "kind": ", ".join(sorted({r.kind or "" for r in group.runs})),
            "commit": (first.commit or "")[:8],
            "message": first.subject if wide else first.subject[:40],
        }
        for k in metrics:
            summary = group.summary(k)
            row[k] = output.Spread(*summary) if summary else first.metrics.get(k)
        table.append(row)
    hidden = output.write(
        table,
        ["run", "runs", "kind", "commit", "message", *metrics],
        args.format,
        out,
        width=None if wide else output.terminal_width(out),
        priority=["run", "message", *metrics, "runs", "commit", "kind"],
        essential=2 + len(gated),
        shrink=["message", "kind"],
        precision=args.precision,
        truncate=not wide,
    )
    _more_columns(hidden, out)
    return 0


def _listing_config(repo: Repo) -> config_mod.Config | None:
    """The config whose gate rules and directions order the columns; None when it is broken
    (reported by the commands that use it, not by a listing). Loaded here: the memoised and
    fresh-clone `runs --json` never read the config."""
    from mlci_tui import config as config_mod

    try:
        return config_mod.load(repo.root)
    except Exception:  # noqa: BLE001
        return None


def _param_cell(value: str | None) -> Any:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return number if re.fullmatch(r"[-+0-9.eE]+", value) else value


def _differs(runs: list[Run], key: str) -> bool:
    return len({r.params.get(key) for r in runs}) > 1


def sql(args: argparse.Namespace) -> int:
    """run a read-only SQL query over the ledger views

    Example: mlci sql "SELECT run_id, metrics['acc'] FROM runs"
    """
    from mlci_tui.ledger.query.sql import run_sql

    repo = Repo.find()
    with open_ledger(repo) as con:
        names, rows = run_sql(con, args.query)
    if names:  # the columns by their order in the query, as many as fit (`--wide`: all)
        hidden = output.write(
            rows,
            names,
            args.format,
            sys.stdout,
            raw=args.raw,
            width=None if args.wide else output.terminal_width(sys.stdout),
            precision=args.precision,
            truncate=not args.wide,
            fold=False,  # columns from the left, the rest behind --wide
        )
        _more_columns(hidden, sys.stdout)
    return 0


def show(args: argparse.Namespace) -> int:
    """show one run: fields, params, metrics, steps, tags, notes

    Example: mlci show HEAD~1
    """
    from mlci_tui.ledger.query.detail import read_detail
    from mlci_tui.ledger.query.run import LISTED_FIELDS

    repo = Repo.find()
    with open_ledger(repo) as con:
        run_id = resolve_ref(repo, con, args.run).run_id
        detail = read_detail(con, run_id, points=False, validations=False)
    if detail is None:
        raise InputError(f"run {run_id} is not in the ledger")
    run = detail.run
    from mlci_tui.ledger.query.branches import commit_branches

    branches = commit_branches(repo, [run.commit or ""]).get(run.commit or "", [])  # now, from the refs
    params = sorted(detail.params)  # by file, then name: the files as they are on disk
    metrics = sorted((m.file, m.name, m.value) for m in detail.metrics)
    series = detail.series_stats
    if args.format == "json":
        import json

        doc = run.listed()
        doc["time"] = run.started
        doc["branches"] = branches
        doc["params_by_file"] = [{"file": f, "name": n, "value": v} for f, n, v in params]
        doc["metrics_by_file"] = [{"file": f, "name": n, "value": v} for f, n, v in metrics]
        doc["steps"] = [
            {
                "file": s.file,
                "name": s.name,
                "count": s.count,
                "min": s.low,
                "max": s.high,
                "last": s.last,
                "last_step": s.last_step,
            }
            for s in series
        ]
        doc["notes"] = [{"time": t, "text": x} for _id, t, x in detail.notes]
        doc["stages"] = detail.stages
        doc["warnings"] = run.warnings
        print(json.dumps(output.json_value(doc), indent=2, ensure_ascii=True))
        return 0
    fields = [{"field": k, "value": getattr(run, k)} for k in LISTED_FIELDS if k not in ("time", "params", "metrics")]
    fields += [{"field": "branches", "value": ", ".join(branches) or None}]
    fields += [{"field": "stages", "value": ", ".join(detail.stages) or None}]
    # every column of these tables matters: long values wrap within the terminal (output.py)
    width = output.terminal_width(sys.stdout) if args.format == "table" else None
    write = functools.partial(output.write, fmt=args.format, out=sys.stdout, width=width, fold=True)
    write(fields, ["field", "value"], truncate=False)
    print()
    write([{"file": f, "param": n, "value": v} for f, n, v in params], ["file", "param", "value"])
    print()
    write([{"file": f, "metric": n, "value": v} for f, n, v in metrics], ["file", "metric", "value"])
    if series:
        print()
        write(
            [
                {
                    "file": s.file,
                    "series": s.name,
                    "steps": s.count,
                    "min": s.low,
                    "max": s.high,
                    "last": s.last,
                    "last step": s.last_step,
                }
                for s in series
            ],
            ["file", "series", "steps", "min", "max", "last", "last step"],
        )
    from mlci_tui.sanitize import markdown_cell

    def shown(text: str) -> str:
        # in Markdown every line is markup: escape it line by line, as a cell is
        if args.format == "md":
            return "\n".join(markdown_cell(line) for line in text.split("\n"))
        return output.fit_text(display(text, multiline=True), width)

    for _id, when, text in detail.notes:
        print(f"\nnote ({output.cell_text(when)}):\n{shown(text)}")
    for warning in run.warnings:
        print(shown(f"warning: {warning}"))
    return 0


def _run_of(args: argparse.Namespace) -> tuple[Repo, str]:
    repo = Repo.find()
    with open_ledger(repo) as con:
        return repo, resolve_ref(repo, con, args.run).run_id


def tag(args: argparse.Namespace) -> int:
    """tag a run (or remove a tag)

    Example: mlci tag HEAD baseline
    """
    from mlci_tui.ledger.annotate import add_tag

    repo, run_id = _run_of(args)
    add_tag(repo, run_id, args.name, remove=args.remove)
    say(f"{'untagged' if args.remove else 'tagged'} {run_id[:8]} {args.name}")
    return 0


def note(args: argparse.Namespace) -> int:
    """attach a note to a run

    Example: mlci note HEAD 'lr too high, diverged'
    """
    from mlci_tui.ledger.annotate import add_note

    repo, run_id = _run_of(args)
    add_note(repo, run_id, args.text)
    say(f"noted on {run_id[:8]}")
    return 0


def export(args: argparse.Namespace) -> int:
    """export runs, params, metrics and steps to Parquet, CSV or JSON (chosen by the file's extension)

    Example: mlci export runs.parquet
    """
    from mlci_tui.ledger.query.export import export as write_export

    finish = functools.partial(output.inert_csv_file, raw=args.raw)
    written = write_export(
        Repo.find(), Path(args.file), table=args.table, where=args.where, force=args.force, finish_csv=finish
    )
    for path in written:
        say(f"wrote {path}")
    return 0


def _add_raw(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--raw", action="store_true", help="CSV: keep a text cell's leading = + - @ (default: prefixed with ')"
    )


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "record", record_handler)
    p.add_argument("-m", "--message", help="what this run is about")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--commit", metavar="REV", help="record a `ci` run linked to this commit")
    p.add_argument(
        "--repeat",
        nargs="?",
        type=int,
        const=-1,
        metavar="I",
        help="record repeat I (default: the next) of the commit, e.g. another seed: repeats form a group",
    )
    p = add_command(sub, "capture", capture_handler)
    p.add_argument("revs", nargs="*", metavar="REV", help="commits to capture (default HEAD)")
    p.add_argument("--range", dest="range_spec", metavar="A..B", help="every commit in A..B")
    p = add_command(sub, "runs", runs)
    p.add_argument("--where", help=WHERE_HELP)
    p.add_argument("--sort", help="column, metric or param name; prefix - for descending (default -time)")
    p.add_argument("--limit", type=int, help="at most N runs (default 50 in a table, all otherwise; 0 = all)")
    p.add_argument("--all-params", action="store_true", help="show every param, not only those that differ")
    p.add_argument("--groups", action="store_true", help="one row per group of repeats, its metrics as mean ± sd (n)")
    add_format_options(p)
    add_table_options(p)
    _add_raw(p)
    p = add_command(sub, "show", show)
    p.add_argument("run", help="run id or prefix, promoted stage, or commit-ish")
    add_format_options(p)
    p = add_command(sub, "sql", sql)
    p.add_argument("query")
    add_format_options(p)
    add_table_options(p)
    _add_raw(p)
    p = add_command(sub, "tag", tag)
    p.add_argument("run")
    p.add_argument("name")
    p.add_argument("--remove", action="store_true", help="remove the tag instead")
    p = add_command(sub, "note", note)
    p.add_argument("run")
    p.add_argument("text")

    p = add_command(sub, "export", export)
    p.add_argument(
        "file",
        help="FILE.parquet or FILE.json (one row per run, params/metrics/steps nested), "
        "or FILE.csv (flat: FILE.runs.csv, FILE.params.csv, FILE.metrics.csv, FILE.steps.csv)",
    )
    p.add_argument(
        "--table", choices=("runs", "params", "metrics", "steps"), help="write only this flat table, to FILE itself"
    )
    p.add_argument("--where", help=WHERE_HELP)
    p.add_argument("--force", action="store_true", help="replace existing files")
    _add_raw(p)
