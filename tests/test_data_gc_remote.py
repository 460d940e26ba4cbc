"""`mlci data gc --remote`: what a shared remote keeps (working tree, index, local branches and
tags, a teammate's pushed branch, folder manifests and their files, history with
--all-commits), what it deletes, and its safety catches (--dry-run, --yes, --min-age, a
folder whose files are unknown, a deletion that fails). Through `file://`, fsspec's memory
filesystem (in-process) and an S3 server on loopback (moto)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, mlci_in_process, run_mlci, write

from mlci_tui.data.hashing import hash_bytes

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def ok(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = run_mlci(cwd, *args, env=env)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def gc_json(cwd: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = ok(cwd, "data", "gc", "-r", "--json", *args, env=env)
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def planned(doc: dict[str, object]) -> set[str]:
    objects = doc["objects"]
    assert isinstance(objects, list)
    return {o["hash"] for o in objects}


def h(content: bytes) -> str:
    return hash_bytes(content, "blake3")


def on_store(store: Path) -> set[str]:
    return {p.parent.name + p.name for p in store.glob("??/*") if "." not in p.name}


def add(repo: Path, files: dict[str, str | bytes], *paths: str) -> None:
    """Write `files` (a folder's old files are removed first) and `mlci data add` the paths."""
    for folder in {Path(n).parts[0] + "/" + Path(n).parts[1] for n in files if len(Path(n).parts) > 2}:
        shutil.rmtree(repo / folder, ignore_errors=True)
    write(repo, files)
    ok(repo, "data", "add", *paths)


def config(url: str) -> str:
    return f"data:\n  remote: store\n  remotes:\n    store: {{url: '{url}'}}\n"


def make_old(store: Path, digest: str, hours: float = 2.0) -> None:
    then = time.time() - hours * 3600
    os.utime(store / digest[:2] / digest[2:], (then, then))


# ---------------------------------------------------------------------------- the whole story on file://
def test_gc_keeps_every_referenced_version_and_deletes_the_rest(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(upstream))
    store = tmp_path / "store"
    a = tmp_path / "a"
    git(tmp_path, "clone", "-q", str(upstream), str(a))
    T = {n: f"id,v\n{n},{n}\n".encode() for n in range(8)}
    I1, I2, I2b, I3, I4 = (f"image {n}\n".encode() * 50 for n in ("1", "2", "2b", "3", "4"))

    # main, commit 0: only history names T0 and folder F0 (with I2, no longer in any later version)
    write(a, {"mlci.yaml": config(f"file://{store}")})
    add(a, {"data/t.csv": T[0], "data/imgs/1.bin": I1, "data/imgs/2.bin": I2}, "data/t.csv", "data/imgs")
    git(a, "add", "-A")
    git(a, "commit", "-qm", "v0")
    f0 = json.loads(ok(a, "data", "status", "--json"))[0]["hash"]
    ok(a, "data", "push")
    # commit 1, tagged (annotated): T1 and F1
    add(a, {"data/t.csv": T[1], "data/imgs/1.bin": I1, "data/imgs/2.bin": I2b}, "data/t.csv", "data/imgs")
    git(a, "commit", "-qam", "v1")
    git(a, "tag", "-a", "release", "-m", "release")
    ok(a, "data", "push")
    # commit 2, main's tip: T2 and F2 (with I3)
    add(
        a,
        {"data/t.csv": T[2], "data/imgs/1.bin": I1, "data/imgs/2.bin": I2b, "data/imgs/3.bin": I3},
        "data/t.csv",
        "data/imgs",
    )
    git(a, "commit", "-qam", "v2")
    git(a, "push", "-q", "origin", "main", "release")
    ok(a, "data", "push")
    # a local branch never pushed to git: T3
    git(a, "checkout", "-qb", "side")
    add(a, {"data/t.csv": T[3]}, "data/t.csv")
    git(a, "commit", "-qam", "side")
    ok(a, "data", "push")
    git(a, "checkout", "-q", "main")
    # pushed data no commit names (T4), the index (T5), the working tree (T6)
    for n in (4, 5, 6):
        add(a, {"data/t.csv": T[n]}, "data/t.csv")
        ok(a, "data", "push")
        if n == 5:
            git(a, "add", "data/t.csv.mlci")

    # a teammate's clone pushes branch `feature`: T7 and folder F4 (with I4), whose manifest `a` never had
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(upstream), str(b))
    git(b, "checkout", "-qb", "feature")
    add(b, {"data/t.csv": T[7], "data/imgs/1.bin": I1, "data/imgs/4.bin": I4}, "data/t.csv", "data/imgs")
    git(b, "commit", "-qam", "feature")
    git(b, "push", "-q", "origin", "feature")
    ok(b, "data", "push")

    garbage = {h(T[0]), f0, h(I2), h(T[4])}
    before = on_store(store)
    assert garbage < before and h(I4) in before and h(T[7]) in before

    # dry run: lists what would go, deletes nothing; it fetched the teammate's branch first
    doc = gc_json(a, "--dry-run", "--min-age", "0")
    assert planned(doc) == garbage
    assert doc["to_delete"] == 4 and doc["to_delete_bytes"] == sum(
        (store / d[:2] / d[2:]).stat().st_size for d in garbage
    )
    assert doc["kept"] == len(before) - 4 and doc["deleted"] == 0 and on_store(store) == before
    assert git(a, "rev-parse", "--verify", "-q", "refs/remotes/origin/feature").strip()
    text = ok(a, "data", "gc", "-r", "--dry-run", "--min-age", "0")
    assert f"would remove 4 of {len(before)} objects" in text
    # --all-commits keeps commit 0 too: only the never-committed T4 goes
    assert planned(gc_json(a, "--dry-run", "--min-age", "0", "--all-commits")) == {h(T[4])}

    # no --yes and no terminal: refused, nothing deleted
    proc = run_mlci(a, "data", "gc", "-r", "--min-age", "0")
    assert proc.returncode == 2 and "--yes" in proc.stderr and on_store(store) == before

    # everything was pushed within the hour: the default --min-age keeps it all
    doc = gc_json(a, "--yes")
    assert doc["deleted"] == 0 and doc["recent"] == 4 and on_store(store) == before
    assert "younger than 1 h kept" in ok(a, "data", "gc", "-r", "--dry-run")
    make_old(store, h(T[0]))
    doc = gc_json(a, "--yes")
    assert doc["deleted"] == 1 and doc["freed"] == len(T[0]) and on_store(store) == before - {h(T[0])}

    out = ok(a, "data", "gc", "--remote", "store", "--yes", "--min-age", "0", "-j", "3")
    assert "removed 3 objects" in out
    assert on_store(store) == before - garbage

    # a fresh cache pulls every kept version back
    git(a, "reset", "-q", "--hard")
    shutil.rmtree(a / ".mlci", onerror=lambda f, p, e: (os.chmod(os.path.dirname(p), 0o755), f(p)))
    expect = {
        "main": (T[2], {"1.bin": I1, "2.bin": I2b, "3.bin": I3}),
        "release": (T[1], {"1.bin": I1, "2.bin": I2b}),
        "side": (T[3], {"1.bin": I1, "2.bin": I2b, "3.bin": I3}),
        "origin/feature": (T[7], {"1.bin": I1, "4.bin": I4}),
    }
    for ref, (table, images) in expect.items():
        git(a, "checkout", "-q", ref)
        for stale in (a / "data/t.csv", a / "data/imgs"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        ok(a, "data", "pull")
        assert (a / "data/t.csv").read_bytes() == table, ref
        assert {p.name: p.read_bytes() for p in (a / "data/imgs").iterdir()} == images, ref

    # a teammate pushes a branch whose folder was never pushed: its files are unknown, gc refuses
    git(b, "checkout", "-qb", "ghost")
    add(b, {"data/ghost/x.bin": b"x" * 100}, "data/ghost")
    git(b, "add", "-A")
    git(b, "commit", "-qm", "ghost")
    git(b, "push", "-q", "origin", "ghost")
    add(a, {"data/t.csv": b"never committed\n"}, "data/t.csv")
    ok(a, "data", "push")
    fresh = on_store(store)
    make_old(store, h(b"never committed\n"))
    proc = run_mlci(a, "data", "gc", "-r", "--yes", "--min-age", "0")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "data/ghost.mlci (in refs/remotes/origin/ghost)" in proc.stderr
    assert on_store(store) == fresh


def pushed_versions(tmp_path: Path, versions: int) -> tuple[Path, Path]:
    """(repo, store): `t.csv` added and pushed in `versions` versions, the last one committed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    store = tmp_path / "store"
    write(repo, {"mlci.yaml": config(str(store))})
    for n in range(versions):
        add(repo, {"t.csv": f"v{n}\n"}, "t.csv")
        ok(repo, "data", "push")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"v{versions - 1}")
    return repo, store


def test_a_failed_deletion_is_reported_and_the_rest_go_on(tmp_path: Path) -> None:
    repo, store = pushed_versions(tmp_path, 4)
    stuck = h(b"v1\n")
    victim = store / stuck[:2] / stuck[2:]
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(victim)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a file undeletable here (root without chattr)")
    else:
        os.chmod(victim.parent, 0o555)
    try:
        proc = run_mlci(repo, "data", "gc", "-r", "--yes", "--min-age", "0", "-j", "2")
    finally:
        subprocess.run(["chattr", "-i", str(victim)], capture_output=True)
        os.chmod(victim.parent, 0o755)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "removed 2 objects" in proc.stdout
    assert f"failed to delete: {stuck[:12]}" in proc.stderr and "1 objects could not be deleted" in proc.stderr
    assert on_store(store) == {stuck, h(b"v3\n")}
    # the local cache is not collected by --remote; its own gc counts the same three as JSON
    assert json.loads(ok(repo, "data", "gc", "--dry-run", "--json")) == {
        "dry_run": True,
        "kept": 1,
        "removed": 3,
        "freed": 9,
    }


def test_interactive_confirmation(tmp_path: Path) -> None:
    repo, store = pushed_versions(tmp_path, 2)

    def answer(reply: bytes) -> str:
        master, slave = os.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlci_tui", "data", "gc", "-r", "--min-age", "0"],
            cwd=repo,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        seen = b""
        try:
            while b"[y/N]" not in seen:
                ready, _, _ = select.select([master], [], [], 30)
                assert ready, seen
                seen += os.read(master, 4096)
            os.write(master, reply)
            assert proc.wait(60) == 0
            with contextlib.suppress(OSError):
                while select.select([master], [], [], 1)[0]:
                    chunk = os.read(master, 4096)
                    if not chunk:
                        break
                    seen += chunk
        finally:
            os.close(master)
            proc.kill() if proc.poll() is None else None
        return seen.decode()

    assert "delete 1 of 2 objects" in answer(b"n\n")
    assert len(on_store(store)) == 2
    assert "removed 1 objects" in answer(b"y\n")
    assert on_store(store) == {h(b"v1\n")}


# ---------------------------------------------------------------------------- other filesystems
def test_gc_on_fsspec_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory filesystem lives in one process: the commands run in-process here."""
    import fsspec

    def mlci(*args: str) -> str:
        return mlci_in_process(monkeypatch, repo, *args)

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, {"mlci.yaml": config("memory://mlci-gc/cache"), "d/a.bin": b"a" * 10, "t.csv": b"v0\n"})
    mlci("data", "add", "d", "t.csv")
    mlci("data", "push")
    write(repo, {"t.csv": b"v1\n"})
    mlci("data", "add", "t.csv")
    mlci("data", "push")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    mem = fsspec.filesystem("memory")
    try:
        assert len(mem.find("/mlci-gc/cache")) == 4
        assert json.loads(mlci("data", "gc", "-r", "--yes", "--json"))["recent"] == 1  # just pushed
        doc = json.loads(mlci("data", "gc", "-r", "--dry-run", "--min-age", "0", "--json"))
        assert planned(doc) == {h(b"v0\n")} and len(mem.find("/mlci-gc/cache")) == 4
        assert "removed 1 objects (3 B)" in mlci("data", "gc", "-r", "--yes", "--min-age", "0")
        left = {p.rsplit("/", 2)[1] + p.rsplit("/", 1)[1] for p in mem.find("/mlci-gc/cache")}
        assert h(b"v0\n") not in left and h(b"v1\n") in left and h(b"a" * 10) in left and len(left) == 3
    finally:
        mem.rm("/mlci-gc", recursive=True)


