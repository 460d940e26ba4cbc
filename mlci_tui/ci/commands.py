"""`mlci ci init`, `mlci ci run`, `mlci ci dispatch`: thin handlers over the ci package."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from mlci_tui import config as config_mod
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

_CRON_FIELD = r"[0-9A-Za-z*/,\-]+"
_CRON = re.compile(rf"^{_CRON_FIELD}(\s+{_CRON_FIELD}){{4}}$")


def _default_branch(repo: Repo, remote: str) -> str:
    for args in (
        ("symbolic-ref", "--short", "-q", f"refs/remotes/{remote}/HEAD"),
        ("symbolic-ref", "--short", "-q", "HEAD"),
    ):
        proc = repo.run(*args, check=False)
        name = proc.stdout.decode().strip()
        if proc.returncode == 0 and name:
            return name.split("/", 1)[1] if args[-1].startswith("refs/remotes/") else name
    return "main"


def _write(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"{display(str(path))} exists: pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".mlci-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def generate(root: Path, host: str, *, schedule: str | None, sweeps: bool, branch: str | None = None) -> dict[str, str]:
    """The files `mlci ci init` writes, path (repo-relative) -> text."""
    from mlci_tui.ci.steps import install_command

    repo = Repo.find(root)
    cfg = config_mod.load(repo.root)
    ci_cfg = cfg.data.get("ci") or {}
    python = str(ci_cfg.get("python") or "3.11")
    install = install_command(repo.root, ci_cfg)
    report_file = str(ci_cfg.get("report_file") or "mlci-report.md")
    if schedule is not None and not _CRON.match(schedule.strip()):
        raise InputError(f"--schedule {display(schedule)!r}: expected a cron expression of 5 fields, e.g. '0 3 * * 1'")
    if host == "github":
        from mlci_tui.ci import github

        files = {
            ".github/workflows/mlci.yml": github.main_workflow(
                branch=branch or _default_branch(repo, cfg.remote),
                python=python,
                install=install,
                schedule=schedule,
                report_file=report_file,
            )
        }
        if sweeps:
            workflow = str(ci_cfg.get("sweep_workflow") or "mlci-sweep.yml")
            files[f".github/workflows/{workflow}"] = github.sweep_workflow(python=python, install=install)
        return files
    from mlci_tui.ci import gitlab

    return {
        ".gitlab-ci.yml": gitlab.pipeline(
            python=python, install=install, schedule=schedule, sweeps=sweeps, report_file=report_file
        )
    }


def init(args: argparse.Namespace) -> int:
    repo = Repo.find()
    files = generate(repo.root, args.host, schedule=args.schedule, sweeps=args.sweeps, branch=args.branch)
    for rel in files:
        if (repo.root / rel).exists() and not args.force:
            raise InputError(f"{rel} exists: pass --force to overwrite it")
    for rel, text in files.items():
        _write(repo.root / rel, text, args.force)
        print(f"wrote {rel}")
    if args.host == "github":
        print("tokens: the workflow uses the job's GITHUB_TOKEN with the permissions declared per job; nothing to set")
        if args.sweeps:
            print("sweeps: `mlci sweep start NAME --executor ci` needs GITHUB_TOKEN (actions: write) in your shell")
    else:
        print("tokens: add masked CI/CD variables GITLAB_TOKEN (api) and MLCI_GITLAB_PUSH_TOKEN (write_repository)")
        if args.schedule:
            print(f"schedule: create a pipeline schedule with cron {args.schedule!r} (Build > Pipeline schedules)")
    print("commit the file(s); see docs/ci.md for what each step does and how to run it locally")
    return 0


def run(args: argparse.Namespace) -> int:
    from mlci_tui.ci import env as env_mod
    from mlci_tui.ci import steps

    if bool(args.step) == bool(args.job):
        raise InputError("name one STEP, or a whole job with --job JOB")
    repo = Repo.find()
    environ = dict(os.environ)
    base = (repo.commit_of(args.base) or args.base) if args.base else None
    ctx = steps.StepContext(repo, env_mod.detect(environ, event=args.event, base=base), environ)
    if args.job:
        return steps.run_job(args.job, ctx)
    code = steps.run_step(args.step, ctx)
    sys.stdout.flush()
    return code


def dispatch(args: argparse.Namespace) -> int:
    from mlci_tui.ci.dispatch import dispatch as dispatch_workflow

    repo = Repo.find()
    message = dispatch_workflow(
        repo.root,
        args.sweep,
        host=args.host,
        ref=args.ref,
        api_url=args.api_url,
        repository=args.repo,
        push_ledger=not args.no_push,
    )
    print(message)
    return 0
