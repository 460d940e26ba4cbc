"""End to end through the REAL pre-commit framework: `mlci init`, `git commit`, `git push`.

Also checks `.pre-commit-hooks.yaml` (what users of the published repository point the
framework at) with the framework's own validator and by running it through the framework.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml
from conftest import commit, git, metrics_json, run_mlci, write

from mlci_tui.hooks import CANDIDATE_SUFFIXES, DATASET_SUFFIXES, STAGES
from mlci_tui.install import FRAMEWORK_CONFIG, framework_hooks

CHECKOUT = Path(__file__).resolve().parent.parent
MANIFEST = CHECKOUT / ".pre-commit-hooks.yaml"
BAD_METRICS = '{\n  "acc": 0.9,\n  "loss": \n}\n'  # line 4: a value is missing
TEAM_CONFIG = "# the team's hooks; mlci init adds its own below\nrepos: []\n"


def gitp(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, input=input, capture_output=True, text=True, timeout=300, check=False
    )


def output(proc: subprocess.CompletedProcess[str]) -> str:
    """git sends hook output to stdout or stderr depending on the stage: read both."""
    return proc.stdout + proc.stderr


def pre_commit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def runs(repo: Path) -> list[dict]:  # type: ignore[type-arg]
    proc = run_mlci(repo, "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_commits(repo: Path) -> set[str]:
    return {r["commit"] for r in runs(repo)}


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def remote_refs(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())  # type: ignore[misc]


def commit_off(repo: Path, files: Mapping[str, str], message: str) -> str:
    """A commit made with MLCI_NO_HOOKS=1: no mlci hook runs, nothing is captured."""
    write(repo, files)
    git(repo, "add", "-A")
    proc = gitp(repo, "commit", "-qm", message, env={"MLCI_NO_HOOKS": "1"})
    assert proc.returncode == 0, output(proc)
    return head(repo)


def snapshot(repo: Path) -> dict[str, bytes]:
    files = {name: (repo / name).read_bytes() for name in ("mlci.yaml", ".gitignore", FRAMEWORK_CONFIG)}
    for path in sorted((repo / ".git" / "hooks").iterdir()):
        if path.is_file() and not path.name.endswith(".sample"):
            files[f"hooks/{path.name}"] = path.read_bytes()
    return files


# --- the manifest ---------------------------------------------------------------------------------


def test_manifest_passes_the_frameworks_validator() -> None:
    proc = pre_commit(CHECKOUT, "validate-manifest", str(MANIFEST))
    assert proc.returncode == 0, output(proc)
    assert output(proc) == ""


def test_the_validator_does_reject_a_broken_manifest(tmp_path: Path) -> None:
    """Control: the check above can fail."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(MANIFEST.read_text().replace("  entry: mlci hook pre-push\n", "", 1))
    proc = pre_commit(tmp_path, "validate-manifest", str(broken))
    assert proc.returncode != 0
    assert "entry" in output(proc)


def test_manifest_matches_what_mlci_init_writes() -> None:
    from pre_commit.clientlib import load_manifest

    published = {hook["id"]: hook for hook in load_manifest(str(MANIFEST))}  # with the framework's defaults
    local = {hook["id"]: hook for hook in framework_hooks()}
    assert list(published) == list(local) == [f"mlci-{stage}" for stage in STAGES]
    for hook_id, hook in published.items():
        stage = hook_id.removeprefix("mlci-")
        assert hook["entry"] == local[hook_id]["entry"] == f"mlci hook {stage}"
        assert hook["stages"] == local[hook_id]["stages"] == [stage]
        assert hook["language"] == "python"
        assert hook["require_serial"] is True
        assert hook["pass_filenames"] is False
        assert hook["minimum_pre_commit_version"] == "3.2.0"
        if stage == "pre-commit":
            continue
        assert hook["always_run"] is True, f"{hook_id}: git runs {stage} without files"
    # mlci-pre-commit is started only when a file the hook could care about is staged
    pre = published["mlci-pre-commit"]
    files = re.compile(pre["files"])
    for suffix in CANDIDATE_SUFFIXES + DATASET_SUFFIXES:
        assert files.search(f"dir/metrics{suffix}"), suffix
    assert pre["verbose"] is False and "verbose" not in local["mlci-pre-commit"], "a passing hook is quiet"
    assert pre["files"] == local["mlci-pre-commit"]["files"], "one filter, published and local"
    for name in ("train.py", "README.md", "model.pt", "metrics.json.bak"):
        assert not files.search(name), name
    assert "symlink" in pre["types_or"], "a staged symlink must reach the hook, which refuses it"


