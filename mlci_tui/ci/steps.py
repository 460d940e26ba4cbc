"""The steps of the generated CI jobs: each is `mlci ci run STEP`, here, and the same on a laptop.

A step is a small function over a `StepContext` (repository, config, CI context from the
environment). Most steps are made of mlci commands: each is echoed first (`$ mlci ...`) so
the CI log reads like a shell session, then run in this process by the command's typed
function in `cli/` (the one its argparse handler calls, so it prints the same lines, from
one place), never through the argument parser. `JOBS` lists the steps of each
generated job in order: the workflow generators and `mlci ci run --job` both read it, so
the workflow and the local run cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.ci import api
from mlci_tui.ci import env as env_mod
from mlci_tui.ci.env import CIContext
from mlci_tui.cli import data as data_cli
from mlci_tui.cli import gate as gate_cli
from mlci_tui.cli import ledger as ledger_cli
from mlci_tui.cli import report as report_cli
from mlci_tui.cli import runs as runs_cli
from mlci_tui.cli import sweep as sweep_cli
from mlci_tui.cli import validate as validate_cli
from mlci_tui.cli.console import run_reporting_failures
from mlci_tui.errors import CheckFailed, InputError, MlciError
from mlci_tui.gitio import Repo
from mlci_tui.report.post import PostOptions
from mlci_tui.sanitize import display
from mlci_tui.sweep.operations import queued_matrix

POINTER_SUFFIX = ".mlci"
SWEEP_CHILD_PIPELINE = "mlci-sweep-trials.yml"
BOT_NAME = "mlci"
BOT_EMAIL = "mlci@localhost"


@dataclass
class StepContext:
    repo: Repo
    ci: CIContext
    env: dict[str, str]
    _cfg: config_mod.Config | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, repo: Repo, *, event: str | None = None, base: str | None = None) -> StepContext:
        """The context of `mlci ci run`: this process's environment, the CI it names, `event` and `base` if given."""
        environ = dict(os.environ)
        base_sha = (repo.commit_of(base) or base) if base else None
        return cls(repo, env_mod.detect(environ, event=event, base=base_sha), environ)

    @property
    def cfg(self) -> config_mod.Config:
        if self._cfg is None:
            self._cfg = config_mod.load(self.repo.root)
        return self._cfg

    @property
    def ci_cfg(self) -> dict[str, Any]:
        return dict(self.cfg.data.get("ci") or {})

    def say(self, text: str) -> None:
        print(f"mlci ci: {display(text)}", flush=True)

    def child_env(self) -> dict[str, str]:
        env = dict(self.env)
        env["MLCI_NO_HOOKS"] = "1"  # a CI checkout has no hooks; a git command here must not run ours either
        env.setdefault("GIT_TERMINAL_PROMPT", "0")
        token = env.get("MLCI_GITLAB_PUSH_TOKEN")
        if token and self.ci.host == "gitlab":
            # GitLab's job token cannot push: authenticate git with a project access token, through the
            # environment (GIT_CONFIG_*), so it is never written to .git/config or printed
            basic = base64.b64encode(f"oauth2:{token}".encode()).decode()
            n = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
            env[f"GIT_CONFIG_KEY_{n}"] = "http.extraHeader"
            env[f"GIT_CONFIG_VALUE_{n}"] = f"Authorization: Basic {basic}"
            env["GIT_CONFIG_COUNT"] = str(n + 1)
        return env

    def mlci(self, command: tuple[str, ...], action: Callable[[], int]) -> int:
        """`mlci COMMAND` as a user would type it: echoed, then `action` (the command's typed function
        in `cli/`) run in the step's environment; its exit code, its failure printed as `mlci` prints one.
        """
        print(f"$ mlci {display(shlex.join(command))}", flush=True)
        try:
            with self.environment():
                return run_reporting_failures(action)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    @contextmanager
    def environment(self) -> Iterator[None]:
        """The step's environment (`child_env`) in place of this process's while a command runs.

        The core starts git itself and reads credentials from `os.environ`: the GitLab push
        token's header and MLCI_NO_HOOKS must reach those git processes too.
        """
        saved = dict(os.environ)
        os.environ.update(self.child_env())
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["git", *args], cwd=self.repo.root, env=self.child_env(), capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise MlciError(f"git {args[0]} failed: {display(last)}")
        return proc


