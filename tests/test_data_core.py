"""Data as code, in-process: pointer format, cache, DVC reader, pointers read from git objects."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import git, write

from mlci_tui.data.add import add_paths
from mlci_tui.data.cache import DataCache
from mlci_tui.data.dvc import read_dvc_file, read_dvc_lock
from mlci_tui.data.hashing import StatCache, hash_file
from mlci_tui.data.pointer import Pointer, dump_pointer, parse_pointer
from mlci_tui.data.tree import iter_pointers
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo

H = "a" * 64


def test_pointer_round_trip_keeps_every_field() -> None:
    p = Pointer(
        path="data/raw file.csv",
        algo="blake3",
        hash=H,
        size=12,
        nfiles=None,
        format="csv",
        source_url="https://example.com/a b.csv?x=1",
        source_version='etag "7"',
    )
    text = dump_pointer(p)
    assert parse_pointer(text, "data/raw file.csv.mlci") == p
    folder = Pointer(path="imgs", algo="md5", hash="b" * 32, size=0, nfiles=3)
    assert parse_pointer(dump_pointer(folder), "imgs.mlci") == folder


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (f"path: ../x\nalgo: blake3\nhash: {H}\nsize: 1\n", "leaves its folder"),
        (f"path: /etc/passwd\nalgo: blake3\nhash: {H}\nsize: 1\n", "absolute"),
        (f"path: x\nalgo: sha1\nhash: {H}\nsize: 1\n", "unknown hash algorithm"),
        ("path: x\nalgo: blake3\nhash: 12zz\nsize: 1\n", "not a blake3 hex digest"),
        (f"path: x\nalgo: blake3\nhash: {H}\n", "missing `size`"),
        (f"path: x\nalgo: blake3\nhash: {H}\nsize: 1\nevil: 1\n", "unknown line"),
        (f"path: .git/config\nalgo: blake3\nhash: {H}\nsize: 1\n", "not a dataset"),
    ],
)
def test_bad_pointer_text_is_an_input_error_naming_the_file(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_pointer(text, "data/x.mlci")
    assert "data/x.mlci" in str(info.value)
    assert fragment in str(info.value)


def test_cache_objects_are_read_only_and_content_addressed(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"hello" * 1000)
    cache = DataCache(tmp_path / "cache")
    digest, size = cache.add_file(src)
    assert (digest, size) == (hash_file(src, "blake3"), 5000)
    obj = cache.object_path(digest)
    assert obj.read_bytes() == src.read_bytes()
    assert not os.stat(obj).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert cache.has(digest) and not cache.has("0" * 64)
    entries = [("b.csv", digest, 5000), ("a/x.csv", digest, 5000)]
    folder = cache.add_manifest(entries)
    assert cache.manifest(folder) == sorted(entries)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]  # no temp file left


def test_stat_cache_skips_rehash_until_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"one")
    sc = StatCache(tmp_path / "state")
    first = sc.hash("x", f, "blake3")
    sc.save()
    again = StatCache(tmp_path / "state")
    assert again.get("x", os.stat(f), "blake3") == first
    f.write_bytes(b"two!")
    assert again.get("x", os.stat(f), "blake3") is None
    assert again.hash("x", f, "blake3") == hash_file(f, "blake3") != first


DVC_FILE = """outs:
- md5: 3b5d5c3712955042212316173ccf37be
  size: 1234
  hash: md5
  path: customers.csv
- md5: 1f2e3d4c5b6a79880123456789abcdef.dir
  size: 99
  nfiles: 4
  hash: md5
  path: images
"""
DVC_LOCK = """schema: '2.0'
stages:
  prepare:
    cmd: python prepare.py
    deps:
    - path: raw.csv
      md5: 00000000000000000000000000000000
      size: 1
    outs:
    - path: data/clean.parquet
      hash: md5
      md5: 1111111111111111111111111111111f
      size: 77