def _published_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repo holding the manifest, as users would point at. `language: system` stands in
    for `python` because the framework would pip-install mlci and its dependencies from the
    network; every other key is the published one."""
    pub = tmp_path / "published"
    pub.mkdir()
    git(pub, "init", "-q", "-b", "main")
    text = MANIFEST.read_text()
    assert text.count("  language: python\n") == len(STAGES)
    (pub / ".pre-commit-hooks.yaml").write_text(text.replace("  language: python\n", "  language: system\n"))
    commit(pub, {}, "hooks")
    return pub, head(pub)


def test_published_manifest_runs_through_the_framework(repo: Path, upstream: Path, tmp_path: Path) -> None:
    pub, sha = _published_repo(tmp_path)
    config = {
        "default_install_hook_types": list(STAGES),
        "repos": [{"repo": str(pub), "rev": sha, "hooks": [{"id": f"mlci-{s}"} for s in STAGES]}],
    }
    write(repo, {FRAMEWORK_CONFIG: yaml.safe_dump(config, sort_keys=False)})
    git(repo, "remote", "add", "origin", str(upstream))
    proc = pre_commit(repo, "install")
    assert proc.returncode == 0, output(proc)
    for stage in STAGES:
        assert "pre-commit" in (repo / ".git" / "hooks" / stage).read_text()

    first = commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "first")
    assert run_commits(repo) == {first}

    write(repo, {"train.py": "print('no params or metrics here')\n"})
    git(repo, "add", "train.py")
    proc = gitp(repo, "commit", "-m", "code only")
    assert proc.returncode == 0, output(proc)
    assert re.search(r"mlci pre-commit\.*\(no files to check\)Skipped", output(proc)), output(proc)

    write(repo, {"metrics.json": BAD_METRICS})
    git(repo, "add", "metrics.json")
    proc = gitp(repo, "commit", "-m", "bad")
    assert proc.returncode != 0
    assert "metrics.json:4" in output(proc), output(proc)
    assert "commit blocked" in output(proc)

    git(repo, "checkout", "-q", "--", ".")
    git(repo, "reset", "-q")
    proc = gitp(repo, "push", "origin", "main")
    assert proc.returncode == 0, output(proc)
    assert remote_refs(upstream)["refs/mlci/ledger"] == git(repo, "rev-parse", "refs/mlci/ledger").strip()


# --- mlci init in a repository that uses the framework ------------------------------------------------


def test_init_through_the_framework_end_to_end(repo: Path, upstream: Path, clone_of: Callable[..., Path]) -> None:
    git(repo, "remote", "add", "origin", str(upstream))
    write(repo, {FRAMEWORK_CONFIG: TEAM_CONFIG, "params.yaml": "train:\n  lr: 0.1\n"})
    write(repo, {"metrics.json": metrics_json(acc=0.5)})
    proc = run_mlci(repo, "init")
    assert proc.returncode == 0, proc.stderr
    assert "installed through the pre-commit framework" in proc.stdout

    text = (repo / FRAMEWORK_CONFIG).read_text()
    assert text.startswith("# the team's hooks; mlci init adds its own below\n"), "the user's comment is kept"
    config = yaml.safe_load(text)
    [local] = config["repos"]
    assert local["repo"] == "local"
    assert local["hooks"] == framework_hooks()
    proc = pre_commit(repo, "validate-config", FRAMEWORK_CONFIG)
    assert proc.returncode == 0, output(proc)
    for stage in STAGES:  # every stage goes through the framework, none through plain mlci hooks
        script = (repo / ".git" / "hooks" / stage).read_text()
        assert "File generated by pre-commit" in script and f"--hook-type={stage}" in script
        assert "mlci-hook" not in script

    # commit: captured by the framework's post-commit
    first = commit(repo, {}, "first")
    [run] = runs(repo)
    assert (run["commit"], run["metrics"], run["params"]) == (first, {"acc": 0.5}, {"train.lr": "0.1"})

    # a malformed staged metrics.json blocks the commit, naming file and line
    write(repo, {"metrics.json": BAD_METRICS})
    git(repo, "add", "metrics.json")
    proc = gitp(repo, "commit", "-m", "bad metrics")
    assert proc.returncode != 0
    assert re.search(r"mlci pre-commit\.*Failed", output(proc)), output(proc)
    assert "mlci: metrics.json:4" in output(proc), output(proc)
    assert "Traceback" not in output(proc)
    assert head(repo) == first

    # --no-verify skips pre-commit only; MLCI_NO_HOOKS=1 skips mlci entirely: pre-push back-fills
    write(repo, {"metrics.json": metrics_json(acc=0.6)})
    git(repo, "add", "metrics.json")
    proc = gitp(repo, "commit", "-qm", "no verify", "--no-verify")
    assert proc.returncode == 0, output(proc)
    no_verify = head(repo)
    hooks_off = commit_off(repo, {"metrics.json": metrics_json(acc=0.7)}, "hooks off")
    assert hooks_off not in run_commits(repo)

    # pushing only the ledger ref returns at once, even as a root push (no from/to refs)
    ledger_tip = git(repo, "rev-parse", "refs/mlci/ledger").strip()
    proc = gitp(repo, "push", "origin", "refs/mlci/ledger")
    assert proc.returncode == 0, output(proc)
    assert remote_refs(upstream) == {"refs/mlci/ledger": ledger_tip}
    assert hooks_off not in run_commits(repo), "no back-fill for a refs/mlci push"
    assert git(repo, "for-each-ref", "refs/mlci-remote/") == "", "no ledger sync of its own"

    # push: the framework's pre-push (a root push: no from/to refs) back-fills and pushes the ledger
    proc = gitp(repo, "push", "origin", "main")
    assert proc.returncode == 0, output(proc)
    assert re.search(r"mlci pre-push\.*Passed", output(proc)), output(proc)
    assert run_commits(repo) == {first, no_verify, hooks_off}
    ls_remote = git(repo, "ls-remote", "origin")
    ledger_tip = git(repo, "rev-parse", "refs/mlci/ledger").strip()
    assert f"{ledger_tip}\trefs/mlci/ledger" in ls_remote
    assert f"{hooks_off}\trefs/heads/main" in ls_remote

    # a new branch (the framework passes from/to refs in the environment), then a merge
    proc = gitp(repo, "checkout", "-b", "feature")
    assert proc.returncode == 0, output(proc)
    assert re.search(r"mlci post-checkout\.*Passed", output(proc))
    feature = commit_off(repo, {"metrics.json": metrics_json(acc=0.8)}, "feature")
    proc = gitp(repo, "push", "origin", "feature")
    assert proc.returncode == 0, output(proc)
    assert feature in run_commits(repo)
    assert remote_refs(upstream)["refs/mlci/ledger"] == git(repo, "rev-parse", "refs/mlci/ledger").strip()
    proc = gitp(repo, "checkout", "main")
    assert proc.returncode == 0, output(proc)
    proc = gitp(repo, "merge", "--ff-only", "feature")
    assert proc.returncode == 0, output(proc)
    assert re.search(r"mlci post-merge\.*Passed", output(proc))

    # a teammate who pulls the ledger sees every run
    mate = clone_of("teammate")
    assert run_mlci(mate, "ledger", "pull").returncode == 0
    assert run_commits(mate) == {first, no_verify, hooks_off, feature}


def test_init_twice_changes_nothing(repo: Path) -> None:
    write(repo, {FRAMEWORK_CONFIG: TEAM_CONFIG, "metrics.json": metrics_json(acc=0.5)})
    proc = run_mlci(repo, "init")
    assert proc.returncode == 0, proc.stderr
    before = snapshot(repo)
    assert {f"hooks/{stage}" for stage in STAGES} <= set(before)
    proc = run_mlci(repo, "init")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" not in proc.stdout and "added" not in proc.stdout, proc.stdout
    assert snapshot(repo) == before


def test_no_hooks_env_silences_the_framework_hooks(repo: Path) -> None:
    write(repo, {FRAMEWORK_CONFIG: TEAM_CONFIG, "metrics.json": metrics_json(acc=0.5)})
    assert run_mlci(repo, "init").returncode == 0
    first = commit(repo, {}, "first")
    assert run_commits(repo) == {first}
    commit_off(repo, {"metrics.json": BAD_METRICS}, "bad, unchecked, uncaptured")
    proc = gitp(repo, "checkout", "-b", "feature", env={"MLCI_NO_HOOKS": "1"})
    assert proc.returncode == 0, output(proc)
    assert "mlci:" not in output(proc)
    assert run_commits(repo) == {first}
