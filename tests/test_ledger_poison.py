"""A bad blob from a remote must not break every query (issue 18): the cache build skips what
it cannot read, says which path, and every command keeps working on the rest."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import commit, git, run_mlci, write


def plant(repo: Path, files: dict[str, bytes]) -> None:
    """Commit `files` into the ledger tree as a remote that wrote them would."""
    tip = git(repo, "rev-parse", "refs/mlci/ledger").strip()
    env = dict(os.environ, GIT_INDEX_FILE=str(repo / ".git" / "plant-index"))
    subprocess.run(["git", "read-tree", f"{tip}^{{tree}}"], cwd=repo, env=env, check=True)
    for path, body in files.items():
        oid = (
            subprocess.run(
                ["git", "hash-object", "-w", "--stdin"], cwd=repo, input=body, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        subprocess.run(
            ["git", "update-index", "--add", "--cacheinfo", f"100644,{oid},{path}"], cwd=repo, env=env, check=True
        )
    tree = (
        subprocess.run(["git", "write-tree"], cwd=repo, env=env, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )
    planted = git(repo, "commit-tree", tree, "-p", tip, "-m", "from a remote").strip()
    git(repo, "update-ref", "refs/mlci/ledger", planted)


def test_a_non_utf8_record_a_two_line_record_and_a_garbage_segment_are_skipped(repo: Path) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    run_id = json.loads(run_mlci(repo, "show", "HEAD", "--json").stdout)["run_id"]
    promote = {
        "id": "p" * 26,
        "type": "promote",
        "v": 1,
        "time": "2026-01-01T00:00:00Z",
        "target": run_id,
        "stage": "deployed",
    }
    plant(
        repo,
        {
            "events/zz/" + "z" * 26 + ".json": b'{"id": "\xff\xfe", "type": "note"}\n',
            "events/yy/" + "y" * 26 + ".json": b'{"id": "yyyy"}\n' + json.dumps(promote).encode() + b"\n",
            "segments/bad.parquet": b"PAR1 not a parquet file",
        },
    )
    (repo / ".git" / "mlci" / "cache.duckdb").unlink(missing_ok=True)
    listing = run_mlci(repo, "runs")
    assert listing.returncode == 0 and run_id[:8] in listing.stdout, listing.stderr
    for path in ("events/zz/", "events/yy/", "segments/bad.parquet"):
        assert path in listing.stderr, listing.stderr
    assert "Traceback" not in listing.stderr
    for command in (["show", "HEAD"], ["gate"], ["report", "--format", "md"], ["stages"]):
        proc = run_mlci(repo, *command)
        assert proc.returncode in (0, 1), (command, proc.stderr)
    assert "nothing promoted yet" in run_mlci(repo, "stages").stdout  # the two-line file moved no stage


def test_fsck_names_every_file_the_cache_would_skip(repo: Path) -> None:
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    assert run_mlci(repo, "ledger", "fsck").returncode == 0
    plant(
        repo,
        {
            "events/zz/" + "z" * 26 + ".json": b'{"id": "\xff\xfe", "type": "note"}\n',
            "events/yy/" + "y" * 26 + ".json": b'{"id": "yyyy"}\n{"id": "zzzz"}\n',
            "segments/bad.parquet": b"PAR1 not a parquet file",
        },
    )
    proc = run_mlci(repo, "ledger", "fsck")
    assert proc.returncode == 1 and "3 problem(s)" in proc.stderr, (proc.stdout, proc.stderr)
    for path in ("events/zz/", "events/yy/", "segments/bad.parquet"):
        assert path in proc.stdout


def test_a_remote_ledger_ref_that_is_not_a_commit_is_refused(repo: Path, upstream: Path) -> None:
    git(repo, "remote", "add", "origin", str(upstream))
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    tip = git(repo, "rev-parse", "refs/mlci/ledger").strip()
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=upstream,
            input=b"not a ledger\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git(upstream, "update-ref", "refs/mlci/ledger", blob)
    proc = run_mlci(repo, "ledger", "pull")
    assert proc.returncode == 1 and "is a blob, not a commit; refused" in proc.stderr, proc.stderr
    assert git(repo, "rev-parse", "refs/mlci/ledger").strip() == tip  # the local ledger is untouched
    write(repo, {"metrics.json": json.dumps({"acc": 0.6})})
    assert run_mlci(repo, "record").returncode == 0  # and still writable


def test_a_refresh_removes_what_a_killed_one_left_behind(repo: Path) -> None:
    """A killed cache refresh left its temp database and ingest folder (`.git/mlci` grew to
    1.5 GB for a 31 MB cache); the next refresh removes those older than an hour, not a
    concurrent refresh's younger ones."""
    commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    state = repo / ".git" / "mlci"
    state.mkdir(parents=True, exist_ok=True)
    old = [state / "cache-killed.duckdb.tmp", state / "cache-killed.duckdb.tmp.wal", state / "ingest-killed"]
    old[0].write_bytes(b"x" * 1024)
    old[1].write_bytes(b"x")
    old[2].mkdir()
    (old[2] / "records.ndjson").write_bytes(b"{}\n")
    young = state / "ingest-running"
    young.mkdir()
    for path in old:
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    commit(repo, {"metrics.json": json.dumps({"acc": 0.6})}, "b")
    assert run_mlci(repo, "capture").returncode == 0
    assert run_mlci(repo, "runs").returncode == 0  # a refresh
    assert not any(p.exists() for p in old) and young.exists()


def test_a_pull_that_would_bring_invalid_files_is_refused_whole(clone_of: Any, upstream: Path) -> None:
    a = clone_of("a")
    commit(a, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    git(a, "push", "-q", "origin", "main")
    assert run_mlci(a, "capture").returncode == 0 and run_mlci(a, "ledger", "push").returncode == 0
    b = clone_of("b")
    assert run_mlci(b, "ledger", "pull").returncode == 0
    b_tip = git(b, "rev-parse", "refs/mlci/ledger").strip()
    plant(a, {"events/yy/" + "y" * 26 + ".json": b'{"id": "yyyy"}\n{"id": "zzzz"}\n'})
    git(a, "push", "-q", "--no-verify", "origin", "refs/mlci/ledger:refs/mlci/ledger")
    for flags in ([], ["--force-merge"]):
        proc = run_mlci(b, "ledger", "pull", *flags)
        assert proc.returncode == 1 and "refused, nothing merged" in proc.stderr, proc.stderr
        assert "events/yy/" in proc.stderr and "2 lines" in proc.stderr
        assert git(b, "rev-parse", "refs/mlci/ledger").strip() == b_tip
    assert run_mlci(b, "runs").returncode == 0
