"""`mlci ci ...`: generate CI workflows, run their steps locally, dispatch the sweep workflow.

The handlers call `ci.generate`, `ci.steps` and `ci.dispatch` when they run; the parser
names the steps and jobs itself so that building it imports none of them.
"""

from __future__ import annotations

import argparse
import sys

from mlci_tui.cli.console import notice, say
from mlci_tui.cli.options import SubParsers, add_command, command_group
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo

STEP_NAMES = (
    "base-config",
    "ledger-pull",
    "data-pull",
    "validate",
    "train",
    "report",
    "ledger-bundle",
    "checkout-base",
    "ledger-unbundle",
    "post-report",
    "gate",
    "capture",
    "ledger-push",
    "data-update",
    "promote",
    "sweep-matrix",
    "sweep-trial",
    "sweep-collect",
)
JOB_NAMES = (
    "pull-request",
    "pull-request-report",
    "push",
    "schedule",
    "sweep-matrix",
    "sweep-trial",
    "sweep-collect",
)


def init(args: argparse.Namespace) -> int:
    """write GitHub Actions or GitLab CI workflows whose every step is `mlci ci run STEP`

    Example: mlci ci init github --schedule '0 3 * * 1' --sweeps
    """
    from mlci_tui.ci.generate import generate, write_files

    repo = Repo.find()
    plan = generate(
        repo.root, args.host, schedule=args.schedule, sweeps=args.sweeps, branch=args.branch, include=args.include
    )
    write_files(repo.root, plan, force=args.force, wrote=lambda rel: say(f"wrote {rel}"))
    for note in plan.notes:
        say(note)
    say(f"install: {plan.pin.line}")
    say(f"  pinned to {plan.pin.why}")
    if plan.pin.warning:
        notice(f"warning: {plan.pin.warning}")
    if args.host == "github":
        say("tokens: the workflow uses the job's GITHUB_TOKEN with the permissions declared per job; nothing to set")
        if args.sweeps:
            say("sweeps: `mlci sweep start NAME --executor ci` needs GITHUB_TOKEN (actions: write) in your shell")
    else:
        say(
            "tokens: masked CI/CD variables GITLAB_TOKEN (api; environment scope mlci/*) and "
            "MLCI_GITLAB_PUSH_TOKEN (write_repository; protected, scope mlci/ledger)"
        )
        if args.schedule:
            say(f"schedule: create a pipeline schedule with cron {args.schedule!r} (Build > Pipeline schedules)")
    say("commit the file(s); see docs/ci.md for what each step does and how to run it locally")
    return 0


def run(args: argparse.Namespace) -> int:
    """run one step of the generated CI jobs (or a whole job) here, with the CI's environment variables

    Example: GITHUB_ACTIONS=true GITHUB_EVENT_NAME=pull_request mlci ci run validate --base origin/main
    """
    from mlci_tui.ci import steps

    if bool(args.step) == bool(args.job):
        raise InputError("name one STEP, or a whole job with --job JOB")
    ctx = steps.StepContext.from_environment(
        Repo.find(), event=args.event, base=args.base, head=args.head, config_from=args.config_from
    )
    if args.job:
        return steps.run_job(args.job, ctx)
    code = steps.run_step(args.step, ctx)
    sys.stdout.flush()
    return code


def dispatch(args: argparse.Namespace) -> int:
    """start the sweep workflow on GitHub or GitLab through its API (token from the environment)

    Example: GITHUB_TOKEN=... mlci ci dispatch lr-search
    """
    from mlci_tui.ci.dispatch import dispatch as dispatch_workflow

    message = dispatch_workflow(
        Repo.find().root,
        args.sweep,
        host=args.host,
        ref=args.ref,
        api_url=args.api_url,
        repository=args.repo,
        push_ledger=not args.no_push,
    )
    say(message)
    return 0


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    ci = command_group(sub, "ci", "generate CI workflows and run their steps")
    p = add_command(ci, "init", init)
    p.add_argument("host", choices=("github", "gitlab"))
    p.add_argument("--schedule", metavar="CRON", help="add the scheduled job: refresh data, retrain, gate, promote")
    p.add_argument("--sweeps", action="store_true", help="add the dispatched sweep workflow (a matrix of trials)")
    p.add_argument("--branch", help="the default branch the push job runs on (default: origin's HEAD, else current)")
    p.add_argument("--force", action="store_true", help="overwrite workflow files an earlier `ci init` wrote")
    p.add_argument(
        "--include",
        action="store_true",
        help="gitlab, beside a .gitlab-ci.yml of the project's own: add the include: line for .gitlab/mlci.yml to it",
    )

    p = add_command(ci, "run", run)
    p.add_argument("step", nargs="?", choices=STEP_NAMES, metavar="STEP", help=", ".join(STEP_NAMES))
    p.add_argument("--job", choices=JOB_NAMES, help="run every step of this job in order, as CI does")
    p.add_argument(
        "--event",
        choices=("pull_request", "push", "schedule", "dispatch", "local"),
        help="the CI event to act as (default: from the CI variables, else local)",
    )
    p.add_argument("--base", metavar="REV", help="the base commit (default: from the CI variables)")
    p.add_argument("--head", metavar="REV", help="a pull request's head commit (default: from the CI variables)")
    p.add_argument(
        "--config-from",
        metavar="REV",
        help="read data.remote and data.remotes from this commit's mlci.yaml (default: a pull request's base)",
    )

    p = add_command(ci, "dispatch", dispatch)
    p.add_argument("sweep", help="name of the sweep (a key under sweeps: in mlci.yaml)")
    p.add_argument("--host", choices=("github", "gitlab"), help="default: from the CI, the workflow files or origin")
    p.add_argument("--ref", help="the branch to run the workflow on (default: the current branch)")
    p.add_argument("--repo", help="OWNER/NAME (GitHub) or project id/path (GitLab); default from CI or origin")
    p.add_argument("--api-url", help="API root (default GITHUB_API_URL / CI_API_V4_URL, else the public host)")
    p.add_argument("--no-push", action="store_true", help="do not push the ledger first")
