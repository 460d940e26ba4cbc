"""The workflow files `mlci ci init` writes: which ones, their text, and writing them.

The text of each file comes from `github` or `gitlab`; this module picks them, fills in
what the repository says (Python version, install line, report file, default branch) and
writes them without clobbering a file the user has edited unless asked to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from mlci_tui import config as config_mod
from mlci_tui.ci import github, gitlab
from mlci_tui.ci.steps import install_command
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

_CRON_FIELD = r"[0-9A-Za-z*/,\-]+"
_CRON = re.compile(rf"^{_CRON_FIELD}(\s+{_CRON_FIELD}){{4}}$")


def default_branch(repo: Repo, remote: str) -> str:
    """The branch the push job runs on: the remote's HEAD, else the current branch, else main."""
    for args in (
        ("symbolic-ref", "--short", "-q", f"refs/remotes/{remote}/HEAD"),
        ("symbolic-ref", "--short", "-q", "HEAD"),
    ):
        proc = repo.run(*args, check=False)
        name = proc.stdout.decode().strip()
        if proc.returncode == 0 and name:
            return name.split("/", 1)[1] if args[-1].startswith("refs/remotes/") else name
    return "main"


def generate(root: Path, host: str, *, schedule: str | None, sweeps: bool, branch: str | None = None) -> dict[str, str]:
    """The files `mlci ci init` writes, path (repo-relative) -> text."""
    repo = Repo.find(root)
    cfg = config_mod.load(repo.root)
    ci_cfg = cfg.data.get("ci") or {}
    python = str(ci_cfg.get("python") or "3.11")
    install = install_command(repo.root, ci_cfg)
    report_file = str(ci_cfg.get("report_file") or "mlci-report.md")
    if schedule is not None and not _CRON.match(schedule.strip()):
        raise InputError(f"--schedule {display(schedule)!r}: expected a cron expression of 5 fields, e.g. '0 3 * * 1'")
    if host == "github":
        files = {
            ".github/workflows/mlci.yml": github.main_workflow(
                branch=branch or default_branch(repo, cfg.remote),
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
    return {
        ".gitlab-ci.yml": gitlab.pipeline(
            python=python, install=install, schedule=schedule, sweeps=sweeps, report_file=report_file
        )
    }


def write_files(root: Path, files: dict[str, str], *, force: bool, wrote: Callable[[str], None]) -> None:
    """Write every file under `root`, calling `wrote(path)` after each; unless `force`, none if one exists."""
    for rel in files:
        if (root / rel).exists() and not force:
            raise InputError(f"{rel} exists: pass --force to overwrite it")
    for rel, text in files.items():
        write_file(root / rel, text, force)
        wrote(rel)


def write_file(path: Path, text: str, force: bool) -> None:
    """Replace `path` atomically (a reader never sees half a workflow); refused when it exists without `force`."""
    if path.exists() and not force:
        raise InputError(f"{display(str(path))} exists: pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".mlci-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