@dataclass(frozen=True)
class Step:
    name: str
    summary: str  # one line: the comment above the step in the generated workflow
    func: Callable[[StepContext], int]
    always: bool = False  # runs even when an earlier step of the job failed (ledger push)
    env: tuple[str, ...] = ()  # variables the workflow passes to this step (tokens, inputs)


# ---------------------------------------------------------------- ledger


def ledger_pull(ctx: StepContext) -> int:
    """A CI checkout never has refs/mlci/ledger (actions/checkout fetches branches and tags only)."""
    return ctx.mlci(("ledger", "pull"), lambda: ledger_cli.pull(ctx.repo))


def ledger_push(ctx: StepContext) -> int:
    return ctx.mlci(("ledger", "push"), lambda: ledger_cli.push(ctx.repo))


# ---------------------------------------------------------------- data


def _ls_files(ctx: StepContext, *patterns: str) -> list[str]:
    out = ctx.git("ls-files", "-z", "--", *patterns).stdout
    return [p for p in out.split("\0") if p]


def pointer_files(ctx: StepContext) -> list[str]:
    return _ls_files(ctx, f"*{POINTER_SUFFIX}")


def data_pull(ctx: StepContext) -> int:
    if not pointer_files(ctx):
        ctx.say("no tracked datasets (no *.mlci pointer files): nothing to pull")
        return 0
    return ctx.mlci(("data", "pull"), lambda: data_cli.pull(ctx.repo))


def data_update(ctx: StepContext) -> int:
    if not pointer_files(ctx):
        ctx.say("no tracked datasets: nothing to update")
        return 0
    return ctx.mlci(("data", "update"), lambda: data_cli.update(ctx.repo))


def _ensure_commit(ctx: StepContext, sha: str) -> bool:
    """Make `sha` readable in a shallow clone (one commit, depth 1); False when the remote lacks it."""
    if ctx.repo.commit_of(sha):
        return True
    remote = ctx.cfg.remote
    proc = ctx.git("fetch", "--no-tags", "--quiet", "--depth=1", remote, sha, check=False)
    return proc.returncode == 0 and ctx.repo.commit_of(sha) is not None


def declared_datasets(ctx: StepContext) -> list[str]:
    """Paths of the datasets mlci.yaml declares (`datasets:`), when the validation feature is present."""
    section = ctx.cfg.data.get("datasets")
    if not isinstance(section, dict):
        return []
    return [str(spec["path"]) for spec in section.values() if isinstance(spec, dict) and spec.get("path")]


def changed_paths(ctx: StepContext, base: str) -> set[str]:
    """Dataset paths whose pointer or file differs between `base` and HEAD (both read from git objects)."""
    out = ctx.git("diff", "--no-renames", "--name-only", "-z", base, "HEAD").stdout
    changed = {p for p in out.split("\0") if p}
    picked = set(changed)
    picked |= {p.removesuffix(POINTER_SUFFIX) for p in changed if p.endswith(POINTER_SUFFIX)}
    picked |= {p.removesuffix(".dvc") for p in changed if p.endswith(".dvc")}
    return picked