"""


def test_dvc_files_and_lock_outputs_are_read_as_pointers() -> None:
    files = read_dvc_file(DVC_FILE, "data/customers.csv.dvc")
    assert [(p.path, p.hash, p.size, p.nfiles, p.format, p.origin) for p in files] == [
        ("data/customers.csv", "3b5d5c3712955042212316173ccf37be", 1234, None, "csv", "dvc"),
        ("data/images", "1f2e3d4c5b6a79880123456789abcdef", 99, 4, None, "dvc"),
    ]
    (lock,) = read_dvc_lock(DVC_LOCK, "dvc.lock")
    assert (lock.path, lock.hash, lock.format, lock.origin) == (
        "data/clean.parquet",
        "1" * 31 + "f",
        "parquet",
        "dvc.lock",
    )
    with pytest.raises(InputError, match="leaves the repository"):
        read_dvc_file("outs:\n- {md5: " + "2" * 32 + ", path: ../../x}\n", "a/x.dvc")


def test_iter_pointers_reads_index_and_commits_not_the_working_tree(repo: Path) -> None:
    write(repo, {"data/a.csv": "id\n1\n", "data/imgs/1.txt": "x", "data/imgs/sub/2.txt": "y"})
    pointers = add_paths(repo, ["data/a.csv", "data/imgs"], cwd=repo)
    write(repo, {"data/customers.csv.dvc": DVC_FILE, "dvc.lock": DVC_LOCK})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data")
    r = Repo.find(repo)
    from_head = iter_pointers(r, "HEAD")
    assert {p.path for p in from_head} == {
        "data/a.csv",
        "data/imgs",
        "data/customers.csv",
        "data/images",
        "data/clean.parquet",
    }
    assert [p for p in from_head if p.origin == "mlci"] == pointers
    # a working-tree edit is invisible until staged
    (repo / "data/a.csv.mlci").write_text(f"path: a.csv\nalgo: blake3\nhash: {H}\nsize: 3\n")
    assert next(p for p in iter_pointers(r, ":") if p.path == "data/a.csv").hash == pointers[0].hash
    git(repo, "add", "data/a.csv.mlci")
    assert next(p for p in iter_pointers(r, ":") if p.path == "data/a.csv").hash == H
    # a bad pointer staged: strict raises naming it, lenient warns and goes on
    (repo / "bad.mlci").write_text(f"path: ../../etc/passwd\nalgo: blake3\nhash: {H}\nsize: 3\n")
    git(repo, "add", "bad.mlci")
    with pytest.raises(InputError, match="bad.mlci"):
        iter_pointers(r, ":")
    warnings: list[str] = []
    assert len(iter_pointers(r, ":", strict=False, warnings=warnings)) == 5
    assert warnings and "bad.mlci" in warnings[0]


def test_add_fetched_content_and_source_fields(repo: Path, tmp_path: Path) -> None:
    fetched = tmp_path / "download.tmp"
    fetched.write_text("a,b\n1,2\n")
    (p,) = add_paths(
        repo,
        ["data/remote.csv"],
        cwd=repo,
        fetched={"data/remote.csv": fetched},
        sources={"data/remote.csv": ("https://example.com/r.csv", "etag-1")},
    )
    assert (repo / "data/remote.csv").read_text() == "a,b\n1,2\n"
    assert (p.source_url, p.source_version, p.format) == ("https://example.com/r.csv", "etag-1", "csv")
    assert parse_pointer((repo / "data/remote.csv.mlci").read_text(), "data/remote.csv.mlci") == p
    assert "/data/remote.csv" in (repo / ".gitignore").read_text().splitlines()
    assert DataCache.for_repo(repo).has(p.hash)


def test_md5_add_matches_dvc_hash(repo: Path) -> None:
    write(repo, {"d.csv": "x\n"})
    (p,) = add_paths(repo, ["d.csv"], cwd=repo, algo="md5")
    assert (p.algo, p.hash) == ("md5", "401b30e3b8b5d629635a5c613cdb7919")


def test_demo_step_tracks_and_commits_the_customers_dataset(repo: Path) -> None:
    from mlci_tui.demo.data_step import add_demo_dataset, customers_csv

    p = add_demo_dataset(repo, rows=120)
    assert git(repo, "ls-files").split() == [".gitignore", "data/customers.csv.mlci"]
    assert iter_pointers(Repo.find(repo), "HEAD") == [p]
    lines = (repo / "data/customers.csv").read_text().splitlines()
    assert len(lines) == 121 and lines[0] == "customer_id,country,income,age,signup_date"
    assert {line.split(",")[1] for line in lines[1:]} <= {"US", "GB", "NO"}
    bad = customers_csv(120, bad=True)
    assert ",XX,-120.5," in bad


def test_status_never_rehashes_unchanged_files(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlci_tui.data import hashing
    from mlci_tui.data.status import status

    write(repo, {f"d/{i}.txt": f"file {i}\n" for i in range(50)})
    write(repo, {"one.csv": "a\n1\n"})
    add_paths(repo, ["d", "one.csv"], cwd=repo)
    state = Repo.find(repo).state_dir
    calls: list[str] = []
    real = hashing.hash_file

    def counting(path: object, algo: str, size: int | None = None) -> str:
        calls.append(str(path))
        return real(path, algo, size)  # type: ignore[arg-type]

    monkeypatch.setattr(hashing, "hash_file", counting)
    assert {s.path: s.status for s in status(repo, state)} == {"d": "unchanged", "one.csv": "unchanged"}
    assert calls == []  # everything answered from the stat cache written by add
    assert [s.status for s in status(repo, state)] == ["unchanged", "unchanged"]
    assert calls == []
    (repo / "d/7.txt").write_text("changed!\n")
    st = {s.path: s for s in status(repo, state)}
    assert st["d"].status == "modified" and st["d"].changes == [("7.txt", "modified")]
    assert len(calls) == 1 and calls[0].endswith("d/7.txt")


def test_an_interrupted_object_write_counts_as_absent_and_is_replaced(tmp_path: Path) -> None:
    cache = DataCache(tmp_path / "cache")
    data = b"complete content\n"
    digest = cache.add_bytes(data)
    obj = cache.object_path(digest)
    os.chmod(obj, 0o644)
    obj.unlink()
    obj.write_bytes(b"compl")  # what a killed writer leaves: a prefix, mode 0200
    os.chmod(obj, 0o200)
    assert not cache.has(digest)
    src = tmp_path / "again.txt"
    src.write_bytes(data)
    assert cache.add_file(src) == (digest, len(data))
    assert cache.has(digest) and obj.read_bytes() == data
    assert os.stat(obj).st_mode & 0o777 == 0o444
