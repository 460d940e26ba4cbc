"""`mlci data ...` through the real command: add, status, checkout, gc, bad input, credentials,
the post-checkout hook, and the `datasets` field of captured runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import commit, git, metrics_json, run_mlci, write

from mlci_tui.data.cache import DataCache


def ok(repo: Path, *args: str) -> str:
    proc = run_mlci(repo, *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def status(repo: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["path"]: r for r in json.loads(ok(repo, "data", "status", "--json"))}


def objects(repo: Path) -> set[str]:
    return set(DataCache.for_repo(repo).iter_objects())


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root except .git (content), to show nothing was lost or changed."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for f in files:
            p = Path(folder) / f
            if not p.is_symlink():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture
def tracked(repo: Path) -> Path:
    write(
        repo,
        {"data/customers.csv": "id,name\n1,a\n2,b\n", **{f"data/imgs/{i:03}.txt": f"img {i}\n" for i in range(20)}},
    )
    ok(repo, "data", "add", "data/customers.csv", "data/imgs")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "track data")
    return repo


def test_add_writes_pointers_ignores_data_and_status_is_clean(tracked: Path) -> None:
    repo = tracked
    ignored = (repo / ".gitignore").read_text().splitlines()
    assert "/data/customers.csv" in ignored and "/data/imgs" in ignored
    assert git(repo, "ls-files").split() == [".gitignore", "data/customers.csv.mlci", "data/imgs.mlci"]
    st = status(repo)
    assert {p: (r["status"], r["in_cache"]) for p, r in st.items()} == {
        "data/customers.csv": ("unchanged", True),
        "data/imgs": ("unchanged", True),
    }
    assert len(objects(repo)) == 20 + 1 + 1  # 20 files, the csv, the folder manifest
    assert (repo / "data/customers.csv").read_text() == "id,name\n1,a\n2,b\n"  # copy mode: untouched


def test_one_changed_file_in_a_folder_adds_only_itself(tracked: Path) -> None:
    repo = tracked
    before = objects(repo)
    (repo / "data/imgs/005.txt").write_text("changed\n")
    (repo / "data/imgs/new.txt").write_text("new\n")
    (repo / "data/imgs/007.txt").unlink()
    changes = status(repo)["data/imgs"]["changes"]
    assert changes == [
        {"path": "005.txt", "change": "modified"},
        {"path": "007.txt", "change": "removed"},
        {"path": "new.txt", "change": "added"},
    ]
    ok(repo, "data", "add", "data/imgs")
    added = objects(repo) - before
    assert len(added) == 3  # the changed file, the new file, the new manifest
    assert status(repo)["data/imgs"]["status"] == "unchanged"


def test_checkout_restores_versions_and_never_overwrites_unsaved_changes(tracked: Path) -> None:
    repo = tracked
    csv = repo / "data/customers.csv"
    original = csv.read_text()
    csv.write_text("id,name\n1,a\n2,b\n3,c\n")
    ok(repo, "data", "add", "data/customers.csv")  # a saved version: its content is in the cache
    ok(repo, "data", "checkout")  # pointer says v2, file is v2: nothing to do
    git(repo, "checkout", "-q", "--", "data/customers.csv.mlci")  # pointer back to v1
    out = ok(repo, "data", "checkout")
    assert "1 files written" in out and csv.read_text() == original
    csv.write_text("unsaved edit\n")
    (repo / "data/imgs/003.txt").write_text("unsaved too\n")
    (repo / "data/imgs/extra.txt").write_text("unsaved new file\n")
    proc = run_mlci(repo, "data", "checkout")
    assert proc.returncode == 1
    assert "data/customers.csv: kept your unsaved change" in proc.stderr
    assert "data/imgs/003.txt" in proc.stderr and "data/imgs/extra.txt" in proc.stderr
    assert csv.read_text() == "unsaved edit\n" and (repo / "data/imgs/extra.txt").exists()
    ok(repo, "data", "checkout", "--force")
    assert csv.read_text() == original and not (repo / "data/imgs/extra.txt").exists()
    assert (repo / "data/imgs/003.txt").read_text() == "img 3\n"
    shutil_rm = repo / "data/imgs"
    for f in shutil_rm.iterdir():
        f.unlink()
    shutil_rm.rmdir()
    ok(repo, "data", "checkout", "data/imgs")
    assert len(list((repo / "data/imgs").iterdir())) == 20


@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_link_modes_share_the_read_only_cache(repo: Path, mode: str) -> None:
    write(repo, {"d/a.txt": "aaa\n", "d/b.txt": "bbb\n"})
    ok(repo, "data", "add", "--link", mode, "d")
    cache = DataCache.for_repo(repo)
    a = repo / "d/a.txt"
    if mode == "hardlink":
        assert os.stat(a).st_nlink == 2 and not os.stat(a).st_mode & 0o222  # the read-only object itself
    else:
        assert a.is_symlink() and Path(os.path.realpath(a)).parent.parent == cache.root.resolve()
    assert status(repo)["d"]["status"] == "unchanged"
    a.unlink()
    ok(repo, "data", "checkout", "--link", mode)
    assert a.read_text() == "aaa\n"


def test_gc_keeps_what_branches_and_the_worktree_name(tracked: Path) -> None:
    repo = tracked
    csv = repo / "data/customers.csv"
    v1 = json.loads(ok(repo, "data", "status", "--json"))[0]["hash"]
    csv.write_text("v2\n")
    ok(repo, "data", "add", "data/customers.csv")
    git(repo, "checkout", "-qb", "v2")
    git(repo, "commit", "-qam", "v2")
    csv.write_text("v3 never committed\n")
    ok(repo, "data", "add", "data/customers.csv")
    v3 = status(repo)["data/customers.csv"]["hash"]
    csv.write_text("v4\n")
    ok(repo, "data", "add", "data/customers.csv")
    before = objects(repo)
    assert "removed 0" not in ok(repo, "data", "gc", "--dry-run") and objects(repo) == before
    out = ok(repo, "data", "gc")
    assert "removed 1 objects" in out
    assert objects(repo) == before - {v3}
    assert v1 in objects(repo)  # main names it


@pytest.mark.parametrize(
    ("setup", "args", "fragment"),
    [
        (lambda r: None, ["data", "add", "../outside.csv"], "outside the repository"),
        (lambda r: None, ["data", "add", "/etc/hostname"], "outside the repository"),
        (lambda r: (r / "link.csv").symlink_to(r / "data/customers.csv"), ["data", "add", "link.csv"], "symlink"),
        (
            lambda r: (r / "data/imgs/link").symlink_to("/etc/hostname"),
            ["data", "add", "data/imgs"],
            "data/imgs/link: is a symlink",
        ),
        (lambda r: None, ["data", "add", "data/customers.csv.mlci"], "is a pointer file"),
        (lambda r: None, ["data", "add", "nothing-here.csv"], "no such file"),
        (
            lambda r: write(r, {"tracked.csv": "x\n"}) or git(r, "add", "tracked.csv"),
            ["data", "add", "tracked.csv"],
            "tracked by git",
        ),
        (
            lambda r: write(r, {"evil.mlci": "path: ../x\nalgo: blake3\nhash: " + "a" * 64 + "\nsize: 1\n"}),
            ["data", "status"],
            "evil.mlci: dataset path '../x' leaves its folder",
        ),
        (
            lambda r: write(r, {"abs.mlci": "path: /etc/passwd\nalgo: blake3\nhash: " + "a" * 64 + "\nsize: 1\n"}),
            ["data", "checkout"],
            "abs.mlci: dataset path '/etc/passwd' is absolute",
        ),
        (lambda r: None, ["data", "add", "."], "is the repository itself"),
        (
            lambda r: (
                (r / "out").symlink_to(r.parent)
                or write(r, {"out.csv.mlci": "path: out/x.csv\nalgo: blake3\nhash: " + "a" * 64 + "\nsize: 1\n"})
            ),
            ["data", "checkout"],
            "its folder leads outside the repository",
        ),
        (
            lambda r: (r / "sym.mlci").symlink_to(r / "data/customers.csv.mlci"),
            ["data", "status"],
            "sym.mlci: is a symlink",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_loses_nothing(tracked: Path, setup, args: list[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    repo = tracked
    (repo.parent / "outside.csv").write_text("x\n")
    setup(repo)
    before = snapshot(repo)
    proc = run_mlci(repo, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("remote", "fragment"),
    [
        ("{url: 's3://AKIAEXAMPLE:s3cr3t@bucket/data'}", "data.remotes.store.url: the URL holds user info"),
        ("{url: 's3://bucket/data', options: {secret: abc}}", "data.remotes.store.options.secret: credentials"),
        (
            "{url: 's3://bucket/data', options: {client_kwargs: {aws_secret_access_key: abc}}}",
            "options.client_kwargs.aws_secret_access_key",
        ),
        ("{url: 'https://h/x?X-Amz-Signature=abc'}", "signature or token"),
        (
            "{url: 'az://c/data', options: {connection_string: 'AccountName=a;AccountKey=abc=='}}",
            "options.connection_string: credentials",
        ),
    ],
)
def test_credentials_in_committed_config_are_refused(repo: Path, remote: str, fragment: str) -> None:
    write(repo, {"mlci.yaml": f"data:\n  remotes:\n    store: {remote}\n", "a.csv": "x\n"})
    proc = run_mlci(repo, "data", "push")
    assert proc.returncode == 2
    assert fragment in proc.stderr and "config.local.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_local_config_holds_credentials_and_must_not_be_tracked(repo: Path, tmp_path: Path) -> None:
    from mlci_tui.data.remotes import resolve

    store = tmp_path / "store"
    write(
        repo,
        {
            "mlci.yaml": f"data:\n  remotes:\n    store: {{url: '{store}', options: {{auto_mkdir: true}}}}\n",
            ".mlci/config.local.yaml": "remotes:\n  store:\n    options: {token: from-local}\n",
        },
    )
    from mlci_tui import config

    remote = resolve(repo, config.load(repo).data["data"], None)
    assert remote.options == {"auto_mkdir": True, "token": "from-local"}
    git(repo, "add", "-f", ".mlci/config.local.yaml")
    proc = run_mlci(repo, "data", "push")
    assert proc.returncode == 2 and "is tracked by git" in proc.stderr


def test_post_checkout_hook_checks_out_cached_data_on_branch_switch(repo: Path) -> None:
    write(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5), "data/d.csv": "v1\n"})
    ok(repo, "init", "--no-hooks")
    ok(repo, "data", "add", "data/d.csv")
    commit(repo, {}, "v1")
    ok(repo, "install")
    git(repo, "checkout", "-qb", "feature")
    (repo / "data/d.csv").write_text("v2\n")
    ok(repo, "data", "add", "data/d.csv")
    commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "v2")
    git(repo, "checkout", "-q", "main")
    assert (repo / "data/d.csv").read_text() == "v1\n"
    git(repo, "checkout", "-q", "feature")
    assert (repo / "data/d.csv").read_text() == "v2\n"
    # an unsaved change survives a branch switch
    (repo / "data/d.csv").write_text("my unsaved edit\n")
    proc = __import__("subprocess").run(["git", "checkout", "-q", "main"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "data/d.csv kept" in proc.stderr
    assert (repo / "data/d.csv").read_text() == "my unsaved edit\n"
    # file checkouts (flag 0) do nothing with data
    (repo / "data/d.csv").write_text("v2\n")
    git(repo, "checkout", "-q", "feature", "--", "metrics.json")
    assert (repo / "data/d.csv").read_text() == "v2\n"


def test_captured_runs_record_dataset_hashes(repo: Path) -> None:
    write(repo, {"metrics.json": metrics_json(acc=0.5), "data/d.csv": "a\n1\n", "data/d2/x.txt": "x"})
    ok(repo, "data", "add", "data/d.csv", "data/d2")
    write(
        repo,
        {
            "legacy.csv.dvc": "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  size: 3\n  hash: md5\n  path: legacy.csv\n"
        },
    )
    commit(repo, {}, "with data")
    ok(repo, "capture", "HEAD")
    (row,) = json.loads(ok(repo, "sql", "SELECT datasets FROM runs", "--json"))
    datasets = row["datasets"] if isinstance(row["datasets"], dict) else json.loads(row["datasets"])
    pointers = {r["path"]: r["hash"] for r in json.loads(ok(repo, "data", "status", "--json"))}
    assert datasets == {
        "data/d.csv": "blake3:" + pointers["data/d.csv"],
        "data/d2": "blake3:" + pointers["data/d2"],
        "legacy.csv": "md5:0123456789abcdef0123456789abcdef",
    }


def test_init_ignores_the_cache_and_the_local_credentials(repo: Path) -> None:
    ok(repo, "init", "--no-hooks")
    write(repo, {".mlci/config.local.yaml": "remotes: {}\n", ".mlci/cache/ab/cdef": "x"})
    ignored = git(repo, "check-ignore", ".mlci/config.local.yaml", ".mlci/cache/ab/cdef").split()
    assert ignored == [".mlci/config.local.yaml", ".mlci/cache/ab/cdef"]


def test_a_symlinked_mlci_folder_is_not_taken_for_a_pointer(tmp_path: Path) -> None:
    """`.mlci` may be a link to a cache on another disk: git lists the link, which names no dataset."""
    root = tmp_path / "r"
    root.mkdir()
    (tmp_path / "state").mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".mlci").symlink_to(tmp_path / "state")
    (root / "x.csv").write_text("a,b\n1,2\n")
    assert run_mlci(root, "data", "add", "x.csv").returncode == 0
    proc = run_mlci(root, "data", "status")
    assert proc.returncode == 0, proc.stderr
    assert "x.csv" in proc.stdout and "unchanged" in proc.stdout