def validate(ctx: StepContext) -> int:
    """Validate the declared datasets this change touches (all of them without a base, or when mlci.yaml changed)."""
    declared = declared_datasets(ctx)
    if not declared:
        ctx.say("no datasets declared in mlci.yaml (datasets:): nothing to validate")
        return 0
    base = ctx.ci.base_sha
    if base and _ensure_commit(ctx, base):
        changed = changed_paths(ctx, base)
        if config_mod.CONFIG_FILE in changed:
            ctx.say(f"mlci.yaml changed since {base[:12]}: validating every declared dataset")
            return _validate(ctx, [], base)
        paths = sorted(d for d in declared if d in changed)
        undeclared = sorted(
            p.removesuffix(POINTER_SUFFIX)
            for p in changed
            if p.endswith(POINTER_SUFFIX) and p[: -len(POINTER_SUFFIX)] not in declared
        )
        if undeclared:
            ctx.say(f"changed but not declared under datasets: (no schema to check): {', '.join(undeclared)}")
        if not paths:
            ctx.say(f"no declared dataset changed since {base[:12]}: nothing to validate")
            return 0
        ctx.say(f"{len(paths)} dataset(s) changed since {base[:12]}: {', '.join(paths)}")
        return _validate(ctx, paths, base)
    if base:
        ctx.say(f"base commit {base[:12]} is not on the remote: validating every declared dataset")
    return _validate(ctx, [], None)


def _validate(ctx: StepContext, paths: list[str], base: str | None) -> int:
    command = ("data", "validate", *paths, *(("--base", base) if base else ()))
    return ctx.mlci(command, lambda: validate_cli.validate(ctx.repo, paths, base=base))


# ---------------------------------------------------------------- runs


def train(ctx: StepContext) -> int:
    """Run `train.command` and record its metrics as a `ci` run of HEAD; without one, capture HEAD."""
    command = ctx.cfg.data["train"].get("command")
    if not command:
        ctx.say("no train.command in mlci.yaml: capturing the committed params and metrics of HEAD")
        return _capture_head(ctx)
    print(f"$ {display(command)}", flush=True)
    proc = subprocess.run(command, shell=True, cwd=ctx.repo.root, env=ctx.child_env(), check=False)  # noqa: S602
    if proc.returncode != 0:
        raise CheckFailed(f"train.command failed with exit code {proc.returncode}: {display(command)}")
    message = f"ci: {ctx.ci.event} retrain"
    return ctx.mlci(
        ("record", "--commit", "HEAD", "-m", message),
        lambda: runs_cli.record(ctx.repo, commit="HEAD", message=message),
    )


def capture(ctx: StepContext) -> int:
    """Capture the pushed commits (the whole push when history allows, else HEAD)."""
    base = ctx.ci.base_sha
    if base and ctx.repo.commit_of(base) and not ctx.repo.is_shallow() and ctx.repo.is_ancestor(base, "HEAD"):
        range_spec = f"{base}..HEAD"
        return ctx.mlci(("capture", "--range", range_spec), lambda: runs_cli.capture(ctx.repo, range_spec=range_spec))
    if base:
        ctx.say("the history of this push is not in the clone (fetch-depth 0 gets it): capturing HEAD only")
    return _capture_head(ctx)


def _capture_head(ctx: StepContext) -> int:
    return ctx.mlci(("capture", "HEAD"), lambda: runs_cli.capture(ctx.repo, ["HEAD"]))


def gate(ctx: StepContext) -> int:
    return ctx.mlci(("gate",), lambda: gate_cli.gate(ctx.repo))


POST_TOKENS = {"github": ("GITHUB_TOKEN", "GH_TOKEN"), "gitlab": ("GITLAB_TOKEN",)}


def report(ctx: StepContext) -> int:
    """Write the report; on a pull request also create or update its comment (token from the environment).

    Posting is the reviewer's convenience, the gate is the check: a missing token or a failed
    post is a warning (a GitHub annotation in Actions), and the job goes on to the gate.
    """
    out = str(ctx.ci_cfg.get("report_file") or "mlci-report.md")
    command: tuple[str, ...] = ("report", "--format", "md", "-o", out)
    post = ctx.ci.event == "pull_request" and ctx.ci.host in POST_TOKENS
    if post and not any(ctx.env.get(k) for k in POST_TOKENS[ctx.ci.host]):
        _warn(ctx, f"no {' or '.join(POST_TOKENS[ctx.ci.host])} in this step's environment: report not posted")
        post = False
    posting = None
    if post:
        posting = PostOptions(ctx.ci.host)  # the request and the token: from the step's environment
        command += ("--post", ctx.ci.host)
    code = ctx.mlci(
        command, lambda: report_cli.report(ctx.repo, fmt="md", output=out, posting=posting, env=ctx.child_env())
    )
    if code and post and (ctx.repo.root / out).is_file():
        _warn(ctx, f"posting the report failed (above); it is in {out}; the gate still decides")
        code = 0
    summary = ctx.env.get("GITHUB_STEP_SUMMARY")
    if code == 0 and summary and not post and (ctx.repo.root / out).is_file():
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write((ctx.repo.root / out).read_text(encoding="utf-8") + "\n")
    return code


