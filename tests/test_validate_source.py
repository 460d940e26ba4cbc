"""Where a version's bytes come from, for large files tracked in git directly: an unchanged
working-tree file is read in place (no re-hash, no temp copy of the blob) only when it holds
exactly the staged or committed blob; otherwise the blob itself is read.

Real git repositories; the size threshold is lowered so that small files take the large-file path.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import commit, git, write

from mlci_tui.gitio import Repo
from mlci_tui.validate import source

CSV = "id,v\n" + "".join(f"{i},{i * 2}\n" for i in range(200))


@pytest.fixture(autouse=True)
def _large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "LARGE", 0)


def _hash_object(root: Path, path: str) -> str:
    return subprocess.run(["git", "hash-object", "--", path], cwd=root, capture_output=True, text=True).stdout.strip()


def test_unchanged_file_is_read_in_place_with_the_blob_id(repo: Path, tmp_path: Path) -> None:
    commit(repo, {"data/d.csv": CSV}, "data")
    r = Repo.find(repo)
    scratch = tmp_path / "scratch"
    for where in (source.WORKTREE, source.INDEX, r.commit_of("HEAD") or ""):
        content = source.resolve(r, "data/d.csv", where, scratch)
        assert content.content_hash == f"git:{_hash_object(repo, 'data/d.csv')}", where
        assert content.local == repo / "data" / "d.csv", where  # in place: no copy of the blob
    assert not scratch.exists() or not any(scratch.iterdir())


def test_a_changed_working_tree_never_stands_in_for_the_staged_or_committed_blob(repo: Path, tmp_path: Path) -> None:
    commit(repo, {"data/d.csv": CSV}, "data")
    r = Repo.find(repo)
    head = r.commit_of("HEAD") or ""
    committed = _hash_object(repo, "data/d.csv")
    # staged change, then a further unstaged edit of the same size (stat data may even match)
    write(repo, {"data/d.csv": CSV.replace("0,0\n", "0,1\n", 1)})
    git(repo, "add", "data/d.csv")
    staged = _hash_object(repo, "data/d.csv")
    write(repo, {"data/d.csv": CSV.replace("0,0\n", "0,2\n", 1)})
    worktree = _hash_object(repo, "data/d.csv")
    assert len({committed, staged, worktree}) == 3
    scratch = tmp_path / "scratch"
    got = {where: source.resolve(r, "data/d.csv", where, scratch) for where in (source.WORKTREE, source.INDEX, head)}
    assert got[source.WORKTREE].content_hash == f"git:{worktree}"
    assert got[source.INDEX].content_hash == f"git:{staged}"
    assert got[head].content_hash == f"git:{committed}"
    assert got[source.INDEX].local.read_bytes() == CSV.replace("0,0\n", "0,1\n", 1).encode()
    assert got[head].local.read_bytes() == CSV.encode()
    assert got[source.INDEX].local.parent == scratch and got[head].local.parent == scratch


def test_racily_clean_same_size_edit_is_hashed_not_trusted(repo: Path, tmp_path: Path) -> None:
    """An edit keeping size and mtime (a racy entry): git compares content, so the new bytes count."""
    commit(repo, {"data/d.csv": CSV}, "data")
    path = repo / "data" / "d.csv"
    st = path.stat()
    path.write_text(CSV.replace("1,2\n", "1,3\n", 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = Repo.find(repo)
    content = source.resolve(r, "data/d.csv", source.WORKTREE, tmp_path / "scratch")
    assert content.content_hash == f"git:{_hash_object(repo, 'data/d.csv')}"
    head = source.resolve(r, "data/d.csv", r.commit_of("HEAD") or "", tmp_path / "scratch")
    assert head.local != path and head.local.read_bytes() == CSV.encode()


def test_line_end_conversion_keeps_the_blob(repo: Path, tmp_path: Path) -> None:
    """With eol conversion the working tree's bytes differ from the blob's: the blob is read."""
    commit(repo, {".gitattributes": "*.csv text eol=crlf\n", "data/d.csv": CSV}, "data")
    (repo / "data" / "d.csv").unlink()
    git(repo, "checkout", "--", "data/d.csv")
    assert b"\r\n" in (repo / "data" / "d.csv").read_bytes()
    r = Repo.find(repo)
    content = source.resolve(r, "data/d.csv", source.INDEX, tmp_path / "scratch")
    assert content.local != repo / "data" / "d.csv"
    assert content.local.read_bytes() == CSV.encode()
