"""`mlci data add/status/push/pull/fetch/checkout/gc`: datasets versioned beside git."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import add_command, add_format_options, command_group

LINK_MODES = ("auto", "reflink", "copy", "hardlink", "symlink")


def _remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="only these datasets (default: all)")
    p.add_argument("-r", "--remote", help="remote name from data.remotes (default data.remote)")
    p.add_argument("-j", "--jobs", type=int, help="parallel transfers (default data.jobs, else 4 x cores)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = command_group(sub, "data", "version datasets beside git, validate them")

    p = add_command(
        group,
        "add",
        "data.commands:add",
        "track files or folders by content hash: PATH.mlci pointer in git, data in .mlci/cache",
        "mlci data add data/customers.csv data/images",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--link", choices=LINK_MODES, help="how the working copy relates to the cache (default data.link)")
    p.add_argument("--hash", choices=("blake3", "md5"), help="hash algorithm (default data.hash, blake3)")
    p.add_argument("-j", "--jobs", type=int, help="threads hashing a folder")

    p = add_command(
        group,
        "status",
        "data.commands:status",
        "datasets changed against their pointers (.mlci, .dvc, dvc.lock), and whether they are cached",
        "mlci data status --json",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="only these datasets")
    add_format_options(p)

    p = add_command(
        group, "push", "data.commands:push", "upload the objects the remote lacks", "mlci data push -r storage -j 8"
    )
    _remote_options(p)
    p = add_command(
        group, "fetch", "data.commands:fetch", "download the objects the local cache lacks", "mlci data fetch"
    )
    _remote_options(p)
    p = add_command(
        group, "pull", "data.commands:pull", "fetch, then check out what the pointers name", "mlci data pull -r storage"
    )
    _remote_options(p)

    p = add_command(
        group,
        "checkout",
        "data.commands:checkout",
        "make the working tree hold the versions the pointers name (from the local cache)",
        "mlci data checkout --force data/customers.csv",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="only these datasets")
    p.add_argument("--force", action="store_true", help="overwrite unsaved local changes")
    p.add_argument("--link", choices=LINK_MODES, help="link mode (default data.link)")

    p = add_command(
        group,
        "gc",
        "data.commands:gc",
        "delete cached (or, with --remote, remote) objects that no branch, tag, the index or the working tree names",
        "mlci data gc --remote storage --dry-run",
    )
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