def _warn(ctx: StepContext, text: str) -> None:
    if ctx.ci.host == "github":
        print(f"::warning title=mlci::{display(text)}", flush=True)
    else:
        print(f"mlci ci: warning: {display(text)}", flush=True)


# ---------------------------------------------------------------- scheduled promotion


def _default_branch(ctx: StepContext) -> str:
    if ctx.ci.default_branch:
        return ctx.ci.default_branch
    proc = ctx.git("symbolic-ref", "--short", "-q", f"refs/remotes/{ctx.cfg.remote}/HEAD", check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip().split("/", 1)[-1]
    proc = ctx.git("symbolic-ref", "--short", "-q", "HEAD", check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip()
    raise InputError("cannot tell the default branch: set CI_DEFAULT_BRANCH or check out a branch")


def _files_to_commit(ctx: StepContext) -> list[str]:
    """Tracked files the retrain changed (pointers, metrics, params) and pointer files it created."""
    status = ctx.git("status", "--porcelain=v1", "-z", "--untracked-files=all").stdout
    entries = [e for e in status.split("\0") if e]
    paths = []
    for entry in entries:
        code, path = entry[:2], entry[3:]
        tracked_change = code[1] in "MTD" or code[0] in "MTDA"
        new_pointer = code == "??" and path.endswith(POINTER_SUFFIX)
        new_result = code == "??" and path in ctx.cfg.metrics_files
        if tracked_change or new_pointer or new_result:
            paths.append(path)
    return sorted(set(paths))


def promote(ctx: StepContext) -> int:
    """After the gate passed: commit the refreshed pointers and results, publish the commit, promote its run.

    `ci.schedule.promote: push` pushes the commit to the default branch; `pr` (default) pushes a
    new branch and opens a pull request. Either way the promotion names a real, pushed commit.
    """
    schedule = ctx.ci_cfg.get("schedule") or {}
    mode, stage = schedule.get("promote", "pr"), schedule.get("stage", "deployed")
    paths = _files_to_commit(ctx)
    if not paths:
        ctx.say("the retrain changed no tracked file: nothing to commit or promote")
        return 0
    ctx.say(f"committing {len(paths)} file(s): {', '.join(paths)}")
    ctx.git("add", "--", *paths)
    identity = {
        "GIT_AUTHOR_NAME": ctx.env.get("GIT_AUTHOR_NAME") or BOT_NAME,
        "GIT_AUTHOR_EMAIL": ctx.env.get("GIT_AUTHOR_EMAIL") or BOT_EMAIL,
        "GIT_COMMITTER_NAME": ctx.env.get("GIT_COMMITTER_NAME") or BOT_NAME,
        "GIT_COMMITTER_EMAIL": ctx.env.get("GIT_COMMITTER_EMAIL") or BOT_EMAIL,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    message = f"mlci: scheduled retrain {stamp}\n\nData refreshed and model retrained by the scheduled CI job; the gate passed."
    subprocess.run(
        ["git", "commit", "-q", "--no-verify", "-m", message],
        cwd=ctx.repo.root,
        env={**ctx.child_env(), **identity},
        check=True,
    )
    if any(p.endswith(POINTER_SUFFIX) for p in paths):
        # the refreshed data must be on the data remote before a commit naming it is published
        code = ctx.mlci(("data", "push"), lambda: data_cli.push(ctx.repo))
        if code:
            return code
    base_branch = _default_branch(ctx)
    branch = base_branch if mode == "push" else f"{schedule.get('branch', 'mlci/retrain')}-{stamp}"
    ctx.git("push", "--no-verify", "--quiet", ctx.cfg.remote, f"HEAD:refs/heads/{branch}")
    ctx.say(f"pushed the retrained commit to {branch}")
    code = _capture_head(ctx)
    if code:
        return code
    code = ctx.mlci(("promote", "HEAD", "--stage", stage), lambda: gate_cli.promote(ctx.repo, "HEAD", stage=stage))
    if code:
        return code
    if mode == "pr" and ctx.ci.host in ("github", "gitlab"):
        host = api.host_for(ctx.ci.host, ctx.env)
        url = api.open_pull_request(
            host,
            branch=branch,
            base=base_branch,
            title=f"mlci: scheduled retrain {stamp}",
            body="Data refreshed and the model retrained by the scheduled mlci job. "
            f"The gate passed against the previous `{stage}` model, and this commit's run is now promoted to "
            f"`{stage}`. Merge to bring the refreshed pointers and results onto {base_branch}.",
        )
        ctx.say(f"opened {url or 'the pull request'}")
    elif mode == "pr":
        ctx.say(f"not in CI: open a pull request from {branch} yourself")
    return 0


# ---------------------------------------------------------------- sweeps


def _sweep_name(ctx: StepContext) -> str:
    name = ctx.env.get("MLCI_SWEEP", "").strip()
    if not name:
        raise InputError("MLCI_SWEEP is not set: the name of the sweep to run (a key under sweeps: in mlci.yaml)")
    return name


def trial_ids(doc: Any) -> list[str]:
    """Trial ids from a sweep matrix: a list of ids, of objects, or `{"include": [...]}` as `mlci sweep matrix` prints it."""
    if isinstance(doc, dict):
        doc = doc.get("include", doc.get("trials", []))
    if not isinstance(doc, list):
        raise InputError("`mlci sweep matrix` printed something that is not a list of trials")
    out: list[str] = []
    for item in doc:
        if isinstance(item, dict):
            item = item.get("trial") or item.get("trial_id") or item.get("id")
        if not isinstance(item, str) or not item:
            raise InputError("`mlci sweep matrix` printed a trial without an id")
        out.append(item)
    return out


def child_pipeline(trials: list[str], *, image: str, install: str) -> str:
    """The GitLab child pipeline: one job per pending trial (GitLab matrices cannot be computed at run time)."""
    lines = [
        "# Generated by `mlci ci run sweep-matrix`: one job per pending trial of the sweep.",
        "default:",
        f"  image: {json.dumps(image)}",
        "variables:",
        '  GIT_DEPTH: "1"',
        '  MLCI_NO_HOOKS: "1"',
    ]
    if not trials:
        lines += ["mlci-no-trials:", "  script:", "    - echo 'no pending trials'"]
    for tid in trials:
        lines += [
            f"mlci-trial-{tid}:",
            "  variables:",
            f"    MLCI_TRIAL: {json.dumps(tid)}",
            "  script:",
            f"    - {json.dumps(install)}",
            "    - mlci ci run ledger-pull",
            "    - mlci ci run sweep-trial",
        ]
    return "\n".join(lines) + "\n"


def sweep_matrix(ctx: StepContext) -> int:
    """The pending trials, handed to the trial jobs: GITHUB_OUTPUT `trials`, or a GitLab child pipeline."""
    name = _sweep_name(ctx)
    matrix: list[dict[str, str]] = []

    def read() -> int:
        matrix.extend(queued_matrix(ctx.repo, name))
        return 0

    code = ctx.mlci(("sweep", "matrix", name), read)
    if code:
        return code
    trials = trial_ids(matrix)
    ctx.say(f"sweep {name}: {len(trials)} pending trial(s)")
    if ctx.ci.output_file:
        with open(ctx.ci.output_file, "a", encoding="utf-8") as fh:
            fh.write(f"trials={json.dumps(trials, separators=(',', ':'))}\n")
    if ctx.ci.host != "github":
        image = ctx.env.get("MLCI_IMAGE") or f"python:{ctx.ci_cfg.get('python') or '3.11'}"
        install = ctx.env.get("MLCI_INSTALL") or install_command(ctx.repo.root, ctx.ci_cfg)
        target = ctx.repo.root / SWEEP_CHILD_PIPELINE
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(child_pipeline(trials, image=image, install=install), encoding="utf-8")
        os.replace(tmp, target)
        ctx.say(f"wrote {SWEEP_CHILD_PIPELINE}")
    return 0


def sweep_trial(ctx: StepContext) -> int:
    trial = ctx.env.get("MLCI_TRIAL", "").strip()
    if not trial:
        raise InputError("MLCI_TRIAL is not set: the id of the trial to run (from the sweep matrix)")
    return ctx.mlci(("sweep", "work", "--trial", trial), lambda: sweep_cli.work(ctx.repo, trial))


def install_command(root: Path, ci_cfg: Mapping[str, Any]) -> str:
    """The install line of the generated jobs: `ci.install`, else mlci plus requirements.txt if present."""
    if ci_cfg.get("install"):
        return str(ci_cfg["install"])
    extra = " -r requirements.txt" if (root / "requirements.txt").is_file() else ""
    return f"python -m pip install mlci-tui{extra}"


# ---------------------------------------------------------------- registry

STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("ledger-pull", "fetch the mlci ledger (refs/mlci/ledger): checkouts never fetch it", ledger_pull),
        Step("data-pull", "download the datasets this commit's pointer files name from the data remote", data_pull),
        Step("validate", "validate the datasets this change touches against mlci.yaml's datasets: schema", validate),
        Step("train", "run train.command and record its metrics as a ci run of HEAD (or capture HEAD)", train),
        Step(
            "report",
            "write the report and post it as one comment on the pull request",
            report,
            env=("GITHUB_TOKEN",),
        ),
        Step("gate", "compare the candidate with the deployed model using gate.rules: fails on regression", gate),
        Step("capture", "capture the pushed commits' params and metrics into the ledger", capture),
        Step("ledger-push", "push the ledger (runs, promotions) back to the repository", ledger_push, always=True),
        Step("data-update", "re-fetch imported datasets whose source changed (mlci data update)", data_update),
        Step(
            "promote",
            "commit refreshed pointers and results, push them, promote the new commit's run",
            promote,
            env=("GITHUB_TOKEN",),
        ),
        Step("sweep-matrix", "list the sweep's pending trials for the trial jobs", sweep_matrix, env=("MLCI_SWEEP",)),
        Step("sweep-trial", "run one trial and push its result to the ledger", sweep_trial, env=("MLCI_TRIAL",)),
    )
}

JOBS: dict[str, list[str]] = {
    "pull-request": ["ledger-pull", "data-pull", "validate", "train", "report", "gate"],
    "push": ["ledger-pull", "capture", "ledger-push"],
    "schedule": ["ledger-pull", "data-pull", "data-update", "train", "gate", "promote", "ledger-push"],
    "sweep-matrix": ["ledger-pull", "sweep-matrix"],
    "sweep-trial": ["ledger-pull", "sweep-trial"],
}


def run_step(name: str, ctx: StepContext) -> int:
    step = STEPS.get(name)
    if step is None:
        raise InputError(f"unknown step {display(name)!r} (steps: {', '.join(STEPS)})")
    return step.func(ctx)


def run_job(job: str, ctx: StepContext) -> int:
    """The job's steps in order, as CI runs them: stop at the first failure, but still run `always` steps."""
    names = JOBS.get(job)
    if names is None:
        raise InputError(f"unknown job {display(job)!r} (jobs: {', '.join(JOBS)})")
    failed = 0
    for name in names:
        if failed and not STEPS[name].always:
            continue
        print(f"::: mlci ci run {name}", flush=True)
        try:
            code = run_step(name, ctx)
        except MlciError as exc:
            print(f"mlci: {display(str(exc))}", file=sys.stderr, flush=True)
            code = exc.exit_code
        if code and not failed:
            failed = code
            ctx.say(f"step {name} failed (exit {code})")
    return failed
