"""`mlci hook STAGE` when reached through the argument parser (e.g. with --help)."""

from __future__ import annotations

import argparse

from mlci_tui.hooks import run


def main(args: argparse.Namespace) -> int:
    return run(args.stage, args.args)
