"""The `mlci` command line: the parser built from an explicit registry of command modules, and dispatch.

Each module of `cli/` declares its commands (`add_commands(sub)`) beside their handlers.
`COMMANDS` names the module of every command, so a command builds the parser of its own
module only (`mlci runs` never imports the data or sweep handlers); `mlci --help`, or a
name that is no command, builds them all. A handler imports the core it needs when it
runs, so building the parser loads no DuckDB, pyarrow or Textual.

`mlci hook STAGE` takes a fast path that never builds the argument parser, so a hook with
nothing to do stays within its budget.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from mlci_tui import __version__
from mlci_tui.cli.console import run_reporting_failures

EPILOG = """\
examples:
  mlci demo                       build a demo project and show its runs
  mlci init                       set up mlci in this repository
  mlci runs --where "metrics['acc'] > 0.9" --sort -acc
  mlci show HEAD                  the run of a commit (or a run id, or a stage)
  mlci sql "SELECT name, avg(value) FROM metrics GROUP BY name"
  mlci ledger push                share the ledger with origin
"""


# every command -> the module of mlci_tui/cli/ that declares it, in the order of `mlci --help`
COMMANDS: dict[str, str] = {
    "demo": "demo",
    **dict.fromkeys(("init", "install", "uninstall", "hook"), "setup"),
    **dict.fromkeys(("record", "capture", "runs", "show", "sql", "tag", "note", "export"), "runs"),
    **dict.fromkeys(("diff", "gate", "promote", "stages"), "gate"),
    "report": "report",
    "tui": "tui",
    "ledger": "ledger",
    "ci": "ci",
    "data": "data",
    "import": "imports",
    "sweep": "sweep",
    "bisect": "bisect",
}


def command_modules(command: str | None = None) -> list[ModuleType]:
    """The modules that declare `command` (all of them, in help order, for None or an unknown name)."""
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"mlci_tui.cli.{name}") for name in names]


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named on a command line: the first word that is no option (nor -C's folder)."""
    words = iter(argv)
    for word in words:
        if word == "-C":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _no_translation(message: str) -> str:
    return message


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of the module that declares `command`."""
    # argparse passes each of its ~170 strings through gettext, which looks for catalogues on
    # disk every time (25 ms of every command here); mlci's own text is English only
    argparse._ = _no_translation  # type: ignore[attr-defined]
    parser = argparse.ArgumentParser(
        prog="mlci",
        description="Continuous integration and delivery for machine learning, in git hooks and the terminal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlci {__version__}")
    parser.add_argument("-C", dest="directory", metavar="DIR", help="run as if started in DIR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for module in command_modules(command):
        module.add_commands(sub)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--sort -acc` means descending acc, not an option named -acc: join it as `--sort=-acc`."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--sort" and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1] != "--":
            out.append(f"--sort={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if len(args_list) >= 2 and args_list[0] == "hook" and not args_list[1].startswith("-"):
        from mlci_tui.hooks import run

        return run(args_list[1], args_list[2:])
    from mlci_tui.sanitize import display

    parser = build_parser(_command_in(args_list))
    args = parser.parse_args(_join_negative_values(args_list))
    if args.directory and getattr(args, "command", None) != "demo":
        try:
            os.chdir(args.directory)
        except OSError as exc:
            print(f"mlci: -C {display(args.directory)}: {exc.strerror}", file=sys.stderr)
            return 2
    handler = getattr(args, "handler", None)
    if handler is None:
        group_parser = getattr(args, "group_parser", None)
        (group_parser or parser).print_help()
        return 2
    return run_reporting_failures(lambda: handler(args))


if __name__ == "__main__":
    sys.exit(main())
