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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.ci import api, trust
from mlci_tui.ci import env as env_mod
from mlci_tui.ci.env import CIContext
from mlci_tui.ci.install import pin
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
from mlci_tui.sweep.operations import ci_runner, queued_matrix

POINTER_SUFFIX = ".mlci"
SWEEP_CHILD_PIPELINE = "mlci-sweep-trials.yml"
LEDGER_BUNDLE = "mlci-ledger.bundle"  # the pull-request job's new ledger records, for the job that posts
BOT_NAME = "mlci"
BOT_EMAIL = "mlci@localhost"

DEFAULT_RUNNER = "ubuntu-latest"  # GitHub jobs' runs-on when nothing asks for another runner


@dataclass
class StepContext:
    repo: Repo
    ci: CIContext
    env: dict[str, str]
    config_from: str | None = None  # where the trusted keys are read (default: a PR's base commit)
    _cfg: config_mod.Config | None = field(default=None, repr=False)
    _trusted: config_mod.Config | None = field(default=None, repr=False)

    @classmethod
    def from_environment(
        cls,
        repo: Repo,
        *,
        event: str | None = None,
        base: str | None = None,
        head: str | None = None,
        config_from: str | None = None,
    ) -> StepContext:
        """The context of `mlci ci run`: this process's environment, the CI it names, and the flags given."""
        environ = dict(os.environ)
        base_sha, head_sha = ((repo.commit_of(r) or r) if r else None for r in (base, head))
        ci = env_mod.detect(environ, event=event, base=base_sha, head=head_sha)
        return cls(repo, ci, environ, config_from=config_from)

    @property
    def cfg(self) -> config_mod.Config:
        """The config of the checkout: on a pull request, the PR's own."""
        if self._cfg is None:
            self._cfg = config_mod.load(self.repo.root)
        return self._cfg

    @property
    def pr_controlled(self) -> bool:
        """The checkout is a pull request's: its config and code are the contributor's (see ci/trust.py)."""
        return self.ci.event == "pull_request"

    @property
    def trusted_cfg(self) -> config_mod.Config:
        """The config the keys a PR must not choose are read from: `config_from`, else on a pull
        request its base commit (fetched alone in a shallow clone), else the checkout's."""
        if self._trusted is None:
            rev = self.config_from or (self.ci.base_sha if self.pr_controlled else None)
            if not rev:
                if self.pr_controlled:
                    raise InputError("a pull request without a base commit: pass --base REV (or --config-from REV)")
                self._trusted = self.cfg
            else:
                if not _ensure_commit(self, rev):
                    raise InputError(f"base commit {display(rev)} is not on the remote: cannot read its mlci.yaml")
                self._trusted = config_mod.load_from_git(self.repo, rev)
        return self._trusted

    @property
    def ci_cfg(self) -> dict[str, Any]:
        return dict(self.cfg.data.get("ci") or {})

    def say(self, text: str) -> None:
        print(f"mlci ci: {display(text)}", flush=True)

    def child_env(self) -> dict[str, str]:
        env = dict(self.env)
        env["MLCI_NO_HOOKS"] = "1"  # a CI checkout has no hooks; a git command here must not run ours either
        env.setdefault("GIT_TERMINAL_PROMPT", "0")
        # git credentials through the environment (GIT_CONFIG_*), never written to .git/config or printed:
        # GitLab's job token cannot push (a project access token can); the GitHub pull-request job checks
        # out without persisted credentials, and only its steps before any PR code get the job token
        if self.ci.host == "gitlab" and env.get("MLCI_GITLAB_PUSH_TOKEN"):
            _git_header(env, "oauth2", env["MLCI_GITLAB_PUSH_TOKEN"])
        elif self.ci.host == "github" and env.get("MLCI_GIT_TOKEN"):
            _git_header(env, "x-access-token", env["MLCI_GIT_TOKEN"])
        return env

    def untrusted_env(self) -> dict[str, str]:
        """The environment PR-controlled commands run in: on a pull request, no token and no git credentials."""
        env = self.child_env()
        return trust.without_secrets(env) if self.pr_controlled else env

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


def _git_header(env: dict[str, str], user: str, token: str) -> None:
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    n = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    env[f"GIT_CONFIG_KEY_{n}"] = "http.extraHeader"
    env[f"GIT_CONFIG_VALUE_{n}"] = f"Authorization: Basic {basic}"
    env["GIT_CONFIG_COUNT"] = str(n + 1)


