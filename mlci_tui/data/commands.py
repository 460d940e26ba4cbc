"""Handlers of `mlci data add/status/push/pull/fetch/checkout/gc` (thin: the work is in the modules)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlci_tui.data.pointer import Pointer
from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display


def _repo() -> Repo:
    return Repo.find()


def _targets(repo: Repo, paths: list[str] | None) -> list[str] | None:
    if not paths:
        return None
    from mlci_tui.data.workspace import repo_relpath

    out = []
    for p in paths:
        if p.rstrip("/") in ("", "."):
            rel = Path.cwd().resolve().relative_to(repo.root.resolve()).as_posix()
            if rel in ("", "."):
                return None
            out.append(rel)
        else:
            out.append(repo_relpath(repo.root, p.removesuffix(".mlci")))
    return out


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def add(args: argparse.Namespace) -> int:
    from mlci_tui.data.add import add_paths

    repo = _repo()
    pointers = add_paths(
        repo.root, args.paths, link=args.link, algo=args.hash, jobs=args.jobs, cwd=Path.cwd(), state_dir=repo.state_dir
    )
    for p in pointers:
        what = f"{p.nfiles} files, " if p.nfiles is not None else ""
        print(f"added {display(p.path)} ({what}{_size(p.size)}, {p.algo} {p.hash[:12]})")
    files = " ".join(display(p.pointer_path) for p in pointers)
    print(f"to version it: git add {files} .gitignore && git commit", file=sys.stderr)
    return 0


def status(args: argparse.Namespace) -> int:
    from mlci_tui import output
    from mlci_tui.data.status import status as data_status

    repo = _repo()
    rows = [s.row() for s in data_status(repo.root, repo.state_dir, _targets(repo, args.paths))]
    if args.format == "json":
        output.write(rows, ["path", "pointer", "origin", "hash", "status", "in_cache", "changes"], "json", sys.stdout)
        return 0
    if not rows:
        print("no datasets tracked (add one with `mlci data add PATH`)")
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


def _remote(repo: Repo, name: str | None) -> tuple[object, str, str]:
    from mlci_tui.data.add import data_settings
    from mlci_tui.data.remotes import resolve

    remote = resolve(repo.root, data_settings(repo.root), name)
    fs, base = remote.open()
    return fs, base, remote.name


def _jobs(repo: Repo, jobs: int | None) -> int:
    from mlci_tui.data.add import data_settings, default_jobs

    return jobs or data_settings(repo.root)["jobs"] or default_jobs()


def _pointers(repo: Repo, paths: list[str] | None) -> list[Pointer]:
    from mlci_tui.data.status import select, workspace_pointers

    return [p for _f, p in select(workspace_pointers(repo.root), _targets(repo, paths)) if p.origin == "mlci"]


def _report(verb: str, result: object, remote: str) -> None:
    from mlci_tui.data.transfer import TransferResult

    assert isinstance(result, TransferResult)
    print(
        f"{verb}: {result.transferred} objects ({_size(result.bytes)}) transferred, "
        f"{result.present} already {'on ' + remote if verb == 'push' else 'in the cache'}"
    )
    for item in result.missing[:20]:
        where = "in the local cache" if verb == "push" else f"on remote {remote}"
        print(f"mlci: not {where}: {display(item)}", file=sys.stderr)
    for item in result.failed[:20]:
        print(f"mlci: failed: {display(item)}", file=sys.stderr)


def _transfer(verb: str, args: argparse.Namespace) -> int:
    """push or fetch: the objects the pointers name that the other side lacks."""
    from mlci_tui.data import transfer
    from mlci_tui.data.cache import DataCache

    repo = _repo()
    pointers = _pointers(repo, args.paths)
    fs, base, name = _remote(repo, args.remote)
    move = transfer.push if verb == "push" else transfer.fetch
    result = move(DataCache.for_repo(repo.root), pointers, fs, base, _jobs(repo, args.jobs))
    _report(verb, result, name)
    if result.failed or result.missing:
        direction, absent = ("to", "not cached") if verb == "push" else ("from", "missing")
        raise CheckFailed(
            f"{verb} {direction} {name} incomplete: {len(result.failed)} failed, {len(result.missing)} {absent}"
        )
    return 0


def push(args: argparse.Namespace) -> int:
    return _transfer("push", args)


def fetch(args: argparse.Namespace) -> int:
    return _transfer("fetch", args)


def _checkout_report(result: object) -> None:
    from mlci_tui.data.checkout import CheckoutResult

    assert isinstance(result, CheckoutResult)
    if result.written or result.removed:
        print(f"checkout: {len(result.written)} files written, {len(result.removed)} removed")
    for path in result.not_cached:
        print(f"mlci: {display(path)}: not in the local cache (run `mlci data pull`)", file=sys.stderr)
    for path in result.kept:
        print(
            f"mlci: {display(path)}: kept your unsaved change "
            "(`mlci data add` saves it; `mlci data checkout --force` discards it)",
            file=sys.stderr,
        )


def checkout(args: argparse.Namespace) -> int:
    from mlci_tui.data.checkout import checkout as do_checkout

    repo = _repo()
    result = do_checkout(repo.root, repo.state_dir, _targets(repo, args.paths), force=args.force, link=args.link)
    _checkout_report(result)
    if result.kept or result.not_cached:
        return 1
    return 0


def pull(args: argparse.Namespace) -> int:
    code = fetch(args)
    args.force, args.link = False, None
    return max(code, checkout(args))


def gc(args: argparse.Namespace) -> int:
    """Local cache by default; with --remote the shared remote (asks before deleting, see data.md)."""
    import json

    from mlci_tui.data import gc as data_gc

    repo = _repo()
    if args.remote is None:
        result = data_gc.gc(repo, all_commits=args.all_commits, dry_run=args.dry_run)
        if args.json:
            print(json.dumps({"dry_run": args.dry_run, **vars(result)}))
            return 0
        verb = "would remove" if args.dry_run else "removed"
        print(f"gc: {verb} {result.removed} objects ({_size(result.freed)}); {result.kept} referenced objects kept")
        return 0
    ask = not args.dry_run and not args.yes
    if ask and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise InputError("gc --remote deletes from a remote every clone shares: add --yes (or --dry-run to see first)")
    if args.min_age < 0:
        raise InputError(f"--min-age {args.min_age}: hours must be 0 or more")
    fs, base, name = _remote(repo, args.remote or None)
    if args.fetch:
        data_gc.fetch_git_refs(repo)
    jobs = _jobs(repo, args.jobs)
    plan = data_gc.plan_remote(repo, fs, base, all_commits=args.all_commits, min_age_hours=args.min_age, jobs=jobs)
    for warning in plan.warnings[:5]:
        print(f"mlci: skipped unreadable pointer: {display(warning)}", file=sys.stderr)
    report = {
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
        if args.json:
            print(json.dumps(report))
        else:
            print(f"gc: {'would remove' if args.dry_run else 'removed'} {what}{recent}")
        return 0
    if ask:
        print(f"delete {what}? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("gc: nothing deleted")
            return 0
    done = data_gc.delete_remote(fs, base, plan.delete, jobs)
    report.update(deleted=done.deleted, freed=done.freed, failed=done.failed)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"gc: removed {done.deleted} objects ({_size(done.freed)}) from remote {display(name)}{recent}")
    for item in done.failed[:20]:
        print(f"mlci: failed to delete: {display(item)}", file=sys.stderr)
    if done.failed:
        raise CheckFailed(f"gc of remote {name} incomplete: {len(done.failed)} objects could not be deleted")
    return 0
