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
from typing import NoReturn

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


class _Parser(argparse.ArgumentParser):
    """argparse's parser with "did you mean" for a mistyped command, action or option
    (Python 3.14's `suggest_on_error` does the first two; mlci runs on 3.10 too)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {_with_suggestion(self, message)}\n")


def _with_suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    import difflib
    import re

    choice = re.fullmatch(r"(argument [^:]+: invalid choice: '(.*?)') \(choose from (.*)\)", message, re.DOTALL)
    if choice:
        known = re.findall(r"'([^']*)'", choice.group(3))
        close = difflib.get_close_matches(choice.group(2), known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"one of {', '.join(known)}"
        return f"{choice.group(1)}; {hint}"
    unknown = re.fullmatch(r"unrecognized arguments: (.*)", message, re.DOTALL)
    if unknown:
        options = sorted(_option_strings(parser))
        hints = []
        for word in unknown.group(1).split():
            name = word.split("=", 1)[0]
            close = difflib.get_close_matches(name, options, n=1, cutoff=0.6) if name.startswith("-") else []
            if close:
                hints.append(f"{name}: did you mean {close[0]}?")
        return message + ("; " + "; ".join(hints) if hints else "")
    return message


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every long option of `parser` and the parsers under it (what a typo may have meant)."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                found |= _option_strings(sub)
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of the module that declares `command`."""
    # argparse passes each of its ~170 strings through gettext, which looks for catalogues on
    # disk every time (25 ms of every command here); mlci's own text is English only
    argparse._ = _no_translation  # type: ignore[attr-defined]
    parser = _Parser(
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
