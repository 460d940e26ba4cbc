"""`mlci tui`: the Textual app."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import SubParsers, add_command


def tui(args: argparse.Namespace) -> int:
    """browse, filter, compare and plot runs in the terminal

    Example: mlci tui

    Textual loads only here: no other command pays for it.
    """
    from mlci_tui.tui.app import main

    return main(args)


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    add_command(sub, "tui", tui)
