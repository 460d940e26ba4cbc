"""The `mlci` command line. Subcommands load their modules only when they run.

`mlci hook STAGE` takes a fast path that never builds the argument parser, so a hook with
nothing to do stays within its budget.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from mlci_tui import __version__

EPILOG = """\
examples:
  mlci demo                       build a demo project and show its runs
  mlci init                       set up mlci in this repository
  mlci runs --where "metrics['acc'] > 0.9" --sort -acc
  mlci show HEAD                  the run of a commit (or a run id, or a stage)
  mlci sql "SELECT name, avg(value) FROM metrics GROUP BY name"
  mlci ledger push                share the ledger with origin
"""


def add_format_options(parser: argparse.ArgumentParser, default: str = "table") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--format", choices=("table", "json", "csv", "md"), default=default, help=f"output format (default {default})"
    )
    group.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    group.add_argument("--csv", dest="format", action="store_const", const="csv", help="same as --format csv")
    group.add_argument("--md", dest="format", action="store_const", const="md", help="same as --format md")


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: str, help: str, example: str
) -> argparse.ArgumentParser:
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
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
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


def _add_feature_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands of feature packages, from `mlci_tui/cli_<feature>.py` (each has `add_commands(sub)`).

    A feature adds its commands in its own module, so features never edit this file.
    """
    import importlib
    from pathlib import Path

    for path in sorted(Path(__file__).parent.glob("cli_*.py")):
        module = importlib.import_module(f"mlci_tui.{path.stem}")
        module.add_commands(sub)


def _no_translation(message: str) -> str:
    return message