@dataclass(frozen=True)
class Step:
    name: str
    summary: str  # one line: the comment above the step in the generated workflow
    func: Callable[[StepContext], int]
    always: bool = False  # runs even when an earlier step of the job failed (ledger push)
    env: tuple[str, ...] = ()  # variables the workflow passes to this step (tokens, inputs)
    runs_pr_code: bool = False  # runs what a pull request controls: no token here or in any later step of its job


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
    """`mlci data pull`, from the remote the trusted config names (a PR's base branch: see trusted_cfg)."""
    if not pointer_files(ctx):
        ctx.say("no tracked datasets (no *.mlci pointer files): nothing to pull")
        return 0
    settings = dict(ctx.trusted_cfg.data["data"])
    if ctx.pr_controlled:
        if not settings.get("remotes"):
            raise InputError(
                "the base branch's mlci.yaml declares no data remote: a pull request cannot choose where data "
                "comes from; merge data.remotes first"
            )
        ctx.say("data remote: the base branch's data.remote and data.remotes, whatever this pull request says")
    code = ctx.mlci(("data", "pull"), lambda: data_cli.pull(ctx.repo, settings=settings))
    base = ctx.ci.base_sha
    if code == 0 and base and _ensure_commit(ctx, base):
        # the base commit's versions too, into the cache only: the report diffs the data against them
        fetched = ctx.mlci(
            ("data", "fetch", "--rev", base), lambda: data_cli.fetch_at(ctx.repo, base, settings=settings)
        )
        if fetched != 0:
            ctx.say("warning: the base commit's data versions were not all fetched: the report skips their diff")
    return code


def base_config(ctx: StepContext) -> int:
    """On a pull request: fetch the base commit and name the PR-controlled keys this PR changes, and what the job does."""
    if not ctx.pr_controlled:
        ctx.say("not a pull request: the checkout's own mlci.yaml is trusted")
        return 0
    base = ctx.trusted_cfg  # fetches the base commit in a depth-1 clone
    changed = trust.changed_keys(ctx.cfg.data, base.data)
    if not changed:
        ctx.say("this pull request changes none of train.command, data.remote, data.remotes, ci.install")
    for item in changed:
        ctx.say(f"this pull request changes {item.key}, which {item.acts}: {item.fence}")
    return 0


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


DVC_PIPELINE = "dvc.yaml"


def train(ctx: StepContext) -> int:
    """Run `train.command` (in a DVC project: `dvc pull`, then it or `dvc repro`) and record the metrics
    as a `ci` run of HEAD; without either, capture HEAD. On a pull request these commands are the
    contributor's: they run with no token in their environment."""
    command = ctx.cfg.data["train"].get("command")
    dvc = (ctx.repo.root / DVC_PIPELINE).is_file()
    if not command and not dvc:
        ctx.say("no train.command in mlci.yaml: capturing the committed params and metrics of HEAD")
        return _capture_head(ctx)
    if dvc:
        # DVC keeps its outputs (metrics too) out of git: they exist only in this working tree once reproduced
        ctx.say(f"{DVC_PIPELINE} at the root: dvc pull, then {'train.command' if command else 'dvc repro'}")
    env = ctx.untrusted_env()
    if dvc:
        _run_untrusted("dvc pull", ctx, env)
    count, seed_param, seed_env = ctx.cfg.repeat_settings()
    message = f"ci: {ctx.ci.event} retrain"
    if count == 1:
        _run_untrusted(command or "dvc repro", ctx, env)
        return ctx.mlci(
            ("record", "--commit", "HEAD", "-m", message),
            lambda: runs_cli.record(ctx.repo, commit="HEAD", message=message),
        )
    ctx.say(f"train.repeats: {count} trainings of HEAD, seed {seed_param or '$' + str(seed_env)} = 0..{count - 1}")
    for index in range(count):  # each a repeat of HEAD: one group, as the noise-aware gate reads it
        if seed_param:
            from mlci_tui.sweep.params_io import apply_params

            apply_params(ctx.repo.root, {seed_param: index}, ctx.cfg.params_files[0])
        _run_untrusted(command or "dvc repro", ctx, {**env, **({seed_env: str(index)} if seed_env else {})})
        code = ctx.mlci(
            ("record", "--commit", "HEAD", "--repeat", str(index), "-m", message),
            partial(runs_cli.record, ctx.repo, commit="HEAD", message=message, repeat=index),
        )
        if code:
            return code
    return 0


