"""`mlci init`, `install`, `uninstall` and `hook STAGE`: mlci in a repository and its hooks.

The handlers call the core in `mlci_tui.install` (hook scripts, starter config, pre-commit
framework entries) and say what changed.
"""

from __future__ import annotations

import argparse

from mlci_tui.cli.console import say
from mlci_tui.cli.options import SubParsers, add_command
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display


def init(args: argparse.Namespace) -> int:
    """write a starter mlci.yaml, ignore mlci's local files, install the hooks

    Example: mlci init
    """
    from mlci_tui.install import (
        FRAMEWORK_CONFIG,
        add_to_framework_config,
        ensure_gitignore,
        init_notes,
        install_hooks,
        install_through_framework,
        uses_framework,
        write_starter_config,
    )

    repo = Repo.find()
    config = write_starter_config(repo.root)
    if config == "pyproject":
        say("using [tool.mlci] in pyproject.toml (no mlci.yaml written: it would take precedence)")
    elif config == "written":
        say("wrote mlci.yaml")
    for note in init_notes(repo):
        say(note)
    if ensure_gitignore(repo.root):
        say("added mlci's local files to .gitignore")
    if args.no_hooks:
        return 0
    if uses_framework(repo.root):
        if add_to_framework_config(repo):
            say(f"added mlci's hooks to {FRAMEWORK_CONFIG}")
        install_through_framework(repo)
        say("hooks installed through the pre-commit framework")
    else:
        changed = install_hooks(repo)
        if changed:
            say(f"installed hooks: {', '.join(changed)}")
    return 0


def install(args: argparse.Namespace) -> int:
    """install mlci's plain git hooks (chaining to existing ones)

    Example: mlci install
    """
    from mlci_tui.hooks import STAGES
    from mlci_tui.install import hooks_dir, install_hooks

    repo = Repo.find()
    changed = install_hooks(repo, tuple(args.stages) if args.stages else STAGES)
    say(
        f"installed hooks in {display(str(hooks_dir(repo)))}: {', '.join(changed)}"
        if changed
        else "hooks already installed"
    )
    return 0


def uninstall(args: argparse.Namespace) -> int:
    """remove mlci's git hooks and restore what was there

    Example: mlci uninstall
    """
    from mlci_tui.install import uninstall_hooks

    removed = uninstall_hooks(Repo.find())
    say(f"removed hooks: {', '.join(removed)}" if removed else "no mlci hooks installed")
    return 0


def hook(args: argparse.Namespace) -> int:
    """run one hook stage (what the installed hooks call)

    Example: mlci hook pre-commit

    `mlci hook STAGE` reached through the parser (for `--help`); `cli.main` runs hooks without it.
    """
    from mlci_tui.hooks import run

    return run(args.stage, args.args)


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "init", init)
    p.add_argument("--no-hooks", action="store_true", help="do not install hooks")
    p = add_command(sub, "install", install)
    p.add_argument("--stage", action="append", dest="stages", help="only this stage (repeatable)")
    add_command(sub, "uninstall", uninstall)
    p = add_command(sub, "hook", hook)
    p.add_argument("stage", choices=("pre-commit", "post-commit", "pre-push", "post-checkout", "post-merge"))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the arguments git passes to the hook")
