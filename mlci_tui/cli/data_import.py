"""`mlci data import-url` and `mlci data update`: datasets fetched from a URL, refreshed when the source changes."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import add_command, command_group


def _format(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    group.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data = command_group(sub, "data", "version and validate datasets")
    p = add_command(
        data,
        "import-url",
        "data.import_url:cmd_import_url",
        "fetch a dataset from a URL (http(s), s3, gs, az, local) and track it, recording its source and version",
        "mlci data import-url https://example.com/data/train.csv data/train.csv",
    )
    p.add_argument("url", help="where the data comes from (no credentials in it: they come from the environment)")
    p.add_argument("path", help="where it goes in the repository (a pointer PATH.mlci is written beside it)")
    p.add_argument("--force", action="store_true", help="replace an existing file or pointer at PATH")
    _format(p)

    p = add_command(
        data,
        "update",
        "data.import_url:cmd_update",
        "re-fetch imported datasets whose source changed (ETag, mtime or content hash) and say what changed",
        "mlci data update data/train.csv",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="datasets to update (default: every imported one)")
    _format(p)
