"""`mlci data ...`: datasets versioned beside git (add, status, push, fetch, pull, checkout, gc,
import-url, update), and validated (`cli.validate` adds validate, profile, diff, infer).

The handlers parse arguments, call the core in `mlci_tui.data` and print; the core is
imported when a handler runs, so building the parser loads none of it. The commands a CI
step runs (`push`, `pull`, `update`) are typed functions their handlers (`*_handler`) call,
and so does `mlci ci run` (ci/steps.py): what they print is written once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlci_tui.cli import validate as validate_cli
from mlci_tui.cli.console import notice, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options, command_group
from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    from mlci_tui.data.import_url import Change
    from mlci_tui.data.transfer import TransferResult

LINK_MODES = ("auto", "reflink", "copy", "hardlink", "symlink")


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    group = command_group(sub, "data", "version datasets beside git, validate them")

    p = add_command(group, "add", add)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--link", choices=LINK_MODES, help="how the working copy relates to the cache (default data.link)")
    p.add_argument("--hash", choices=("blake3", "md5"), help="hash algorithm (default data.hash, blake3)")
    p.add_argument("-j", "--jobs", type=int, help="threads hashing a folder")

    p = add_command(group, "status", status)
    p.add_argument("paths", nargs="*", metavar="PATH", help="only these datasets")
    add_format_options(p)

    p = add_command(group, "push", push_handler)
    _remote_options(p)
    p = add_command(group, "fetch", fetch)
    _remote_options(p)
    p.add_argument("--rev", help="the versions the pointers at this commit name (default: the working tree's)")
    p = add_command(group, "pull", pull_handler)
    _remote_options(p)

    p = add_command(group, "checkout", checkout)
    p.add_argument("paths", nargs="*", metavar="PATH", help="only these datasets")
    p.add_argument("--force", action="store_true", help="overwrite unsaved local changes")
    p.add_argument("--link", choices=LINK_MODES, help="link mode (default data.link)")

    p = add_command(group, "gc", gc)
    p.add_argument("--all-commits", action="store_true", help="also keep what any commit of a branch or tag names")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument(
        "-r",
        "--remote",
        nargs="?",
        const="",
        metavar="NAME",
        help="collect this remote instead of the local cache (no NAME: data.remote); also keeps remote-tracking branches",
    )
    p.add_argument("-y", "--yes", action="store_true", help="delete from the remote without asking")
    p.add_argument(
        "--min-age", type=float, default=1.0, metavar="HOURS", help="never delete younger objects (default 1)"
    )
    p.add_argument("--no-fetch", dest="fetch", action="store_false", help="do not `git fetch --all --tags` first")
    p.add_argument("-j", "--jobs", type=int, help="parallel deletions (default data.jobs, else 4 x cores)")
    p.add_argument("--json", action="store_true", help="the counts (and, with --remote, the objects) as JSON")

    p = add_command(group, "import-url", import_url)
    p.add_argument("url", help="where the data comes from (no credentials in it: they come from the environment)")
    p.add_argument("path", help="where it goes in the repository (a pointer PATH.mlci is written beside it)")
    p.add_argument("--force", action="store_true", help="replace an existing file or pointer at PATH")
    _text_or_json(p)

    p = add_command(group, "update", update_handler)
    p.add_argument("paths", nargs="*", metavar="PATH", help="datasets to update (default: every imported one)")
    _text_or_json(p)

    validate_cli.add_data_commands(group)


def _remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="only these datasets (default: all)")
    p.add_argument("-r", "--remote", help="remote name from data.remotes (default data.remote)")
    p.add_argument("-j", "--jobs", type=int, help="parallel transfers (default data.jobs, else 4 x cores)")


def _text_or_json(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    group.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


def _targets(repo: Repo, paths: list[str] | None) -> list[str] | None:
    from mlci_tui.data.workspace import dataset_targets

    return dataset_targets(repo.root, paths, Path.cwd())


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ---------------------------------------------------------------------------- add, status
def add(args: argparse.Namespace) -> int:
    """track files or folders by content hash: PATH.mlci pointer in git, data in .mlci/cache

    Example: mlci data add data/customers.csv data/images
    """
    from mlci_tui.data.add import add_paths

    repo = Repo.find()
    pointers = add_paths(
        repo.root, args.paths, link=args.link, algo=args.hash, jobs=args.jobs, cwd=Path.cwd(), state_dir=repo.state_dir
    )
    for p in pointers:
        what = f"{p.nfiles} files, " if p.nfiles is not None else ""
        say(f"added {display(p.path)} ({what}{_size(p.size)}, {p.algo} {p.hash[:12]})")
    files = " ".join(display(p.pointer_path) for p in pointers)
    print(f"to version it: git add {files} .gitignore && git commit", file=sys.stderr)
    return 0


def status(args: argparse.Namespace) -> int:
    """datasets changed against their pointers (.mlci, .dvc, dvc.lock), and whether they are cached

    Example: mlci data status --json
    """
    from mlci_tui import output
    from mlci_tui.data.status import status as data_status

    repo = Repo.find()
    rows = [s.row() for s in data_status(repo.root, repo.state_dir, _targets(repo, args.paths))]
    if args.format == "json":
        output.write(rows, ["path", "pointer", "origin", "hash", "status", "in_cache", "changes"], "json", sys.stdout)
        return 0
    if not rows:
        say("no datasets tracked (add one with `mlci data add PATH`)")
        return 0
    for r in rows:
        counts: dict[str, int] = {}
        for c in r["changes"]:
            counts[c["change"]] = counts.get(c["change"], 0) + 1
        r["changes"] = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        r["cache"] = {True: "yes", False: "no", None: ""}[r["in_cache"]]
        r["hash"] = r["hash"][:12]
    output.write(rows, ["path", "status", "cache", "origin", "hash", "changes"], args.format, sys.stdout)
    return 0


# ---------------------------------------------------------------------------- push, fetch, pull, checkout
def push_handler(args: argparse.Namespace) -> int:
    """upload the objects the remote lacks

    Example: mlci data push -r storage -j 8
    """
    return push(Repo.find(), args.paths, remote=args.remote, jobs=args.jobs)


def fetch(args: argparse.Namespace) -> int:
    """download the objects the local cache lacks

    Example: mlci data fetch --rev origin/main
    """
    if args.rev:
        return fetch_at(Repo.find(), args.rev, args.paths, remote=args.remote, jobs=args.jobs)
    return _transfer(Repo.find(), "fetch", args.paths, args.remote, args.jobs)


def fetch_at(
    repo: Repo,
    rev: str,
    paths: list[str] | None = None,
    *,
    remote: str | None = None,
    jobs: int | None = None,
    settings: dict[str, Any] | None = None,
) -> int:
    """`mlci data fetch --rev REV`: the objects the mlci pointers at commit `rev` name, into the
    cache (the working tree is not touched): what a diff or a report against that commit reads."""
    from mlci_tui.data.add import parallel_jobs
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.pointer import POINTER_SUFFIX
    from mlci_tui.data.remotes import open_remote
    from mlci_tui.data.transfer import fetch as fetch_objects
    from mlci_tui.data.workspace import pointers_at

    sha = repo.commit_of(rev)
    if sha is None:
        raise InputError(f"--rev {display(rev)}: not a commit")
    targets = _targets(repo, paths)
    found, problems = pointers_at(repo, sha)
    for problem in problems:
        notice(problem)
    pointers = [p for p in found if targets is None or p.path in targets or p.path + POINTER_SUFFIX in targets]
    fs, base, name = open_remote(repo.root, remote, settings)
    result = fetch_objects(DataCache.for_repo(repo.root), pointers, fs, base, parallel_jobs(repo.root, jobs))
    _report("fetch", result, name)
    if result.failed or result.missing:
        raise CheckFailed(
            f"fetch of {sha[:12]}'s versions from {name} incomplete: "
            f"{len(result.failed)} failed, {len(result.missing)} missing"
        )
    return 0


def pull_handler(args: argparse.Namespace) -> int:
    """fetch, then check out what the pointers name

    Example: mlci data pull -r storage
    """
    return pull(Repo.find(), args.paths, remote=args.remote, jobs=args.jobs)


def checkout(args: argparse.Namespace) -> int:
    """make the working tree hold the versions the pointers name (from the local cache)

    Example: mlci data checkout --force data/customers.csv
    """
    return _checkout(Repo.find(), args.paths, force=args.force, link=args.link)


def push(repo: Repo, paths: list[str] | None = None, *, remote: str | None = None, jobs: int | None = None) -> int:
    """`mlci data push`: upload what the remote (None: data.remote) lacks; raises when incomplete."""
    return _transfer(repo, "push", paths, remote, jobs)


def pull(
    repo: Repo,
    paths: list[str] | None = None,
    *,
    remote: str | None = None,
    jobs: int | None = None,
    settings: dict[str, Any] | None = None,
) -> int:
    """`mlci data pull`: fetch, then check out; 1 when a dataset was left as it was (see `_checkout`).

    `settings`: the `data:` section naming the remote (default the working tree's; CI's PR job: the base's)."""
    _transfer(repo, "fetch", paths, remote, jobs, settings)  # an incomplete fetch raises: nothing is checked out
    return _checkout(repo, paths, force=False, link=None)


def _transfer(
    repo: Repo,
    verb: Literal["push", "fetch"],
    paths: list[str] | None,
    remote: str | None,
    jobs: int | None,
    settings: dict[str, Any] | None = None,
) -> int:
    from mlci_tui.data.transfer import sync

    result, name = sync(repo.root, verb, _targets(repo, paths), remote, jobs, settings)
    _report(verb, result, name)
    if result.failed or result.missing:
        direction, absent = ("to", "not cached") if verb == "push" else ("from", "missing")
        raise CheckFailed(
            f"{verb} {direction} {name} incomplete: {len(result.failed)} failed, {len(result.missing)} {absent}"
        )
    return 0


def _report(verb: str, result: TransferResult, remote: str) -> None:
    say(
        f"{verb}: {result.transferred} objects ({_size(result.bytes)}) transferred, "
        f"{result.present} already {'on ' + remote if verb == 'push' else 'in the cache'}"
    )
    for item in result.missing[:20]:
        where = "in the local cache" if verb == "push" else f"on remote {remote}"
        notice(f"not {where}: {item}")
    for item in result.failed[:20]:
        notice(f"failed: {item}")


def _checkout(repo: Repo, paths: list[str] | None, *, force: bool, link: str | None) -> int:
    """Exit 1 when a dataset was left as it was: an unsaved change kept, or its objects not cached."""
    from mlci_tui.data.checkout import checkout as data_checkout

    result = data_checkout(repo.root, repo.state_dir, _targets(repo, paths), force=force, link=link)
    if result.written or result.removed:
        say(f"checkout: {len(result.written)} files written, {len(result.removed)} removed")
    for path in result.not_cached:
        notice(f"{path}: not in the local cache (run `mlci data pull`)")
    for path in result.kept:
        notice(f"{path}: kept your unsaved change (`mlci data add` saves it; `mlci data checkout --force` discards it)")
    return 1 if result.kept or result.not_cached else 0


# ---------------------------------------------------------------------------- gc
def gc(args: argparse.Namespace) -> int:
    """delete cached (or, with --remote, remote) objects that no branch, tag, the index or the working tree names

    Example: mlci data gc --remote storage --dry-run

    Local cache by default; with --remote the shared remote (asks before deleting, see data.md).
    """
    repo = Repo.find()
    if args.remote is None:
        return _gc_cache(repo, args)
    return _gc_remote(repo, args)


def _gc_cache(repo: Repo, args: argparse.Namespace) -> int:
    from mlci_tui.data.gc import gc as data_gc

    result = data_gc(repo, all_commits=args.all_commits, dry_run=args.dry_run)
    if args.json:
        say(json.dumps({"dry_run": args.dry_run, **vars(result)}))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    say(f"gc: {verb} {result.removed} objects ({_size(result.freed)}); {result.kept} referenced objects kept")
    return 0


def _gc_remote(repo: Repo, args: argparse.Namespace) -> int:
    from mlci_tui.data.gc import plan_remote_gc

    ask = not args.dry_run and not args.yes
    if ask and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise InputError("gc --remote deletes from a remote every clone shares: add --yes (or --dry-run to see first)")
    run = plan_remote_gc(
        repo,
        args.remote or None,
        all_commits=args.all_commits,
        min_age_hours=args.min_age,
        jobs=args.jobs,
        fetch_refs=args.fetch,
    )
    plan, name = run.plan, run.name
    for warning in plan.warnings[:5]:
        notice(f"skipped unreadable pointer: {warning}")
    report: dict[str, Any] = {
        "remote": name,
        "dry_run": args.dry_run,
        "listed": plan.listed,
        "kept": plan.kept,
        "recent": len(plan.recent),
        "recent_bytes": sum(plan.recent.values()),
        "min_age_hours": args.min_age,
        "to_delete": len(plan.delete),
        "to_delete_bytes": plan.delete_bytes,
        "deleted": 0,
        "freed": 0,
        "failed": [],
        "objects": [{"hash": h, "size": s} for h, s in sorted(plan.delete.items())],
    }
    recent = f"; {len(plan.recent)} unreferenced objects younger than {args.min_age:g} h kept" if plan.recent else ""
    what = f"{len(plan.delete)} of {plan.listed} objects ({_size(plan.delete_bytes)}) from remote {display(name)}"
    if args.dry_run or not plan.delete:
        say(json.dumps(report) if args.json else f"gc: {'would remove' if args.dry_run else 'removed'} {what}{recent}")
        return 0
    if ask:
        print(f"delete {what}? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            say("gc: nothing deleted")
            return 0
    done = run.delete()
    report.update(deleted=done.deleted, freed=done.freed, failed=done.failed)
    if args.json:
        say(json.dumps(report))
    else:
        say(f"gc: removed {done.deleted} objects ({_size(done.freed)}) from remote {display(name)}{recent}")
    for item in done.failed[:20]:
        notice(f"failed to delete: {item}")
    if done.failed:
        raise CheckFailed(f"gc of remote {name} incomplete: {len(done.failed)} objects could not be deleted")
    return 0


# ---------------------------------------------------------------------------- import-url, update
def import_url(args: argparse.Namespace) -> int:
    """fetch a dataset from a URL (http(s), s3, gs, az, local) and track it, recording its source and version

    Example: mlci data import-url https://example.com/data/train.csv data/train.csv
    """
    from mlci_tui.data.import_url import import_dataset
    from mlci_tui.data.pointer import POINTER_SUFFIX

    repo = Repo.find()
    change = import_dataset(repo.root, args.url, args.path, state_dir=repo.state_dir, cwd=Path.cwd(), force=args.force)
    _print_changes([change], args.format)
    if args.format != "json":
        say(f"track it in git: git add {display(change.path + POINTER_SUFFIX)} .gitignore")
    return 0


def update_handler(args: argparse.Namespace) -> int:
    """re-fetch imported datasets whose source changed (ETag, mtime or content hash) and say what changed

    Example: mlci data update data/train.csv
    """
    return update(Repo.find(), args.paths, fmt=args.format)


def update(repo: Repo, paths: list[str] | None = None, *, fmt: str = "text") -> int:
    """`mlci data update`: re-fetch the imported datasets `paths` name (None: all) whose source changed."""
    from mlci_tui.data.import_url import update_imports

    changes = update_imports(repo.root, paths or [], state_dir=repo.state_dir, cwd=Path.cwd())
    if not changes:
        say("[]" if fmt == "json" else "no imported datasets (`mlci data import-url URL PATH` makes one)")
        return 0
    _print_changes(changes, fmt)
    if fmt != "json":
        changed = sum(c.status == "updated" for c in changes)
        say(f"{changed} of {len(changes)} imported dataset(s) changed")
    return 0


def _print_changes(changes: list[Change], fmt: str) -> None:
    if fmt == "json":
        say(json.dumps([c.to_json() for c in changes], indent=2, ensure_ascii=True))
        return
    for change in changes:
        say(display(change.line()))
