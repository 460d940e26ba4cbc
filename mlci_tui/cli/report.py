"""`mlci report`: render the report to stdout or a file, or post it on the pull/merge request.

Exit codes: 0 whatever the gate says (the report reports; `mlci gate` decides) unless
`--fail-on-gate`; 1 when posting fails other than by a read-only token; 2 on bad input.
`report` is the typed command function: the handler `main` only reads the arguments, and
the CI report step (ci/steps.py) calls `report` directly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlci_tui import config as config_mod
from mlci_tui.cli.console import notice
from mlci_tui.cli.options import SubParsers, add_command
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    from mlci_tui.report.post import PostOptions

FORMATS = ("md", "term", "html", "json")
_SUFFIX_FORMAT = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json", ".txt": "term"}


def choose_format(requested: str | None, output: str | None, posting: bool) -> str:
    """`--format`, else from `-o`'s suffix, else term on a terminal and md elsewhere."""
    if posting:
        if requested not in (None, "md"):
            raise InputError("--post publishes Markdown: drop --format or use --format md")
        return "md"
    if requested:
        return requested
    if output:
        return _SUFFIX_FORMAT.get(Path(output).suffix.lower(), "md")
    return "term" if sys.stdout.isatty() else "md"


def _colour(output: str | None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return output is None and sys.stdout.isatty()


def render(report: object, fmt: str, *, colour: bool = False, width: int = 100) -> str:
    from mlci_tui.report.build import Report, to_json

    assert isinstance(report, Report)
    if fmt == "json":
        return json.dumps(to_json(report), indent=2, ensure_ascii=True) + "\n"
    if fmt == "html":
        from mlci_tui.report.html import render as render_html

        return render_html(report)
    if fmt == "term":
        from mlci_tui.report.term import render as render_term

        return render_term(report, colour=colour, width=width)
    from mlci_tui.report.markdown import render as render_md

    return render_md(report)


def _width() -> int:
    import shutil

    return max(60, min(120, shutil.get_terminal_size((100, 24)).columns))


def main(args: argparse.Namespace) -> int:
    """report the candidate against the baseline: verdict, metrics, params, data, charts; post it on the PR

    Example: mlci report -o report.html    |    mlci report --post github

    The handler: flags checked and the format chosen (both before any work), then `report`.
    """
    for flag in ("dry_run", "repo", "pr", "api_url", "artifact"):
        if getattr(args, flag) not in (None, False) and not args.post:
            raise InputError(f"--{flag.replace('_', '-')} goes with --post")
    fmt = choose_format(args.format, args.output, bool(args.post))
    posting = None
    if args.post:
        from mlci_tui.report.post import PostOptions

        posting = PostOptions(
            args.post, repo=args.repo, pr=args.pr, api_url=args.api_url, artifact=args.artifact, dry_run=args.dry_run
        )
    return report(
        Repo.find(),
        base=args.base,
        head=args.head,
        fmt=fmt,
        output=args.output,
        fail_on_gate=args.fail_on_gate,
        posting=posting,
    )


def report(
    repo: Repo,
    *,
    base: str | None = None,
    head: str = "HEAD",
    fmt: str = "md",
    output: str | None = None,
    fail_on_gate: bool = False,
    posting: PostOptions | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """`mlci report`: the report in `fmt` to `output` (None: stdout, unless posting), and posted as
    `posting` says; `env` (default this process's) is where posting finds its target and token.

    0 whatever the gate says unless `fail_on_gate`; a failed post's code otherwise.
    """
    from mlci_tui.report.build import build_report

    cfg = config_mod.load(repo.root)
    notices: list[str] = []
    built = build_report(repo, cfg, base, head, notices=notices)
    for text in notices:
        notice(text)
    code = 0
    if output or posting is None:
        text = render(built, fmt, colour=_colour(output) and fmt == "term", width=_width())
        if output:
            path = Path(output)
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise InputError(f"-o {display(output)}: {exc.strerror}") from None
            print(f"report ({fmt}, verdict {built.verdict}) written to {display(str(path))}")
        else:
            sys.stdout.write(text)
    if posting is not None:
        from mlci_tui.report.post import post

        code = post(built, posting, env)
    if fail_on_gate and not built.gate.passed:
        return 1
    return code


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "report", main)
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