def _run_untrusted(line: str, ctx: StepContext, env: dict[str, str]) -> None:
    """A shell line of the config (on a pull request, the contributor's): echoed, run without tokens."""
    print(f"$ {display(line)}", flush=True)
    proc = subprocess.run(line, shell=True, cwd=ctx.repo.root, env=env, check=False)  # noqa: S602
    if proc.returncode != 0:
        raise CheckFailed(f"{display(line)} failed with exit code {proc.returncode}")


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
    """Write the report file (and the GitHub job summary). Posting it is `post-report`'s, in a job of its own."""
    out = _report_file(ctx)
    code = ctx.mlci(("report", "--format", "md", "-o", out), lambda: report_cli.report(ctx.repo, fmt="md", output=out))
    summary = ctx.env.get("GITHUB_STEP_SUMMARY")
    if code == 0 and summary and (ctx.repo.root / out).is_file():
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write((ctx.repo.root / out).read_text(encoding="utf-8") + "\n")
    return code


def _report_file(ctx: StepContext) -> str:
    return str(ctx.ci_cfg.get("report_file") or "mlci-report.md")


def post_report(ctx: StepContext) -> int:
    """Build the report of the PR's head commit here (the base branch's checkout, config and gate rules,
    with the runs the pull-request job bundled) and create or update its one comment.

    Posting is the reviewer's convenience, the gate is the check: a missing token or a failed
    post is a warning (a GitHub annotation in Actions), not a failure.
    """
    head = ctx.ci.head_sha or "HEAD"
    if head != "HEAD" and not _ensure_commit(ctx, head):
        raise InputError(f"the pull request's head commit {display(head)} is not on the remote")
    out = _report_file(ctx)
    command: tuple[str, ...] = ("report", "--head", head, "--format", "md", "-o", out)
    post = ctx.ci.event == "pull_request" and ctx.ci.host in POST_TOKENS
    if post and not any(ctx.env.get(k) for k in POST_TOKENS[ctx.ci.host]):
        _warn(ctx, f"no {' or '.join(POST_TOKENS[ctx.ci.host])} in this step's environment: report not posted")
        post = False
    posting = None
    if post:
        posting = PostOptions(ctx.ci.host)  # the request and the token: from the step's environment
        command += ("--post", ctx.ci.host)
    code = ctx.mlci(
        command,
        lambda: report_cli.report(ctx.repo, head=head, fmt="md", output=out, posting=posting, env=ctx.child_env()),
    )
    if code and post and (ctx.repo.root / out).is_file():
        _warn(ctx, f"posting the report failed (above); it is in {out}")
        code = 0
    return code


def ledger_bundle(ctx: StepContext) -> int:
    """The ledger records this job wrote, as a git bundle the posting job merges (`ledger-unbundle`)."""
    from mlci_tui.ledger.store import LEDGER_REF, remote_ref

    if not ctx.repo.rev_parse(LEDGER_REF):
        ctx.say("no ledger here: nothing to bundle")
        return 0
    pulled = remote_ref(ctx.cfg.remote)
    since = (f"^{pulled}",) if ctx.repo.rev_parse(pulled) else ()
    if since and ctx.repo.rev_parse(pulled) == ctx.repo.rev_parse(LEDGER_REF):
        ctx.say("this job wrote no ledger record: nothing to bundle")
        return 0
    ctx.git("bundle", "create", "--quiet", LEDGER_BUNDLE, LEDGER_REF, *since)
    ctx.say(f"wrote {LEDGER_BUNDLE}: the runs of this job, for the job that posts the report")
    return 0


def ledger_unbundle(ctx: StepContext) -> int:
    """Merge the pull-request job's bundle into this ledger: checked file by file as a pull from a remote is."""
    if not (ctx.repo.root / LEDGER_BUNDLE).is_file():
        ctx.say(f"no {LEDGER_BUNDLE} from the pull-request job (it stopped before training?): nothing to merge")
        return 0
    return ctx.mlci(("ledger", "pull", "-r", LEDGER_BUNDLE), lambda: ledger_cli.pull(ctx.repo, LEDGER_BUNDLE))


