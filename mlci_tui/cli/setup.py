"""`mlci init`, `install`, `uninstall` and `hook STAGE`: mlci in a repository and its hooks."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import SubParsers, add_command


def hook(args: argparse.Namespace) -> int:
    """`mlci hook STAGE` reached through the parser (for `--help`); `cli.main` runs hooks without it."""
    from mlci_tui.hooks import run

    return run(args.stage, args.args)


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "init",
        "setup:init",
        "write a starter mlci.yaml, ignore mlci's local files, install the hooks",
        "mlci init",
    )
    p.add_argument("--no-hooks", action="store_true", help="do not install hooks")
    p = add_command(
        sub, "install", "setup:install", "install mlci's plain git hooks (chaining to existing ones)", "mlci install"
    )
    p.add_argument("--stage", action="append", dest="stages", help="only this stage (repeatable)")
    add_command(
        sub, "uninstall", "setup:uninstall", "remove mlci's git hooks and restore what was there", "mlci uninstall"
    )
    p = add_command(sub, "hook", hook, "run one hook stage (what the installed hooks call)", "mlci hook pre-commit")
    p.add_argument("stage", choices=("pre-commit", "post-commit", "pre-push", "post-checkout", "post-merge"))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the arguments git passes to the hook")
