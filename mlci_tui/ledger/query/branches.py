"""The local branches whose history holds a commit: computed when asked, never stored.

A run stores the one branch it was captured or imported from (`branch`); which branches
hold its commit changes with every merge, rebase and deleted branch, so it is read from the
refs at query time (`mlci show`'s `branches`), and run bodies stay stable.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlci_tui.gitio import Repo


def commit_branches(repo: Repo, shas: Iterable[str]) -> dict[str, list[str]]:
    """commit -> the local branches (sorted) whose history holds it; [] for none."""
    wanted = {s for s in shas if s}
    found: dict[str, list[str]] = {s: [] for s in wanted}
    if not wanted:
        return found
    if len(wanted) <= 4:  # a few commits: git answers each directly
        for sha in sorted(wanted):
            proc = repo.run("for-each-ref", "--contains", sha, "--format=%(refname:short)", "refs/heads/", check=False)
            found[sha] = sorted(proc.stdout.decode("utf-8", "surrogateescape").split())
        return found
    names = repo.run("for-each-ref", "--format=%(refname:short)", "refs/heads/").stdout.decode().split()
    for name in sorted(names):
        history = set(repo.run("rev-list", f"refs/heads/{name}", "--", check=False).stdout.decode().split())
        for sha in wanted & history:
            found[sha].append(name)
    return found
