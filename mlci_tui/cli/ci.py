"""`mlci ci ...`: generate CI workflows, run their steps locally, dispatch the sweep workflow."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import add_command, command_group

STEP_NAMES = (
    "ledger-pull",
    "data-pull",
    "validate",
    "train",
    "report",
    "gate",
    "capture",
    "ledger-push",
    "data-update",
    "promote",
    "sweep-matrix",
    "sweep-trial",
)
JOB_NAMES = ("pull-request", "push", "schedule", "sweep-matrix", "sweep-trial")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ci = command_group(sub, "ci", "generate CI workflows and run their steps")
    p = add_command(
        ci,
        "init",
        "ci.commands:init",
        "write GitHub Actions or GitLab CI workflows whose every step is `mlci ci run STEP`",
        "mlci ci init github --schedule '0 3 * * 1' --sweeps",
    )
    p.add_argument("host", choices=("github", "gitlab"))
    p.add_argument("--schedule", metavar="CRON", help="add the scheduled job: refresh data, retrain, gate, promote")
    p.add_argument("--sweeps", action="store_true", help="add the dispatched sweep workflow (a matrix of trials)")
    p.add_argument("--branch", help="the default branch the push job runs on (default: origin's HEAD, else current)")
    p.add_argument("--force", action="store_true", help="overwrite existing workflow files")

    p = add_command(
        ci,
        "run",
        "ci.commands:run",
        "run one step of the generated CI jobs (or a whole job) here, with the CI's environment variables",
        "GITHUB_ACTIONS=true GITHUB_EVENT_NAME=pull_request mlci ci run validate --base origin/main",
    )
    p.add_argument("step", nargs="?", choices=STEP_NAMES, metavar="STEP", help=", ".join(STEP_NAMES))
    p.add_argument("--job", choices=JOB_NAMES, help="run every step of this job in order, as CI does")
    p.add_argument(
        "--event",
        choices=("pull_request", "push", "schedule", "dispatch", "local"),
        help="the CI event to act as (default: from the CI variables, else local)",
    )
    p.add_argument("--base", metavar="REV", help="the base commit (default: from the CI variables)")

    p = add_command(
        ci,
        "dispatch",
        "ci.commands:dispatch",
        "start the sweep workflow on GitHub or GitLab through its API (token from the environment)",
        "GITHUB_TOKEN=... mlci ci dispatch lr-search",
    )
    p.add_argument("sweep", help="name of the sweep (a key under sweeps: in mlci.yaml)")
    p.add_argument("--host", choices=("github", "gitlab"), help="default: from the CI, the workflow files or origin")
    p.add_argument("--ref", help="the branch to run the workflow on (default: the current branch)")
    p.add_argument("--repo", help="OWNER/NAME (GitHub) or project id/path (GitLab); default from CI or origin")
    p.add_argument("--api-url", help="API root (default GITHUB_API_URL / CI_API_V4_URL, else the public host)")
    p.add_argument("--no-push", action="store_true", help="do not push the ledger first")
