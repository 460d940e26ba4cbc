"""`mlci import dvc`: a DVC project's history (and its experiments) as runs.

Every commit is read from git objects, never checked out: experiment commits can name data
that is not present, and the user's working tree is never touched. Each commit is read by
`project.reader.ProjectReader`, the reader the post-commit capture of a DVC project uses:
an imported commit is the run its capture would be (kind `commit`, the same id and values),
so importing after capturing, or capturing after importing, adds nothing. A file that cannot
be read at some commit is recorded as unparseable with its reason and the import goes on.

Each run keeps the branch it was imported from: the branch named (`--rev main`, HEAD's
branch), or with `--all-branches` the branch being walked (HEAD's branch first, then the
others by name; a commit on several belongs to the first that reaches it).

Speed: each distinct blob is parsed once per import (most commits share most files), plain
params YAML goes through `simple_yaml` (the full YAML 1.2 parser otherwise), and the files
the previous commit read are fetched ahead for the next commits in batched `cat-file` runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlci_tui.capture.build import current_branch
from mlci_tui.capture.write import run_ids
from mlci_tui.errors import InputError
from mlci_tui.gitio import COMMIT_FIELDS, CommitInfo, Repo, parse_commit
from mlci_tui.importers.common import ImportReport, append_new
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.progress import count_bar
from mlci_tui.project.reader import ProjectReader

ALL_BRANCHES = ["--branches"]
SOURCE = "import:dvc"
EXPS_PREFIX = "refs/exps/"
_SEP = "\x1f"
_END = "\x1e"
WINDOW = 256  # commits whose objects are fetched ahead in one batch


@dataclass(frozen=True)
class Experiment:
    ref: str
    sha: str
    baseline: str
    name: str


# ----------------------------------------------------------------------- history
def list_commits(repo: Repo, rev_args: list[str]) -> list[CommitInfo]:
    """Commits of `git rev-list ARGS`, oldest first, with what a run records about each."""
    fmt = _SEP.join(COMMIT_FIELDS) + _END
    proc = repo.run("log", "--reverse", "--topo-order", f"--format={fmt}", *rev_args, "--", check=False)
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{' '.join(rev_args)}: not a valid revision or range ({detail[-1] if detail else ''})")
    out = []
    for chunk in proc.stdout.decode("utf-8", "replace").split(_END):
        chunk = chunk.lstrip("\n")
        if not chunk:
            continue
        out.append(parse_commit(chunk, _SEP))
    return out


def patch_ids(repo: Repo, commits: list[CommitInfo]) -> dict[str, str]:
    """`git patch-id --stable` of many commits in two processes (first-parent diffs, as capture)."""
    if not commits:
        return {}
    shallow = repo.shallow_commits()
    lines = [f"{c.sha} {c.parents[0]}" if c.parents else c.sha for c in commits if c.sha not in shallow]
    diff_args = ("diff-tree", "--stdin", "-p", "--root", "--no-color", "--full-index")
    diff = repo.run(*diff_args, input=("\n".join(lines) + "\n").encode(), check=False).stdout
    proc = repo.run("patch-id", "--stable", input=diff, check=False)
    result = {}
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 2:
            result[parts[1]] = parts[0]
    return result


def list_experiments(repo: Repo) -> list[Experiment]:
    """DVC 3 experiment refs: `refs/exps/<baseline[:2]>/<baseline[2:]>/<name>`.

    Other refs under refs/exps (stash, celery, exec, temp, apply) are DVC's own queue state
    and have a different shape; they are skipped.
    """
    proc = repo.run("for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", EXPS_PREFIX)
    out = []
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        ref, oid, peeled = (line.split("\0") + ["", ""])[:3]
        parts = ref.split("/")
        if len(parts) != 5 or len(parts[2]) != 2 or len(parts[3]) != 38:
            continue
        baseline = parts[2] + parts[3]
        if not all(c in "0123456789abcdef" for c in baseline):
            continue
        out.append(Experiment(ref, peeled or oid, baseline, parts[4]))
    return out


# ----------------------------------------------------------------------- branches
def branch_walks(repo: Repo, rev_args: list[str]) -> list[tuple[list[str], str | None]]:
    """(rev-list arguments, the branch its commits are imported from), walked in order.

    `--all-branches` walks HEAD's branch, then each other local branch without what the
    earlier ones reached; a revision that names a branch (`main`, `HEAD` on a branch,
    `A..main`) gives that branch; anything else (a tag, a commit) no branch."""
    if rev_args == ALL_BRANCHES:
        proc = repo.run("for-each-ref", "--format=%(refname:short)", "refs/heads/")
        names = sorted(proc.stdout.decode("utf-8", "surrogateescape").split())
        head = current_branch(repo)
        order = ([head] if head in names else []) + [n for n in names if n != head]
        return [
            ([f"refs/heads/{name}", "--not", *(f"refs/heads/{n}" for n in order[:i])], name)
            for i, name in enumerate(order)
        ]
    if len(rev_args) != 1:
        return [(rev_args, None)]
    tip = rev_args[0].rsplit("..", 1)[-1] or "HEAD"
    if tip == "HEAD":
        return [(rev_args, current_branch(repo))]
    known = repo.run("show-ref", "--verify", "--quiet", f"refs/heads/{tip}", check=False).returncode == 0
    return [(rev_args, tip if known else None)]


# ----------------------------------------------------------------------- import
def import_history(
    repo: Repo, rev_args: list[str], *, experiments: bool = False, dry_run: bool = False
) -> ImportReport:
    """Import every commit of `git rev-list REV_ARGS` (`["--branches"]`: every local branch,
    each commit with the branch walked), and `refs/exps/*` with `experiments`."""
    report = ImportReport()
    commits: list[CommitInfo] = []
    branch_of: dict[str, str | None] = {}
    for walk, branch in branch_walks(repo, rev_args) if rev_args else []:
        for commit in list_commits(repo, walk):
            if commit.sha not in branch_of:
                branch_of[commit.sha] = branch
                commits.append(commit)
    exps = list_experiments(repo) if experiments else []
    exp_ids = {e.sha: records.derived_id("experiment", e.sha) for e in exps}
    store = LedgerStore(repo)
    present = store.has_ids([i for c in commits for i in run_ids(c.sha)] + list(exp_ids.values()))
    todo = [c for c in commits if not present.intersection(run_ids(c.sha))]
    report.present += len(commits) - len(todo)
    exps_todo = [e for e in exps if exp_ids[e.sha] not in present]
    report.present += len(exps) - len(exps_todo)
    exp_commits = (
        {c.sha: c for c in list_commits(repo, ["--no-walk", *[e.sha for e in exps_todo]])} if exps_todo else {}
    )
    patches = patch_ids(repo, todo + list(exp_commits.values()))
    reader = ProjectReader(repo)
    bar = count_bar("import dvc", len(todo) + len(exps_todo)) if not dry_run else None

    def produce() -> Iterator[dict[str, Any]]:
        for i, commit in enumerate(todo):
            if bar is not None:
                bar.advance_object()
            if i % WINDOW == 0:
                reader.prefetch([c.tree for c in todo[i : i + WINDOW]])
            record, warnings = reader.record(
                commit, source=SOURCE, patch=patches.get(commit.sha), branch=branch_of[commit.sha]
            )
            report.warnings.extend(f"{commit.sha[:12]}: {w}" for w in warnings)
            if record is None:
                report.skipped += 1
            else:
                yield record
        for i, exp in enumerate(exps_todo):
            if bar is not None:
                bar.advance_object()
            if i % WINDOW == 0:
                reader.prefetch([c.tree for e in exps_todo[i : i + WINDOW] if (c := exp_commits.get(e.sha))])
            exp_commit = exp_commits.get(exp.sha)
            if exp_commit is None:
                report.warnings.append(f"{exp.ref}: points at no commit; skipped")
                continue
            record, warnings = reader.record(
                exp_commit,
                kind="experiment",
                source=SOURCE,
                name=exp.name,
                parent=exp.baseline,
                patch=patches.get(exp_commit.sha),
            )
            report.warnings.extend(f"{exp.name}: {w}" for w in warnings)
            if record is None:
                report.skipped += 1
            else:
                yield record

    try:
        if dry_run:
            report.added.extend(produce())
        else:
            append_new(repo, produce(), report)
    finally:
        reader.close()
        if bar is not None:
            bar.close()
    return report
