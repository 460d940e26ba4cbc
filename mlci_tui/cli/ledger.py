"""`mlci ledger push/pull/compact/publish/query/redact/fsck/status/resolve`: share and look after the ledger ref.

`push` and `pull` are typed command functions: their handlers only read the arguments, and
`mlci ci run` (ci/steps.py) calls them directly, so each prints what it prints in one place.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlci_tui import config as config_mod
from mlci_tui.cli.console import notice, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options, command_group
from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    import duckdb


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    lsub = command_group(sub, "ledger", "share, compact, redact and check the ledger")
    for name, handler, help_text in (
        ("push", ledger_push, "pull, union-merge and push the ledger"),
        ("pull", ledger_pull, "fetch and union-merge the remote ledger"),
    ):
        p = add_command(lsub, name, handler, help_text, f"mlci ledger {name} origin")
        p.add_argument("remote", nargs="?", help="remote name (default ledger.remote, else origin)")
        p.add_argument("-r", "--remote", dest="remote_opt", help="remote name")
        p.add_argument("--force-merge", action="store_true", help="merge even a rewritten remote ledger")
    p = add_command(lsub, "compact", ledger_compact)
    p.add_argument(
        "--auto", action="store_true", help="only past the loose-record threshold, quietly (the post-commit hook)"
    )
    p = add_command(lsub, "publish", ledger_publish)
    p.add_argument("-r", "--remote", help="data remote name (default data.remote)")
    p = add_command(lsub, "query", ledger_query)
    p.add_argument("query", help="one SELECT over the ledger's views (as `mlci sql`)")
    p.add_argument("-r", "--remote", help="data remote the segments were published to (default data.remote)")
    add_format_options(p)
    p = add_command(lsub, "redact", ledger_redact)
    p.add_argument("id", help="the full id of the record (a run id, or a note's id)")
    p.add_argument("--reason", help="why, kept with the tombstone")
    p = add_command(lsub, "fsck", ledger_fsck)
    p.add_argument("--repair", action="store_true", help="move every bad file into quarantine/ (one ledger commit)")
    add_command(lsub, "status", ledger_status)
    p = add_command(lsub, "resolve", ledger_resolve)
    p.add_argument("id", nargs="?", help="the record id of an open conflict")
    p.add_argument("--keep", help="ours (this clone's body), theirs (the incoming one) or a conflict's blob id")
    p.add_argument("--list", action="store_true", help="list the open conflicts")


def ledger_push(args: argparse.Namespace) -> int:
    return push(Repo.find(), args.remote_opt or args.remote, force_merge=args.force_merge)


def ledger_pull(args: argparse.Namespace) -> int:
    return pull(Repo.find(), args.remote_opt or args.remote, force_merge=args.force_merge)


def push(repo: Repo, remote: str | None = None, *, force_merge: bool = False) -> int:
    """`mlci ledger push`, for its handler and the CI step alike (remote None: ledger.remote, else origin)."""
    from mlci_tui.ledger import sync
    from mlci_tui.sweep.deliver import fold, forget

    remote = remote or config_mod.load(repo.root).remote
    compact_ledger(repo, auto=True)  # past the threshold: a remote and its clones get segments, not loose files
    folded = fold(repo, remote)  # trial results a CI job left on its own ref go up with this push
    result = sync.push(repo, remote, force_merge=force_merge)
    forget(repo, remote, folded.merged)  # the remote's ledger holds them now
    for n in result.notices:
        notice(n)
    _say_folded(folded.merged, folded.refused, remote)
    say(f"ledger pushed to {remote}" if result.pushed else f"ledger on {remote} is up to date")
    _notice_conflicts(repo)
    return 0


def pull(repo: Repo, remote: str | None = None, *, force_merge: bool = False) -> int:
    """`mlci ledger pull`, for its handler and the CI step alike (remote None: ledger.remote, else origin)."""
    from mlci_tui.ledger import sync
    from mlci_tui.ledger.store import LedgerStore
    from mlci_tui.sweep.deliver import fold

    remote = remote or config_mod.load(repo.root).remote
    result = sync.pull(repo, remote, force_merge=force_merge)
    folded = fold(repo, remote)  # the remote keeps the refs until a push lands them in its ledger
    for n in result.notices:
        notice(n)
    _say_folded(folded.merged, folded.refused, remote)
    if result.fetched is None and not folded.merged:
        say(f"{remote} has no ledger yet")
    else:
        say(f"ledger merged from {remote}: tip {(LedgerStore(repo).tip() or '')[:12]}")
    _notice_conflicts(repo)
    return 0


def _say_folded(merged: list[str], refused: list[str], remote: str) -> None:
    """What a pull or push did with the remote's incoming trial refs (refs/mlci/incoming/*)."""
    if merged:
        say(f"folded {len(merged)} incoming trial result(s) from {remote}")
    for line in refused:
        notice(display(f"warning: incoming ref on {remote} not merged: {line}"))


