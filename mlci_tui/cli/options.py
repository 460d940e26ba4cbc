"""What every command module shares to declare its parser: formats, a command, a group."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]
SubParsers = argparse._SubParsersAction  # argparse's type for `add_subparsers()`; it has no public name


def add_format_options(parser: argparse.ArgumentParser, default: str = "table") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--format", choices=("table", "json", "csv", "md"), default=default, help=f"output format (default {default})"
    )
    group.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    group.add_argument("--csv", dest="format", action="store_const", const="csv", help="same as --format csv")
    group.add_argument("--md", dest="format", action="store_const", const="md", help="same as --format md")


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """`--wide` and `--precision N` for a table that fits the terminal (output.write)."""
    parser.add_argument("--wide", action="store_true", help="every column, whatever the terminal's width")
    parser.add_argument(
        "--precision",
        type=_digits,
        metavar="N",
        help="significant digits of numbers in a table or Markdown (default 5, more where values would print alike)",
    )


def _digits(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 17:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of digits from 1 to 17")
    return value


def add_command(
    sub: SubParsers[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help: str | None = None,
    example: str | None = None,
) -> argparse.ArgumentParser:
    """Declare `mlci ... NAME`. Its help and example are the handler's docstring unless given:
    the first paragraph is the help, the line `Example: ...` the example (one text, in one place)."""
    if help is None or example is None:
        doc_help, doc_example = help_of(handler)
        help, example = help or doc_help, example or doc_example
    parser = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def command_group(
    sub: SubParsers[argparse.ArgumentParser], name: str, help: str
) -> SubParsers[argparse.ArgumentParser]:
    """The sub-commands of `mlci NAME ...`, made on first use: several modules may add to one group."""
    existing = sub.choices.get(name)
    if existing is None:
        existing = sub.add_parser(name, help=help, description=help)
        existing.set_defaults(group_parser=existing)
        existing.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    for action in existing._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise AssertionError(f"command group {name} has no sub-commands")


def help_of(handler: Handler) -> tuple[str, str]:
    """A handler's docstring as (help, example): read on every command, so without `inspect`."""
    lines = [line.strip() for line in (handler.__doc__ or "").splitlines()]
    first = lines[: lines.index("")] if "" in lines else lines
    examples = [line.removeprefix("Example: ") for line in lines if line.startswith("Example: ")]
    if not first or not examples:
        raise AssertionError(f"{handler.__qualname__}: a command handler's docstring gives its help and `Example: `")
    return " ".join(" ".join(first).split()), examples[0]