def build_parser() -> argparse.ArgumentParser:
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

    p = add_command(
        sub,
        "demo",
        "demo:main",
        "build a small real ML project, commit through the hooks, show the runs",
        "mlci demo /tmp/mlci-demo",
    )
    p.add_argument("directory", nargs="?", help="where to build it (default: a new temporary folder)")
    p.add_argument("--commits", type=int, default=4, help="how many training commits to make (default 4)")
    p.add_argument("--no-sweep", action="store_true", help="skip the hyperparameter sweep at the end")

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

    p = add_command(
        sub, "hook", "hooks_cmd:main", "run one hook stage (what the installed hooks call)", "mlci hook pre-commit"
    )
    p.add_argument("stage", choices=("pre-commit", "post-commit", "pre-push", "post-checkout", "post-merge"))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the arguments git passes to the hook")

    p = add_command(
        sub,
        "record",
        "commands:record",
        "record the working tree's params and metrics as a run (workspace, or ci with --commit)",
        "mlci record -m 'try lr 0.01' --name lr-0.01",
    )
    p.add_argument("-m", "--message", help="what this run is about")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--commit", metavar="REV", help="record a `ci` run linked to this commit")

    p = add_command(
        sub,
        "capture",
        "commands:capture",
        "capture commits from their committed files (no checkout)",
        "mlci capture --range origin/main..HEAD",
    )
    p.add_argument("revs", nargs="*", metavar="REV", help="commits to capture (default HEAD)")
    p.add_argument("--range", dest="range_spec", metavar="A..B", help="every commit in A..B")

    p = add_command(
        sub, "runs", "commands:runs", "list runs", "mlci runs --where \"kind = 'commit'\" --sort -acc --limit 5"
    )
    p.add_argument("--where", help="SQL predicate over the runs view, e.g. \"metrics['acc'] > 0.9\"")
    p.add_argument("--sort", help="column, metric or param name; prefix - for descending (default -time)")
    p.add_argument("--limit", type=int, help="at most N runs (default 50 in a table, all otherwise; 0 = all)")
    p.add_argument("--all-params", action="store_true", help="show every param, not only those that differ")
    add_format_options(p)

    p = add_command(
        sub, "show", "commands:show", "show one run: fields, params, metrics, steps, tags, notes", "mlci show HEAD~1"
    )
    p.add_argument("run", help="run id or prefix, promoted stage, or commit-ish")
    add_format_options(p)

    p = add_command(
        sub,
        "sql",
        "commands:sql",
        "run a read-only SQL query over the ledger views",
        "mlci sql \"SELECT run_id, metrics['acc'] FROM runs\"",
    )
    p.add_argument("query")
    add_format_options(p)

    p = add_command(sub, "tag", "commands:tag", "tag a run (or remove a tag)", "mlci tag HEAD baseline")
    p.add_argument("run")
    p.add_argument("name")
    p.add_argument("--remove", action="store_true", help="remove the tag instead")

    p = add_command(sub, "note", "commands:note", "attach a note to a run", "mlci note HEAD 'lr too high, diverged'")
    p.add_argument("run")
    p.add_argument("text")

    p = add_command(
        sub,
        "diff",
        "commands_gate:diff",
        "params, metrics and data between two runs or commits",
        "mlci diff deployed HEAD --md",
    )
    p.add_argument("revs", nargs="*", metavar="RUN", help="base and head (default: the baseline and HEAD)")
    p.add_argument("--workspace", action="store_true", help="compare with the working tree instead of HEAD")
    p.add_argument("--all", action="store_true", help="list unchanged params and datasets too")
    add_format_options(p)

    p = add_command(
        sub,
        "gate",
        "commands_gate:gate",
        "check a candidate against the baseline with gate.rules; exit 1 on failure",
        "mlci gate --base deployed --head HEAD",
    )
    p.add_argument("--base", help="baseline run, stage or commit (default gate.baseline, else stage deployed)")
    p.add_argument("--head", default="HEAD", help="candidate run, stage or commit (default HEAD)")
    add_format_options(p)

    p = add_command(
        sub,
        "report",
        "report.command:main",
        "report the candidate against the baseline: verdict, metrics, params, data, charts; post it on the PR",
        "mlci report -o report.html    |    mlci report --post github",
    )
    p.add_argument("--base", help="baseline run, stage or commit (default gate.baseline, else stage deployed)")
    p.add_argument("--head", default="HEAD", help="candidate run, stage or commit (default HEAD)")
    p.add_argument(
        "--format",
        choices=("md", "term", "html", "json"),
        help="default: from -o's suffix, else term on a terminal and md otherwise",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout (also with --post)"
    )
    p.add_argument("--fail-on-gate", action="store_true", help="exit 1 when the gate fails (default: report only)")
    p.add_argument("--post", choices=("github", "gitlab"), help="create or update the report comment on the PR/MR")
    p.add_argument("--dry-run", action="store_true", help="with --post: print the requests instead of sending them")
    p.add_argument("--repo", help="with --post: owner/name (GitHub) or project id or path (GitLab); default from CI")
    p.add_argument("--pr", help="with --post: pull/merge request number (default from CI)")
    p.add_argument("--api-url", help="with --post: API root (default GITHUB_API_URL or CI_API_V4_URL)")
    p.add_argument(
        "--artifact", metavar="FILE", help="with --post: where the full report goes when cut (default mlci-report.md)"
    )

    p = add_command(
        sub,
        "promote",
        "commands_gate:promote",
        "record that a run's model is promoted to a stage",
        "mlci promote HEAD --stage deployed --tag",
    )
    p.add_argument("run", help="run id or prefix, stage, or commit-ish")
    p.add_argument("--stage", default="deployed", help="stage name (default deployed)")
    p.add_argument("--tag", action="store_true", help="also tag the run's commit as STAGE/N")

    p = add_command(sub, "stages", "commands_gate:stages", "what is promoted where", "mlci stages --history")
    p.add_argument("--history", action="store_true", help="every promotion, not only the current one per stage")
    add_format_options(p)

    add_command(sub, "tui", "tui.app:main", "browse, filter, compare and plot runs in the terminal", "mlci tui")

    ledger = sub.add_parser(
        "ledger",
        help="share, compact, redact and check the ledger",
        description="share, compact, redact and check the ledger",
    )
    lsub = ledger.add_subparsers(dest="ledger_command", metavar="ACTION")
    for name, help_text in (
        ("push", "pull, union-merge and push the ledger"),
        ("pull", "fetch and union-merge the remote ledger"),
    ):
        p = add_command(lsub, name, f"commands:ledger_{name}", help_text, f"mlci ledger {name} origin")
        p.add_argument("remote", nargs="?", help="remote name (default ledger.remote, else origin)")
        p.add_argument("-r", "--remote", dest="remote_opt", help="remote name")
        p.add_argument("--force-merge", action="store_true", help="merge even a rewritten remote ledger")
    add_command(
        lsub, "compact", "commands:ledger_compact", "pack records into a Parquet segment", "mlci ledger compact"
    )
    p = add_command(
        lsub,
        "redact",
        "commands:ledger_redact",
        "hide a record for good (a tombstone event)",
        "mlci ledger redact 3kq2v5xw...",
    )
    p.add_argument("id", help="the full id of the record (a run id, or a note's id)")
    p.add_argument("--reason", help="why, kept with the tombstone")
    add_command(lsub, "fsck", "commands:ledger_fsck", "check every record in the ledger", "mlci ledger fsck")
    add_command(
        lsub, "status", "commands:ledger_status", "ledger tip, record count, remotes seen", "mlci ledger status"
    )
    _add_feature_commands(sub)
    return parser


def _run_handler(spec: str, args: argparse.Namespace) -> int:
    import importlib

    module_name, func_name = spec.split(":")
    module = importlib.import_module(f"mlci_tui.{module_name}")
    func: Callable[[argparse.Namespace], int] = getattr(module, func_name)
    return int(func(args) or 0)


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
    from mlci_tui.errors import MlciError
    from mlci_tui.sanitize import display

    parser = build_parser()
    args = parser.parse_args(_join_negative_values(args_list))
    if args.directory and getattr(args, "command", None) != "demo":
        try:
            os.chdir(args.directory)
        except OSError as exc:
            print(f"mlci: -C {display(args.directory)}: {exc.strerror}", file=sys.stderr)
            return 2
    handler = getattr(args, "handler", None)
    if handler is None:
        if args.command == "ledger":
            parser.parse_args(["ledger", "--help"])
        group_parser = getattr(args, "group_parser", None)
        (group_parser or parser).print_help()
        return 2
    try:
        return _run_handler(handler, args)
    except MlciError as exc:
        print(f"mlci: {display(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mlci: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("MLCI_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"mlci: internal error: {type(exc).__name__}: {display(first)} (set MLCI_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