def _notice_conflicts(repo: Repo) -> None:
    """Records a merge kept against another body for the same id: said after every pull and push."""
    from mlci_tui.ledger.conflicts import open_conflicts
    from mlci_tui.ledger.store import LedgerStore

    found = open_conflicts(LedgerStore(repo))
    if found:
        ids = ", ".join(sorted({c.id[:8] for c in found})[:5])
        notice(
            f"warning: {len(found)} open ledger conflict(s) ({ids}): this clone kept its own records; "
            "`mlci ledger resolve --list`"
        )


def ledger_compact(args: argparse.Namespace) -> int:
    """pack loose records into deterministic Parquet segments (one per id bucket) and repack

    With --auto, only when the loose event files pass the threshold (the post-commit hook
    starts it in the background; `ledger push` compacts the same way before pushing).

    Example: mlci ledger compact
    """
    repo = Repo.find()
    count = compact_ledger(repo, auto=args.auto)
    if not args.auto or count:
        say(f"compacted: {count} records in Parquet segments")
    return 0


def compact_ledger(repo: Repo, *, auto: bool = False) -> int:
    """Compact (with `auto`: only past `compact.AUTO_THRESHOLD` loose files), then repack the
    repository when anything was written. One compaction at a time per clone (a lock file):
    a second hook fired meanwhile returns at once."""
    import fcntl

    from mlci_tui.ledger.compact import AUTO_THRESHOLD, compact, loose_count, repack
    from mlci_tui.ledger.store import LedgerStore

    store = LedgerStore(repo)
    tip = store.tip()
    if tip is None or (auto and loose_count(repo, tip) < AUTO_THRESHOLD):
        return 0
    trailer = _compaction_signature(repo, lenient=auto)
    repo.state_dir.mkdir(parents=True, exist_ok=True)
    with open(repo.state_dir / "compact.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if auto else 0))
        except BlockingIOError:
            return 0
        count = compact(store, min_loose=AUTO_THRESHOLD if auto else 0, trailer=trailer)
        if store.tip() != tip:
            repack(repo)
    return count


def _compaction_signature(repo: Repo, *, lenient: bool) -> Callable[[str], str] | None:
    """What signs a compaction (`ledger.trust.signing_key` set), or None. `lenient` (the automatic
    compaction, in the background): a key that cannot sign leaves the compaction unsigned, with
    a warning, rather than leaving the ledger uncompacted; else the error stops it."""
    trust = config_mod.load(repo.root).section("ledger")["trust"]
    if not trust["signing_key"]:
        return None
    from mlci_tui.ledger import signed_compaction, signing

    principal = signing.principal_of(repo, trust["principal"])
    if not principal:
        raise InputError(
            "ledger.trust.signing_key is set: set ledger.trust.principal (or git's user.email) to sign with"
        )
    signed = signed_compaction.trailer(signing.key_path(repo.root, trust["signing_key"]), principal)
    if not lenient:
        return signed

    def or_unsigned(tree: str) -> str:
        try:
            return signed(tree)
        except InputError as exc:
            notice(f"{exc}; the compaction is not signed")
            return ""

    return or_unsigned


def ledger_publish(args: argparse.Namespace) -> int:
    """upload the compacted segments to the data remote and record them in the ledger

    Compacts first, then uploads each segment the remote lacks under the SHA-256 of its bytes
    (`<remote>/ledger/<sha256>.parquet`) and writes `published/manifest.json` into the ledger
    (push the ledger to share it). `mlci ledger query` then reads the segments from the remote,
    checked against the manifest, without building the local cache. Never run by a hook.

    Example: mlci ledger publish -r storage
    """
    from mlci_tui.data.remotes import open_remote
    from mlci_tui.ledger.publish import publish
    from mlci_tui.ledger.store import LedgerStore

    repo = Repo.find()
    fs, base, name = open_remote(repo.root, args.remote)
    compact_ledger(repo)
    result = publish(LedgerStore(repo), fs, base)
    say(
        f"published {result.segments} segments ({result.rows:,} records) to {name}: "
        f"{result.uploaded} uploaded ({result.bytes_uploaded:,} bytes), the rest there already; "
        + (
            "manifest recorded in the ledger (`mlci ledger push` shares it)"
            if result.manifest_written
            else "manifest unchanged"
        )
    )
    return 0


def ledger_query(args: argparse.Namespace) -> int:
    """run a read-only SQL query over the published segments, without the local cache

    DuckDB reads the segments `mlci ledger publish` recorded from the data remote through
    fsspec, each checked against its SHA-256 first (a changed object: exit 2, no answer), and
    the records published since from the local ledger.

    Example: mlci ledger query "SELECT count(*) FROM runs" -r storage
    """
    import sys

    from mlci_tui import output
    from mlci_tui.ledger.query.sql import run_sql

    with published_ledger(Repo.find(), args.remote) as con:
        names, rows = run_sql(con, args.query)
    if names:
        output.write(rows, names, args.format, sys.stdout)
    return 0


@contextmanager
def published_ledger(repo: Repo, remote: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The ledger's views over its published segments (`ledger query`, and every command that
    opens the ledger through `console.open_ledger` when MLCI_LEDGER_READ=remote): data remote
    `remote`, else MLCI_LEDGER_REMOTE, else data.remote."""
    import os

    from mlci_tui.data.remotes import open_remote
    from mlci_tui.ledger.remote_read import open_published
    from mlci_tui.ledger.store import LedgerStore

    fs, base, _name = open_remote(repo.root, remote or os.environ.get("MLCI_LEDGER_REMOTE") or None)
    repo.state_dir.mkdir(parents=True, exist_ok=True)  # what a cache build makes: `runs --json` memoises there
    with open_published(LedgerStore(repo), fs, base) as (con, read):
        if read.local_segments or read.local_records:
            notice(
                f"read {read.remote_segments} published segment(s) from the remote and, locally, "
                f"{read.local_records} record file(s) and {read.local_segments} segment(s) newer than the publish"
            )
        yield con


def ledger_redact(args: argparse.Namespace) -> int:
    """hide a record for good (a tombstone event)

    Example: mlci ledger redact 3kq2v5xw...
    """
    from mlci_tui.ledger import events
    from mlci_tui.ledger.store import LedgerStore

    repo = Repo.find()
    event = events.redact(args.id, args.reason)
    store = LedgerStore(repo)
    if args.id not in store.has_ids([args.id]):
        raise InputError(f"redact: no record {args.id} in the ledger")
    store.append([event])
    say(f"redacted {args.id}: hidden from every view; `mlci ledger compact` drops it")
    return 0


def ledger_fsck(args: argparse.Namespace) -> int:
    """check every file the cache reads: records, segments; --repair moves bad ones aside

    Exit 1 when a file is invalid (each printed as `path: reason`). With --repair, every bad
    file moves to `quarantine/<its path>` in the ledger tree (one ledger commit, nothing lost,
    nothing reads it) and the exit is 0.

    Example: mlci ledger fsck --repair
    """
    from mlci_tui.ledger.conflicts import conflict_lines
    from mlci_tui.ledger.store import LedgerStore
    from mlci_tui.ledger.verify import check_files, repair

    store = LedgerStore(Repo.find())
    tip = store.tip()
    verdict = check_files(store, store.entries(tip), tip)
    for w in verdict.warnings:
        notice(w)
    for p in verdict.lines():
        print(display(p))
    conflicts = conflict_lines(store)  # a record kept against another body: until `ledger resolve`
    for line in conflicts:
        print(display(line))
    if verdict.problems and args.repair and tip:
        for old, new in repair(store, (tip, verdict)).items():
            say(f"moved {old} -> {new}")
        say("ledger repaired: the bad files are in quarantine/ (`git ls-tree -r refs/mlci/ledger quarantine`)")
        return 0
    if verdict.problems:
        raise CheckFailed(
            f"{len(verdict.problems)} problem(s) in the ledger" + ("" if args.repair else "; --repair quarantines them")
        )
    if conflicts:
        raise CheckFailed(f"{len(conflicts)} open conflict(s) in the ledger (`mlci ledger resolve --list`)")
    say("ledger ok")
    return 0


def ledger_status(args: argparse.Namespace) -> int:
    """ledger tip, record count, remotes seen

    Example: mlci ledger status
    """
    from mlci_tui.ledger.conflicts import conflict_lines
    from mlci_tui.ledger.store import LedgerStore

    repo = Repo.find()
    store = LedgerStore(repo)
    tip = store.tip()
    entries = store.entries(tip) if tip else []
    say(f"ledger tip: {tip or '(empty)'}")
    say(
        f"records: {sum(1 for e in entries if e.path.startswith('events/'))} event files, "
        f"{sum(1 for e in entries if e.path.endswith('.parquet'))} segments"
    )
    for line in repo.text("for-each-ref", "--format=%(refname) %(objectname)", "refs/mlci-remote/").splitlines():
        if line.endswith("/ledger") or "/ledger " in line:
            say(f"seen: {line}")
    for line in conflict_lines(store):
        say(display(line))
    return 0


def ledger_resolve(args: argparse.Namespace) -> int:
    """decide an open conflict: keep this clone's record or the incoming one

    A merge never replaces a record with one that says something else: it keeps the
    incoming body at conflicts/<id>/<blob>.json until you decide. `theirs` puts it in
    place of this clone's; `ours` keeps this clone's. One ledger commit; push to share.

    Example: mlci ledger resolve 3kq2v5xw... --keep ours
    """
    from mlci_tui.ledger import conflicts
    from mlci_tui.ledger.store import LedgerStore

    store = LedgerStore(Repo.find())
    if args.list:
        found = conflicts.open_conflicts(store)
        for c in found:
            print(display(f"{c.id} {c.blob} {c.path}"))
        if not found:
            say("no open conflicts")
        return 0
    if not args.id or not args.keep:
        raise InputError("resolve: give a record id and --keep ours|theirs|BLOB, or --list")
    conflicts.resolve(store, args.id, args.keep)
    say(display(f"resolved {args.id}: kept {args.keep}; `mlci ledger push` shares the decision"))
    return 0