def checkout_base(ctx: StepContext) -> int:
    """Check out a pull request's base commit (untracked files, the downloaded artifacts, stay)."""
    base = ctx.ci.base_sha
    if not base:
        raise InputError("no base commit: this step runs on a pull request (or pass --base REV)")
    if ctx.repo.commit_of("HEAD") == base:
        ctx.say(f"HEAD is the base commit {base[:12]}")
        return 0
    if not _ensure_commit(ctx, base):
        raise InputError(f"base commit {display(base)} is not on the remote")
    ctx.git("checkout", "--quiet", "--detach", base)
    ctx.say(f"checked out the base commit {base[:12]}: its mlci.yaml and gate rules decide the report")
    return 0


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
    runner, wants_gpus = ci_runner(ctx.repo, name)
    if wants_gpus and runner is None:
        ctx.say("warning: resources.gpus asks for GPUs, but no resources.runner names a runner that has them")
    if ctx.ci.output_file:
        with open(ctx.ci.output_file, "a", encoding="utf-8") as fh:
            fh.write(f"trials={json.dumps(trials, separators=(',', ':'))}\n")
            fh.write(f"runner={json.dumps(runner or DEFAULT_RUNNER, separators=(',', ':'))}\n")
    if ctx.ci.host != "github":
        image = ctx.env.get("MLCI_IMAGE") or f"python:{ctx.ci_cfg.get('python') or '3.11'}"
        install = ctx.env.get("MLCI_INSTALL") or pin(ctx.repo.root, ctx.ci_cfg).line
        target = ctx.repo.root / SWEEP_CHILD_PIPELINE
        tmp = target.with_name(target.name + ".tmp")
        from mlci_tui.ci.gitlab import child_pipeline  # the generator reads this module: imported when used

        tmp.write_text(child_pipeline(trials, image=image, install=install, sweep=name, tags=runner), encoding="utf-8")
        os.replace(tmp, target)
        ctx.say(f"wrote {SWEEP_CHILD_PIPELINE}")
    return 0


def sweep_trial(ctx: StepContext) -> int:
    trial = ctx.env.get("MLCI_TRIAL", "").strip()
    if not trial:
        raise InputError("MLCI_TRIAL is not set: the id of the trial to run (from the sweep matrix)")
    return ctx.mlci(("sweep", "work", "--trial", trial), lambda: sweep_cli.work(ctx.repo, trial))


def sweep_collect(ctx: StepContext) -> int:
    """The sweep's last job: fold the trial jobs' results into the ledger; for tpe, queue the next
    wave and dispatch the sweep workflow again, until the sweep's budget is spent."""
    name = _sweep_name(ctx)
    queued: list[int] = []

    def run() -> int:
        code, count = sweep_cli.collect_sweep(ctx.repo, name)
        queued.append(count)
        return code

    code = ctx.mlci(("sweep", "collect", name), run)
    if code or not queued or not queued[0]:
        return code
    from mlci_tui.ci.dispatch import dispatch

    def next_wave() -> int:
        ctx.say(dispatch(ctx.repo.root, name, env=ctx.env, push_ledger=False))
        return 0

    return ctx.mlci(("ci", "dispatch", name, "--no-push"), next_wave)


# ---------------------------------------------------------------- registry

STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step(
            "base-config",
            "a PR's base commit: data.remote and ci.install come from its mlci.yaml, not the PR's",
            base_config,
            env=("MLCI_GIT_TOKEN",),
        ),
        Step(
            "ledger-pull",
            "fetch the mlci ledger (refs/mlci/ledger): checkouts never fetch it",
            ledger_pull,
            env=("MLCI_GIT_TOKEN",),
        ),
        Step("data-pull", "download the datasets this commit's pointer files name from the data remote", data_pull),
        Step("validate", "validate the datasets this change touches against mlci.yaml's datasets: schema", validate),
        Step(
            "train",
            "run train.command (dvc repro) and record its metrics as a ci run of HEAD (or capture HEAD)",
            train,
            runs_pr_code=True,
        ),
        Step("report", "write the report to a file and the job summary", report),
        Step(
            "ledger-bundle",
            "bundle this job's ledger records for the job that posts the report",
            ledger_bundle,
            always=True,
        ),
        Step("checkout-base", "check out the pull request's base commit: its config decides the report", checkout_base),
        Step("ledger-unbundle", "merge the runs the pull-request job bundled into this ledger", ledger_unbundle),
        Step(
            "post-report",
            "build the report of the PR's head and post it as one comment on the pull request",
            post_report,
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
        Step(
            "sweep-collect",
            "fold the trial jobs' results into the ledger; tpe: dispatch the next wave",
            sweep_collect,
            env=("MLCI_SWEEP", "GITHUB_TOKEN"),
        ),
    )
}

JOBS: dict[str, list[str]] = {
    "pull-request": ["base-config", "ledger-pull", "data-pull", "validate", "train", "report", "gate", "ledger-bundle"],
    "pull-request-report": ["checkout-base", "ledger-pull", "ledger-unbundle", "post-report"],
    "push": ["ledger-pull", "capture", "ledger-push"],
    "schedule": ["ledger-pull", "data-pull", "data-update", "train", "gate", "promote", "ledger-push"],
    "sweep-matrix": ["ledger-pull", "sweep-matrix"],
    "sweep-trial": ["ledger-pull", "sweep-trial"],
    "sweep-collect": ["ledger-pull", "sweep-collect"],
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