def test_gc_on_s3_over_loopback(tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="mlci-gc")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(
        repo,
        {
            "mlci.yaml": "data:\n  remotes:\n    s3:\n      url: s3://mlci-gc/cache\n"
            f"      options: {{client_kwargs: {{endpoint_url: '{s3_endpoint}'}}}}\n",
            "d/a.bin": b"a" * 10,
            "d/b.bin": b"b" * 10,
        },
    )
    ok(repo, "data", "add", "d", env=CREDS)
    ok(repo, "data", "push", env=CREDS)
    write(repo, {"d/b.bin": b"c" * 10})
    ok(repo, "data", "add", "d", env=CREDS)
    ok(repo, "data", "push", env=CREDS)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "d")

    def keys() -> set[str]:
        listed = s3.list_objects_v2(Bucket="mlci-gc", Prefix="cache/")
        return {k["Key"].split("/", 1)[1].replace("/", "") for k in listed.get("Contents", [])}

    assert len(keys()) == 5  # a, b, c and two manifests
    doc = gc_json(repo, "--yes", env=CREDS)  # LastModified read from the listing: all too young
    assert doc["deleted"] == 0 and doc["recent"] == 2 and len(keys()) == 5
    doc = gc_json(repo, "--yes", "--min-age", "0", env=CREDS)
    assert doc["deleted"] == 2 and doc["failed"] == []
    assert h(b"b" * 10) not in keys() and {h(b"a" * 10), h(b"c" * 10)} <= keys() and len(keys()) == 3


