"""Capture through one `git cat-file --batch` process (issue 19: a capture you don't notice).

The post-commit hook reads HEAD, the commit's header, its config and files through one
`git cat-file --batch`; these tests hold the raw-object readers to what git itself prints
(`gitio.commit_info`, `git symbolic-ref`) and count the git processes the hook starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import commit, git, metrics_json, write

from mlci_tui.capture.build import current_branch
from mlci_tui.capture.commit import read_commit, resolve_commit
from mlci_tui.gitio import Repo, commit_info
from mlci_tui.importers.objects import ObjectReader

PARAMS = "train:\n  lr: 0.001\n  epochs: 3\n"


def test_read_commit_matches_git_show(repo: Path) -> None:
    """Root, plain, merge and latin-1 commits read from the raw object as `git show` prints them."""
    root = commit(repo, {"params.yaml": PARAMS}, "first\n\nwith a body\n  indented line\n")
    git(repo, "checkout", "-q", "-b", "side")
    commit(repo, {"a.txt": "a"}, "side")
    git(repo, "checkout", "-q", "main")
    commit(repo, {"b.txt": "b"}, "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    merge = git(repo, "rev-parse", "HEAD").strip()
    write(repo, {"c.txt": "c"})
    git(repo, "add", "c.txt")
    env = dict(os.environ, GIT_AUTHOR_NAME="Jos\xe9 N\xfa\xf1ez")
    subprocess.run(
        ["git", "-c", "i18n.commitEncoding=latin-1", "commit", "-q", "-F", "-"],
        cwd=repo,
        input="caf\xe9 cr\xe8me\n".encode("latin-1"),
        env=env,
        check=True,
    )
    latin = git(repo, "rev-parse", "HEAD").strip()
    r = Repo.find(repo)
    with ObjectReader(r) as objects:
        for sha in (root, merge, latin):
            assert read_commit(r, objects, sha) == commit_info(r, sha)
        assert len(read_commit(r, objects, merge).parents) == 2
        assert read_commit(r, objects, latin).message == "caf\xe9 cr\xe8me"
        assert resolve_commit(objects, "HEAD~1") == merge
        assert resolve_commit(objects, "no-such-branch") is None
        assert resolve_commit(objects, f"{root}:params.yaml") is None  # a blob, not a commit


def test_shallow_clone_commit_has_no_parents(tmp_path: Path, repo: Path) -> None:
    """A commit whose parent a shallow clone cut off reads as a root, as `git show` shows it."""
    commit(repo, {"params.yaml": PARAMS}, "one")
    commit(repo, {"params.yaml": PARAMS + "  seed: 1\n"}, "two")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    r = Repo.find(shallow)
    head = git(shallow, "rev-parse", "HEAD").strip()
    with ObjectReader(r) as objects:
        info = read_commit(r, objects, head)
    assert info.parents == () == commit_info(r, head).parents


def test_current_branch_matches_symbolic_ref(repo: Path) -> None:
    commit(repo, {"params.yaml": PARAMS}, "one")
    r = Repo.find(repo)
    git(repo, "checkout", "-q", "-b", "feature/x")
    assert current_branch(r) == "feature/x" == git(repo, "symbolic-ref", "--short", "HEAD").strip()
    git(repo, "checkout", "-q", "--detach")
    assert current_branch(r) is None


def _git_processes(trace: Path) -> list[str]:
    return [line.split("built-in: ", 1)[1] for line in trace.read_text().splitlines() if "built-in: git " in line]


@pytest.mark.parametrize("dvc", [False, True])
def test_post_commit_reads_through_one_cat_file(repo: Path, tmp_path: Path, dvc: bool) -> None:
    """The hook's reads go through one `git cat-file --batch`: no `rev-parse` per name, no
    `show`, no `ls-tree` per pattern, no `--batch-check` for sizes; the run is recorded whole."""
    files = {"params.yaml": PARAMS, "metrics.json": metrics_json(acc=0.5), "src/train.py": "print(1)\n"}
    if dvc:
        files |= {"dvc.yaml": "stages:\n  train:\n    cmd: python src/train.py\n    metrics:\n    - metrics.json\n"}
    commit(repo, files, "one", no_verify=True)
    git(repo, "checkout", "-q", "-b", "exp")
    commit(repo, {"metrics.json": metrics_json(acc=0.75)}, "two", no_verify=True)
    trace = tmp_path / "trace.txt"
    env = dict(os.environ, GIT_TRACE=str(trace))
    proc = subprocess.run(
        [sys.executable, "-m", "mlci_tui", "hook", "post-commit"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    started = _git_processes(trace)
    assert sum(p.startswith("git cat-file") for p in started) == 1, started
    for gone in ("git show", "git symbolic-ref", "git cat-file --batch-check"):
        assert not any(p.startswith(gone) for p in started), (gone, started)
    # one rev-parse: the append's compare-and-swap base, read right before it writes
    assert [p for p in started if p.startswith("git rev-parse -q")] == [
        "git rev-parse -q --verify --end-of-options refs/mlci/ledger"
    ], started
    per_pattern = [p for p in started[1:] if p.startswith("git ls-tree") and " -r " not in p and "/ledger" not in p]
    assert all(("events/" in p or "segments/" in p) for p in per_pattern), started  # the ledger's lookups only
    out = subprocess.run(
        [sys.executable, "-m", "mlci_tui", "runs", "--json"], cwd=repo, capture_output=True, text=True, check=True
    )
    (run,) = json.loads(out.stdout)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert (run["commit"], run["branch"], run["message"]) == (head, "exp", "two")
    assert run["metrics"] == {"acc": 0.75} and run["params"]["train.lr"] == "0.001"
