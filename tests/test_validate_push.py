"""Pre-push validates the dataset versions a push carries, and makes their data fetchable.

Real git with a bare upstream and mlci's plain hooks (`mlci install`); one case through the
pre-commit framework's pre-push stage; the data remote is a local folder, and an S3 server
on loopback (moto) for the upload before the git push completes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from conftest import git, run_mlci, write

CONFIG = """\
datasets:
  customers:
    path: data/customers.csv
    primary_key: [id]
    columns:
      id: {type: int64, nullable: false, unique: true}
      v: {type: int64}
"""
GOOD = "id,v\n1,10\n2,20\n3,30\n"
DUPLICATE = "id,v\n1,10\n1,20\n3,30\n"


def gitp(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(["git", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300, check=False)


def commit_all(repo: Path, message: str, *, verify: bool = True) -> str:
    git(repo, "add", "-A")
    proc = gitp(repo, "commit", "-qm", message, *([] if verify else ["--no-verify"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def project(repo: Path, upstream: Path) -> Path:
    """Plain mlci hooks, a declared dataset committed clean and pushed."""
    git(repo, "remote", "add", "origin", str(upstream))
    assert run_mlci(repo, "install").returncode == 0
    write(repo, {"mlci.yaml": CONFIG, "data/customers.csv": GOOD})
    commit_all(repo, "data v1")
    proc = gitp(repo, "push", "-q", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    return repo


def remote_head(upstream: Path) -> str:
    return git(upstream, "rev-parse", "refs/heads/main").strip()


def test_a_bad_dataset_committed_with_no_verify_is_refused_at_push(project: Path, upstream: Path) -> None:
    before = remote_head(upstream)
    write(project, {"data/customers.csv": DUPLICATE})
    bad = commit_all(project, "duplicate ids", verify=False)
    write(project, {"notes.txt": "later commit, no data\n"})
    commit_all(project, "notes")
    proc = gitp(project, "push", "origin", "main")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert remote_head(upstream) == before
    assert "FAIL column id: unique" in out, out
    assert (
        f'dataset customers (data/customers.csv) fails its checks as committed in {bad[:12]} ("duplicate ids")' in out
    )
    assert "git push --no-verify" in out and "Traceback" not in out
    # --no-verify skips it (git's own switch)
    assert gitp(project, "push", "-q", "--no-verify", "origin", "main").returncode == 0


def test_scope_tip_passes_a_fixed_version_scope_all_refuses_it(project: Path, upstream: Path) -> None:
    write(project, {"data/customers.csv": DUPLICATE})
    bad = commit_all(project, "bad", verify=False)
    write(project, {"data/customers.csv": GOOD + "4,40\n"})
    commit_all(project, "fixed")
    git(project, "branch", "all-scope", bad)
    # the default scope checks what the pushed tip serves: fixed
    proc = gitp(project, "push", "origin", "main")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # scope all: every version the commits the remote lacks introduce
    git(project, "checkout", "-q", "-b", "strict", "main")
    write(project, {"mlci.yaml": CONFIG.replace("datasets:", "data:\n  push_scope: all\ndatasets:")})
    write(project, {"data/customers.csv": DUPLICATE})
    bad2 = commit_all(project, "bad again", verify=False)
    write(project, {"data/customers.csv": GOOD})
    commit_all(project, "fixed again")
    proc = gitp(project, "push", "origin", "strict")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"as committed in {bad2[:12]}" in out, out
    assert "strict" not in git(upstream, "branch", "--list")


def result_files(repo: Path) -> dict[str, int]:
    found = {}
    for path in (repo / ".git" / "mlci").rglob("results/*.json"):
        found[str(path)] = path.stat().st_mtime_ns
    return found


def test_a_version_validated_at_commit_time_is_one_lookup(project: Path) -> None:
    write(project, {"data/customers.csv": GOOD + "4,40\n"})
    commit_all(project, "more rows")  # the pre-commit hook validates it and stores the result
    before = result_files(project)
    assert before
    proc = gitp(project, "push", "origin", "main")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result_files(project) == before  # no result written again: the engine did not run


def test_on_push_warn_lets_the_push_through_off_checks_nothing(project: Path, upstream: Path) -> None:
    write(project, {"mlci.yaml": "data:\n  on_push: warn\n" + CONFIG, "data/customers.csv": DUPLICATE})
    commit_all(project, "bad, warn only", verify=False)
    proc = gitp(project, "push", "origin", "main")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "warning: dataset customers (data/customers.csv) fails its checks" in out
    write(project, {"mlci.yaml": "data:\n  on_push: off\n" + CONFIG, "data/customers.csv": DUPLICATE + "9,9\n"})
    commit_all(project, "bad, off", verify=False)
    proc = gitp(project, "push", "origin", "main")
    assert proc.returncode == 0 and "customers" not in proc.stdout + proc.stderr


def test_no_hooks_env_and_ledger_pushes_are_left_alone(project: Path) -> None:
    write(project, {"data/customers.csv": DUPLICATE})
    commit_all(project, "bad", verify=False)
    assert gitp(project, "push", "-q", "origin", "main", env={"MLCI_NO_HOOKS": "1"}).returncode == 0


PROBE = """
import json, sys
from mlci_tui.hooks import run
rc = run("pre-push", ["origin", "url"])
heavy = ("duckdb", "pyarrow", "mlci_tui.validate.push", "mlci_tui.validate.run")
print(json.dumps({"rc": rc, "heavy": sorted(m for m in sys.modules if m in heavy or m.split(".")[0] in heavy)}))
"""


def test_a_push_without_dataset_changes_imports_no_validation(project: Path, upstream: Path) -> None:
    write(project, {"train.py": "print('hi')\n"})
    head = commit_all(project, "code only")
    old = remote_head(upstream)
    stdin = f"refs/heads/main {head} refs/heads/main {old}\n"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=project, input=stdin, capture_output=True, text=True, check=False
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"rc": 0, "heavy": []}, proc.stderr
    # a positive control: the same probe on a push carrying a dataset change does import it
    write(project, {"data/customers.csv": GOOD + "5,50\n"})
    head = commit_all(project, "data", verify=False)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=project,
        input=f"refs/heads/main {head} refs/heads/main {old}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert "mlci_tui.validate.push" in json.loads(proc.stdout.strip().splitlines()[-1])["heavy"]


# ------------------------------------------------------------------------------ pointers and the data remote
def pointer_project(repo: Path, upstream: Path, remote_yaml: str, env: Mapping[str, str] | None = None) -> Path:
    git(repo, "remote", "add", "origin", str(upstream))
    assert run_mlci(repo, "install").returncode == 0
    write(repo, {"mlci.yaml": remote_yaml, "data/table.csv": GOOD})
    proc = run_mlci(repo, "data", "add", "data/table.csv", env=dict(env or {}))
    assert proc.returncode == 0, proc.stderr
    commit_all(repo, "track table")
    return repo


def test_a_pointer_whose_content_is_nowhere_is_refused(repo: Path, upstream: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    pointer_project(
        repo, upstream, f"data:\n  push_with_git: false\n  remotes:\n    store: {{url: 'file://{store}'}}\n"
    )
    digest = next(
        line.split(":", 1)[1].strip()
        for line in (repo / "data/table.csv.mlci").read_text().splitlines()
        if line.startswith("hash:")
    )
    obj = repo / ".mlci" / "cache" / digest[:2] / digest[2:]
    os.chmod(obj.parent, 0o755)
    obj.unlink()
    proc = gitp(repo, "push", "origin", "main")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "data/table.csv.mlci as committed in" in out and f"names content {digest[:12]}" in out, out
    assert "nor on data remote store" in out


def test_push_with_git_off_reports_a_version_missing_from_the_remote(
    repo: Path, upstream: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    pointer_project(
        repo, upstream, f"data:\n  push_with_git: false\n  remotes:\n    store: {{url: 'file://{store}'}}\n"
    )
    proc = gitp(repo, "push", "origin", "main")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "is not on data remote store" in out and "mlci data push" in out, out
    assert run_mlci(repo, "data", "push").returncode == 0
    assert gitp(repo, "push", "-q", "origin", "main").returncode == 0


CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def test_data_only_in_the_local_cache_is_uploaded_before_the_git_push(
    repo: Path, upstream: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in CREDS.items():
        monkeypatch.setenv(key, value)
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="pushdata")
    remote_yaml = (
        "data:\n  remotes:\n    s3:\n      url: s3://pushdata/cache\n"
        f"      options: {{client_kwargs: {{endpoint_url: '{s3_endpoint}'}}}}\n"
    )
    pointer_project(repo, upstream, remote_yaml, env=CREDS)
    assert s3.list_objects_v2(Bucket="pushdata").get("KeyCount", 0) == 0
    proc = gitp(repo, "push", "origin", "main", env=CREDS)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 object(s) uploaded to s3 with the push" in out
    assert s3.list_objects_v2(Bucket="pushdata")["KeyCount"] == 1
    # a fresh clone can fetch what the pushed pointer names
    clone = repo.parent / "clone"
    git(repo.parent, "clone", "-q", str(upstream), str(clone))
    proc = run_mlci(clone, "data", "pull", env=CREDS)
    assert proc.returncode == 0, proc.stderr
    assert (clone / "data/table.csv").read_text() == GOOD


def test_an_upload_that_fails_refuses_the_push(repo: Path, upstream: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    pointer_project(repo, upstream, f"data:\n  remotes:\n    store: {{url: 'file://{store}'}}\n")
    store.write_text("a file where the remote's folder should be\n")
    proc = gitp(repo, "push", "origin", "main")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "push refused:" in out and "store" in out and "Traceback" not in out
    assert not git(upstream, "branch", "--list").strip()


def test_the_pre_commit_frameworks_pre_push_stage_refuses_it_too(repo: Path, upstream: Path) -> None:
    from mlci_tui.install import FRAMEWORK_CONFIG

    git(repo, "remote", "add", "origin", str(upstream))
    write(repo, {FRAMEWORK_CONFIG: "repos: []\n"})
    proc = run_mlci(repo, "init")
    assert proc.returncode == 0, proc.stderr
    assert "pre-commit" in (repo / ".git" / "hooks" / "pre-push").read_text()
    write(repo, {"mlci.yaml": CONFIG, "data/customers.csv": GOOD})
    commit_all(repo, "data v1")
    assert gitp(repo, "push", "-q", "origin", "main").returncode == 0
    write(repo, {"data/customers.csv": DUPLICATE})
    bad = commit_all(repo, "duplicate ids", verify=False)
    proc = gitp(repo, "push", "origin", "main")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"fails its checks as committed in {bad[:12]}" in out, out
