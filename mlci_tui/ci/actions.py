"""The mlci commands a CI step is made of, run as calls into the core.

A CI log reads like a shell session: each step echoes `$ mlci COMMAND` and then prints
what that command prints. These functions do the command's work with the same typed core
functions its CLI handler calls, and print the same lines, for the arguments the steps use
(no argument parsing, no second interpreter). Each names the handler it matches; a change
to that command's output belongs in both places, and tests/test_ci_jobs.py runs them all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal

from mlci_tui import config as config_mod
from mlci_tui.cli.console import notice, open_ledger, say
from mlci_tui.errors import CheckFailed, InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

# ---------------------------------------------------------------- ledger (cli/ledger.py)


def ledger_pull(repo: Repo) -> int:
    """`mlci ledger pull`: fetch and union-merge the ledger of the configured remote."""
    from mlci_tui.ledger import sync

    remote = config_mod.load(repo.root).remote
    result = sync.pull(repo, remote)
    for text in result.notices:
        notice(text)
    if result.fetched is None:
        say(f"{remote} has no ledger yet")
    else:
        say(f"ledger merged from {remote}: tip {(result.local_tip or '')[:12]}")
    return 0


def ledger_push(repo: Repo) -> int:
    """`mlci ledger push`: pull, union-merge and push the ledger to the configured remote."""
    from mlci_tui.ledger import sync

    remote = config_mod.load(repo.root).remote
    result = sync.push(repo, remote)
    for text in result.notices:
        notice(text)
    say(f"ledger pushed to {remote}" if result.pushed else f"ledger on {remote} is up to date")
    return 0


# ---------------------------------------------------------------- data (cli/data.py, cli/validate.py)


def data_pull(repo: Repo) -> int:
    """`mlci data pull`: fetch every dataset's objects from data.remote, then check them out."""
    from mlci_tui.data.checkout import checkout

    _transfer(repo, "fetch")  # an incomplete fetch raises: nothing is checked out
    result = checkout(repo.root, repo.state_dir, None, force=False, link=None)
    if result.written or result.removed:
        say(f"checkout: {len(result.written)} files written, {len(result.removed)} removed")
    for path in result.not_cached:
        notice(f"{path}: not in the local cache (run `mlci data pull`)")
    for path in result.kept:
        notice(f"{path}: kept your unsaved change (`mlci data add` saves it; `mlci data checkout --force` discards it)")
    return 1 if result.kept or result.not_cached else 0


def data_push(repo: Repo) -> int:
    """`mlci data push`: upload the objects data.remote lacks."""
    return _transfer(repo, "push")


def _transfer(repo: Repo, verb: Literal["push", "fetch"]) -> int:
    from mlci_tui.data.transfer import sync

    result, name = sync(repo.root, verb, None, None, None)
    say(
        f"{verb}: {result.transferred} objects ({_size(result.bytes)}) transferred, "
        f"{result.present} already {'on ' + name if verb == 'push' else 'in the cache'}"
    )
    for item in result.missing[:20]:
        where = "in the local cache" if verb == "push" else f"on remote {name}"
        notice(f"not {where}: {item}")
    for item in result.failed[:20]:
        notice(f"failed: {item}")
    if result.failed or result.missing:
        direction, absent = ("to", "not cached") if verb == "push" else ("from", "missing")
        raise CheckFailed(
            f"{verb} {direction} {name} incomplete: {len(result.failed)} failed, {len(result.missing)} {absent}"
        )
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def data_update(repo: Repo) -> int:
    """`mlci data update`: re-fetch every imported dataset whose source changed."""
    from mlci_tui.data.import_url import update_imports

    changes = update_imports(repo.root, [], state_dir=repo.state_dir, cwd=Path.cwd())
    if not changes:
        say("no imported datasets (`mlci data import-url URL PATH` makes one)")
        return 0
    for change in changes:
        say(display(change.line()))
    changed = sum(c.status == "updated" for c in changes)
    say(f"{changed} of {len(changes)} imported dataset(s) changed")
    return 0


def data_validate(repo: Repo, paths: list[str], *, base: str | None) -> int:
    """`mlci data validate [PATH...] [--base BASE]`: the working tree's datasets against their schema; 1 on failure."""
    from mlci_tui.errors import EXIT_FAILED, EXIT_OK
    from mlci_tui.validate import source
    from mlci_tui.validate.report import print_text
    from mlci_tui.validate.run import validate_datasets

    results = validate_datasets(repo, paths, source.version_at(repo, None), base=base)
    print_text(results, sys.stdout)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK


# ---------------------------------------------------------------- runs (cli/runs.py)


def capture(repo: Repo, revs: list[str], *, range_spec: str | None = None) -> int:
    """`mlci capture REV...` or `mlci capture --range A..B`: runs from the committed files."""
    from mlci_tui.capture.write import capture_revs

    config_mod.load(repo.root)  # a broken working-tree config is reported before any work
    report = capture_revs(repo, revs, range_spec=range_spec)
    for rec in report.added:
        say(f"captured {rec['commit'][:12]} as run {rec['run_id'][:8]}")
    if report.present:
        say(f"{len(report.present)} commit(s) already in the ledger")
    if report.empty:
        say(f"{len(report.empty)} commit(s) hold no params or metrics files: no run")
    return 0


