"""`mlci data add --link hardlink|symlink` killed at every instant loses nothing and leaves nothing.

Each add runs as a real process killed by SIGKILL at a named point (`MLCI_FAULT`, see
mlci_tui/data/journal.py) or after a random delay; the working files are then read through
their links, the next command must clean up every temp file, and a re-add and a gc must keep
every file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import git, run_mlci, write

from mlci_tui.data.cache import DataCache
from mlci_tui.data.journal import FAULT_POINTS, Journal

KILLED = -signal.SIGKILL
PER_FILE = ("after-cache-tmp", "after-cache", "after-tmp-link", "after-replace")  # passed once per file


def ok(repo: Path, *args: str) -> str:
    proc = run_mlci(repo, *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def status(repo: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["path"]: r for r in json.loads(ok(repo, "data", "status", "--json"))}


def leftovers(repo: Path) -> list[str]:
    """Every temp file or journal a data command may leave: none may survive the next command."""
    found = []
    for folder, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d != ".git"]
        found += [os.path.join(folder, f) for f in files if f.endswith(".mlci-tmp")]
    for sub in (".mlci/tmp", ".mlci/cache/tmp", ".mlci/journal"):
        if (repo / sub).is_dir():
            found += [f"{sub}/{n}" for n in os.listdir(repo / sub)]
    return found


def contents(repo: Path, names: list[str]) -> dict[str, bytes]:
    return {n: (repo / n).read_bytes() for n in names if (repo / n).exists()}


def make_data(repo: Path, target: str) -> dict[str, bytes]:
    files = {f"d/{i:02}.bin": os.urandom(3000 + i) for i in range(6)} if target == "d" else {"f.bin": os.urandom(5000)}
    write(repo, files)
    return files


def fault_at(point: str, target: str) -> str:
    """Kill in the middle of a folder (the 3rd of 6 files) for per-file points."""
    return f"{point}:3" if target == "d" and point in PER_FILE else point


def untracked(repo: Path) -> set[str]:
    out = git(repo, "status", "--porcelain", "--untracked-files=all")
    return {line[3:] for line in out.splitlines()}


@pytest.mark.parametrize("point", FAULT_POINTS)
@pytest.mark.parametrize("target", ["f.bin", "d"])
@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_add_killed_at_each_point_loses_nothing(repo: Path, mode: str, target: str, point: str) -> None:
    files = make_data(repo, target)
    replacing = point in ("after-journal", "after-tmp-link", "after-replace")
    if mode == "hardlink" and replacing:
        # a fresh hardlink add makes the working file the object (nothing to replace); switching
        # from copy mode replaces every working copy by a hard link to its object
        ok(repo, "data", "add", "--link", "copy", target)
    proc = run_mlci(repo, "data", "add", "--link", mode, target, env={"MLCI_FAULT": fault_at(point, target)})
    assert proc.returncode == KILLED, (proc.stdout, proc.stderr)
    assert contents(repo, list(files)) == files  # read through the links, right after the kill

    status(repo)  # the next data command replays the dead add's journal
    assert leftovers(repo) == []
    assert contents(repo, list(files)) == files

    ok(repo, "data", "add", "--link", mode, target)
    pointer = status(repo)[target]
    assert (pointer["status"], pointer["in_cache"]) == ("unchanged", True)
    if target == "d":
        manifest = DataCache.for_repo(repo).manifest(pointer["hash"])
        assert sorted(f"d/{n}" for n, _h, _s in manifest) == sorted(files)
    assert untracked(repo) == {".gitignore", f"{target}.mlci"}
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data")
    ok(repo, "data", "gc")
    assert status(repo)[target]["in_cache"] is True
    assert contents(repo, list(files)) == files
    assert leftovers(repo) == []


@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_readding_unchanged_linked_data_leaves_nothing_untracked(repo: Path, mode: str) -> None:
    files = {"data/table.csv": b"id,v\n1,2\n", **{f"data/imgs/{i}.txt": f"{i}\n".encode() for i in range(5)}}
    write(repo, files)
    ok(repo, "data", "add", "--link", mode, "data/table.csv", "data/imgs")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data")
    for _ in range(2):
        ok(repo, "data", "add", "--link", mode, "data/table.csv", "data/imgs")
        assert untracked(repo) == set()
    assert contents(repo, list(files)) == files
    assert leftovers(repo) == []


def test_a_missing_working_file_noted_in_a_dead_journal_is_put_back(repo: Path) -> None:
    files = make_data(repo, "d")
    proc = run_mlci(repo, "data", "add", "--link", "symlink", "d", env={"MLCI_FAULT": "after-tmp-link:2"})
    assert proc.returncode == KILLED
    (repo / "d/04.bin").unlink()  # gone while the dead add still names it in its journal
    status(repo)
    assert contents(repo, list(files)) == files
    assert leftovers(repo) == []


def test_a_live_commands_journal_and_temps_are_left_alone(repo: Path) -> None:
    make_data(repo, "f.bin")
    ok(repo, "data", "add", "f.bin")
    journal = Journal(repo / ".mlci")
    temp = journal.temp_for(repo / "f.bin")  # opens and locks the journal, as a running add does
    temp.write_bytes(b"half")
    cache_temp = journal.cache_temp(str(repo / ".mlci/cache"))
    cache_temp.write_bytes(b"half")
    status(repo)
    ok(repo, "data", "gc")
    assert temp.exists() and cache_temp.exists() and journal.path.exists()
    journal.close()
    assert leftovers(repo) == []


def test_gc_salvages_an_older_versions_temp_holding_the_only_copy(repo: Path) -> None:
    """Before journals, an add killed between moving a working file into `.mlci/cache/tmp` and
    linking it back left the only copy there; a re-add then recorded the folder without it."""
    files = make_data(repo, "d")
    ok(repo, "data", "add", "d")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data")
    cache = DataCache.for_repo(repo)
    lost = next(h for n, h, _s in cache.manifest(status(repo)["d"]["hash"]) if n == "02.bin")
    tmp = cache.root / "tmp"
    tmp.mkdir()
    os.replace(cache.object_path(lost), tmp / os.urandom(16).hex())  # what the old add left
    (repo / "d/02.bin").unlink()
    stale = tmp / os.urandom(16).hex()  # an older version's unreferenced temp, over an hour old
    stale.write_bytes(b"partial copy")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    young = tmp / os.urandom(16).hex()
    young.write_bytes(b"maybe in use")
    ok(repo, "data", "add", "d")  # records the folder without the lost file
    ok(repo, "data", "gc")
    assert os.listdir(tmp) == [young.name]  # the stale one removed, the lost one back in the cache
    assert DataCache.for_repo(repo).has(lost)
    git(repo, "checkout", "--", "d.mlci")  # the committed version names the lost file: it is back
    ok(repo, "data", "checkout")
    assert contents(repo, list(files)) == files


def test_gc_removes_stray_temps_beside_working_files(repo: Path) -> None:
    write(repo, {"data/a.csv": "x\n", "data/imgs/1.txt": "1\n"})
    ok(repo, "data", "add", "data/a.csv", "data/imgs")
    strays = [repo / "data/.a.csv.1a2b3c4d.mlci-tmp", repo / "data/imgs/.1.txt.deadbeefdeadbeef.mlci-tmp"]
    for s in strays:
        s.write_bytes(b"a full copy")
    ok(repo, "data", "gc")
    assert not any(s.exists() for s in strays)
    assert (repo / "data/a.csv").read_text() == "x\n"


def test_init_ignores_temp_files_beside_data(repo: Path) -> None:
    ok(repo, "init")
    assert "*.mlci-tmp" in (repo / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_kill_9_at_random_instants(repo: Path, mode: str) -> None:
    """A real SIGKILL at a random instant of the add's work, three times, on a folder of 300 files
    (a third of them rewritten before each add, so that each has work to be killed in)."""
    files = {f"d/{i // 100}/{i:03}.bin": os.urandom(2000) for i in range(300)}
    write(repo, files)
    rng = random.Random(7 if mode == "hardlink" else 11)
    env = {**os.environ, "MLCI_FAULT": ""}
    killed = 0
    for round_ in range(3):
        changed = {n: os.urandom(2000) for n in list(files)[round_::3]}  # work for every round
        for name, data in changed.items():
            (repo / name).unlink()
            (repo / name).write_bytes(data)
        files.update(changed)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlci_tui", "data", "add", "--link", mode, "d"],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        journals = repo / ".mlci/journal"
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline and not any(journals.glob("*.json")):
            time.sleep(0.005)  # the add has started changing things once its journal exists
        time.sleep(rng.uniform(0, 0.06))
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait() == KILLED
        assert contents(repo, list(files)) == files
        status(repo)
        assert leftovers(repo) == []
    assert killed >= 1  # kills land while the add works (not all: a fast add may finish first)
    ok(repo, "data", "add", "--link", mode, "d")
    assert status(repo)["d"]["status"] == "unchanged"
    assert len(DataCache.for_repo(repo).manifest(status(repo)["d"]["hash"])) == 300
    assert contents(repo, list(files)) == files


def test_temps_go_beside_the_file_when_mlci_is_on_another_device(repo: Path, tmp_path: Path) -> None:
    """`.mlci/` on another filesystem (tmpfs): no hard link reaches it, the objects are copies, and
    a temp link is made beside its working file; a killed add's one goes at the next command."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(repo).st_dev or not os.access(shm, os.W_OK):
        pytest.skip("needs /dev/shm on another device than the test's tmp folder")
    state = Path(tempfile.mkdtemp(dir=shm))
    try:
        (repo / ".mlci").symlink_to(state)
        files = make_data(repo, "d")
        proc = run_mlci(repo, "data", "add", "--link", "symlink", "d", env={"MLCI_FAULT": "after-tmp-link:2"})
        assert proc.returncode == KILLED
        beside = [n for n in os.listdir(repo / "d") if n.endswith(".mlci-tmp")]
        assert len(beside) == 1 and beside[0].startswith(".01.bin.")
        assert contents(repo, list(files)) == files
        ok(repo, "data", "add", "--link", "symlink", "d")
        assert leftovers(repo) == []
        assert all((repo / n).is_symlink() for n in files)
        assert contents(repo, list(files)) == files
    finally:
        shutil.rmtree(state, ignore_errors=True)
