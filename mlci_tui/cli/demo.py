"""`mlci demo`: build a small real ML project and walk it through mlci."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import SubParsers, add_command


def demo(args: argparse.Namespace) -> int:
    """build a small real ML project, commit through the hooks, show the runs

    Example: mlci demo /tmp/mlci-demo
    """
    from mlci_tui.demo.build import run_demo

    return run_demo(args.directory, args.commits, sweep=not args.no_sweep)


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "demo", demo)
    p.add_argument("directory", nargs="?", help="where to build it (default: a new temporary folder)")
    p.add_argument("--commits", type=int, default=4, help="how many training commits to make (default 4)")
    p.add_argument("--no-sweep", action="store_true", help="skip the hyperparameter sweep at the end")