def test_s3_deletes_go_a_thousand_per_request(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,001 objects on S3: two DeleteObjects requests, each key's outcome counted; a request
    that fails as a whole (no such bucket) reports its objects and nothing is counted."""
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    import boto3
    import s3fs

    from mlci_tui.data import gc as data_gc

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="mlci-batch")
    objects = {hash_bytes(str(n).encode(), "blake3"): n + 1 for n in range(1001)}
    kept = hash_bytes(b"kept", "blake3")
    for digest in [*objects, kept]:
        s3.put_object(Bucket="mlci-batch", Key=f"cache/{digest[:2]}/{digest[2:]}", Body=b"x")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    calls: list[int] = []
    real = fs.call_s3

    def counted(method: str, *args: object, **kwargs: object) -> object:
        if method == "delete_objects":
            calls.append(len(kwargs["Delete"]["Objects"]))  # type: ignore[index]
        return real(method, *args, **kwargs)

    monkeypatch.setattr(fs, "call_s3", counted)
    result = data_gc.delete_remote(fs, "mlci-batch/cache", objects, jobs=2)
    assert sorted(calls) == [1, 1000]
    assert result.deleted == 1001 and result.freed == sum(objects.values()) and result.failed == []
    left = s3.list_objects_v2(Bucket="mlci-batch", Prefix="cache/")["Contents"]
    assert [o["Key"] for o in left] == [f"cache/{kept[:2]}/{kept[2:]}"]

    gone = data_gc.delete_remote(fs, "no-such-bucket/cache", {kept: 1}, jobs=1)
    assert gone.deleted == 0 and gone.freed == 0
    assert len(gone.failed) == 1 and gone.failed[0].startswith(f"1 objects from {kept[:12]}: ")
    assert "NoSuchBucket" in gone.failed[0] or "does not exist" in gone.failed[0]


def test_other_worktrees_keep_their_head_index_and_working_tree(tmp_path: Path) -> None:
    """A second worktree of the clone, detached at an old commit, with another version staged:
    remote gc keeps both; once the worktree is removed, the same gc deletes them."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    store = tmp_path / "store"
    write(repo, {"mlci.yaml": config(str(store))})
    pointers = {}
    for n in range(4):
        add(repo, {"t.csv": f"v{n}\n"}, "t.csv")
        ok(repo, "data", "push")
        pointers[n] = (repo / "t.csv.mlci").read_text()
        if n in (0, 2):
            git(repo, "add", "-A")
            git(repo, "commit", "-qm", f"v{n}")
    (repo / "t.csv.mlci").write_text(pointers[2])  # v3 was pushed, then dropped: nothing names it
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "--detach", str(wt), "HEAD~1")  # HEAD names v0
    (wt / "t.csv.mlci").write_text(pointers[1])
    git(wt, "add", "t.csv.mlci")  # its index names v1
    (wt / "t.csv.mlci").write_text(pointers[0])  # its working tree names v0 again
    versions = {n: h(f"v{n}\n".encode()) for n in range(4)}
    assert set(versions.values()) <= on_store(store)

    doc = gc_json(repo, "--yes", "--min-age", "0")
    assert doc["deleted"] == 1 and planned(doc) == {versions[3]}
    assert {versions[0], versions[1], versions[2]} <= on_store(store) and versions[3] not in on_store(store)

    git(repo, "worktree", "remove", "--force", str(wt))
    doc = gc_json(repo, "--yes", "--min-age", "0")
    assert planned(doc) == {versions[0], versions[1]}
    assert on_store(store) == {versions[2]}