def record(repo: Repo, *, commit: str, message: str) -> int:
    """`mlci record --commit REV -m MESSAGE`: the working tree's params and metrics as a `ci` run of REV."""
    from mlci_tui.capture.build import capture_workspace
    from mlci_tui.ledger.store import LedgerStore

    cfg = config_mod.load(repo.root)
    rec = capture_workspace(repo, cfg, message=message, commit_rev=commit, name=None)
    LedgerStore(repo).append([rec])
    for warning in rec.get("warnings", []):
        notice(f"warning: {warning}")
    say(f"recorded {rec['kind']} run {rec['run_id'][:8]} ({rec['run_id']})")
    return 0


# ---------------------------------------------------------------- gate, report, promote (cli/gate.py, cli/report.py)


def gate(repo: Repo) -> int:
    """`mlci gate`: HEAD's run against the baseline with gate.rules; 1 on a regression."""
    from mlci_tui.gate import run_gate
    from mlci_tui.report.verdict import write_gate

    result = run_gate(repo, config_mod.load(repo.root), None, "HEAD")
    write_gate(result, "table", sys.stdout)
    return int(result.exit_code)


def report(repo: Repo, output: str, *, post_to: str | None, env: dict[str, str]) -> int:
    """`mlci report --format md -o OUTPUT [--post HOST]`: the Markdown report to a file, and on the PR if asked.

    `env` is where posting finds the repository, the request number and the token.
    """
    from mlci_tui.report.build import build_report
    from mlci_tui.report.markdown import render

    notices: list[str] = []
    built = build_report(repo, config_mod.load(repo.root), None, "HEAD", notices=notices)
    for text in notices:
        notice(text)
    path = Path(output)
    try:
        path.write_text(render(built), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"-o {display(output)}: {exc.strerror}") from None
    say(f"report (md, verdict {built.verdict}) written to {display(str(path))}")
    if post_to is None:
        return 0
    from mlci_tui.report.post import post

    # post() reads its target from the `mlci report` options: none given, all from `env`
    options = argparse.Namespace(post=post_to, repo=None, pr=None, api_url=None, artifact=None, dry_run=False)
    return post(built, options, env)


def promote(repo: Repo, ref: str, *, stage: str) -> int:
    """`mlci promote REF --stage STAGE`: record that the run's model is promoted (with its hash when found)."""
    from mlci_tui.ledger import events
    from mlci_tui.ledger.query.run import load_run
    from mlci_tui.ledger.resolve import resolve_run
    from mlci_tui.ledger.store import LedgerStore

    cfg = config_mod.load(repo.root)
    events.check_label("stage", stage)
    with open_ledger(repo) as con:
        resolved = resolve_run(repo, con, ref)
        if resolved.notice:
            notice(resolved.notice)
        run = load_run(con, resolved)
    model_hash = _model_hash(repo, cfg.model, run.commit) if cfg.model else None
    if cfg.model and model_hash is None:
        notice(f"warning: model {cfg.model} not found in the run's commit or the working tree; no hash recorded")
    author = repo.text("var", "GIT_AUTHOR_IDENT", check=False).rsplit(">", 1)[0] + ">"
    event = events.promote(
        run.run_id, stage, model=cfg.model, model_hash=model_hash, by=author if author != ">" else None
    )
    LedgerStore(repo).append([event])
    say(f"promoted {run.label} to {stage}" + (f" (model {model_hash[:19]}…)" if model_hash else ""))
    return 0


def _model_hash(repo: Repo, model: str, commit: str | None) -> str | None:
    """The model file's BLAKE3, from the run's commit, else the working tree (as `mlci promote` records it)."""
    import blake3

    data: bytes | None = None
    if commit:
        proc = repo.run("cat-file", "blob", f"{commit}:{model}", check=False)
        if proc.returncode == 0:
            data = proc.stdout
    if data is None and (repo.root / model).is_file() and not (repo.root / model).is_symlink():
        data = (repo.root / model).read_bytes()
    return f"blake3:{blake3.blake3(data).hexdigest()}" if data is not None else None


# ---------------------------------------------------------------- sweeps (cli/sweep.py)


def sweep_work(repo: Repo, trial: str) -> int:
    """`mlci sweep work --trial TRIAL`: run one trial here and push its result to the ledger remote."""
    from mlci_tui.sweep.operations import work_trial

    remote = config_mod.load(repo.root).remote
    result = work_trial(repo, trial, remote=remote, progress=_progress)
    if result.ran:
        return 0 if result.state == "done" else 1
    if result.state == "done":
        say(f"trial {display(result.label)} is already done (run {result.trial.run_id}); nothing to do")
    else:
        say(f"trial {display(result.label)} was cancelled; nothing to do")
    return 0


def _progress(text: str) -> None:
    print(display(text), file=sys.stderr, flush=True)
