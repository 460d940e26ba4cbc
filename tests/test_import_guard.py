"""A hook with nothing relevant to do imports nothing heavy (docs/contracts.md: decision 5).

Each case runs `mlci_tui.hooks.run(STAGE, ARGS)` in a fresh interpreter inside a real
repository and reports `sys.modules`; duckdb, pyarrow, textual, plotext and GitPython must
be absent. A positive control (a branch checkout that has to rebuild the query cache) shows
the probe does see a heavy import when there is work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import commit, git, metrics_json, run_mlci

from mlci_tui.gitio import Repo

HEAVY = ("duckdb", "pyarrow", "textual", "plotext", "git")
ZERO = "0" * 40

PROBE = """
import json, sys
from mlci_tui.hooks import run
rc = run(sys.argv[1], sys.argv[2:])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def probe(cwd: Path, stage: str, *args: str, stdin: str = "") -> tuple[int, set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, stage, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["rc"], set(report["modules"]), proc.stderr


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.fixture
def project(repo: Path, upstream: Path) -> Path:
    """A repository with a captured commit, its ledger pushed to a bare upstream, no hooks."""
    git(repo, "remote", "add", "origin", str(upstream))
    commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "first")
    for args in (("capture", "HEAD"), ("ledger", "push", "origin")):
        proc = run_mlci(repo, *args)
        assert proc.returncode == 0, proc.stderr
    git(repo, "push", "-q", "origin", "main")
    return repo


def test_pre_commit_with_nothing_staged(project: Path) -> None:
    rc, modules, err = probe(project, "pre-commit")
    assert rc == 0, err
    assert heavy_in(modules) == []


def test_pre_commit_with_only_unrelated_files_staged(project: Path) -> None:
    (project / "train.py").write_text("print('hi')\n")
    (project / "README.md").write_text("# project\n")
    git(project, "add", "train.py", "README.md")
    rc, modules, err = probe(project, "pre-commit")
    assert rc == 0, err
    assert heavy_in(modules) == []


def test_post_checkout_of_files_not_a_branch(project: Path) -> None:
    head = git(project, "rev-parse", "HEAD").strip()
    rc, modules, err = probe(project, "post-checkout", head, head, "0")
    assert rc == 0, err
    assert heavy_in(modules) == []


def test_pre_push_of_mlci_refs_only(project: Path) -> None:
    tip = git(project, "rev-parse", "refs/mlci/ledger").strip()
    stdin = f"refs/mlci/ledger {tip} refs/mlci/ledger {ZERO}\n"
    rc, modules, err = probe(project, "pre-push", "origin", "unused-url", stdin=stdin)
    assert rc == 0, err
    assert heavy_in(modules) == []
    assert err == ""


def test_pre_push_with_nothing_new(project: Path) -> None:
    """The branch and the ledger are already on the remote: nothing to back-fill or push."""
    head = git(project, "rev-parse", "HEAD").strip()
    stdin = f"refs/heads/main {head} refs/heads/main {head}\n"
    rc, modules, err = probe(project, "pre-push", "origin", "unused-url", stdin=stdin)
    assert rc == 0, err
    assert heavy_in(modules) == []


def test_no_hooks_env_imports_nothing_for_any_stage(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCI_NO_HOOKS", "1")
    (project / "metrics.json").write_text("{broken\n")
    git(project, "add", "metrics.json")
    for stage, args in (
        ("pre-commit", ()),
        ("post-commit", ()),
        ("pre-push", ("origin", "url")),
        ("post-checkout", ("a", "b", "1")),
        ("post-merge", ("0",)),
    ):
        rc, modules, err = probe(project, stage, *args)
        assert rc == 0, (stage, err)
        assert heavy_in(modules) == [], stage
        assert not any(m.startswith("mlci_tui.") and m != "mlci_tui.hooks" for m in modules), stage


def test_positive_control_a_branch_checkout_that_rebuilds_the_cache(project: Path) -> None:
    """When there is work, the probe does see duckdb: the guard above can fail."""
    for derived in Repo.find(project).state_dir.glob("cache*"):  # the query cache is derived: drop it
        derived.unlink()
    head = git(project, "rev-parse", "HEAD").strip()
    rc, modules, err = probe(project, "post-checkout", head, head, "1")
    assert rc == 0, err
    assert "duckdb" in heavy_in(modules)


def _ledger_runs(root: Path) -> int:
    proc = run_mlci(root, "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    return len(json.loads(proc.stdout))


@pytest.mark.parametrize(
    "files",
    [
        {"README.md": "# project\n"},
        {"README.md": "# project\n", "pyproject.toml": "[project]\nname = 'x'\n"},
    ],
    ids=["no-config", "pyproject-without-mlci"],
)
def test_post_commit_with_nothing_to_capture_imports_no_capture_machinery(repo: Path, files: dict[str, str]) -> None:
    """No mlci config and none of the default files at HEAD: one git call, no run."""
    commit(repo, files, "docs")
    rc, modules, err = probe(repo, "post-commit")
    assert rc == 0 and err == "", err
    ours = sorted(m for m in modules if m.startswith("mlci_tui."))
    assert ours == ["mlci_tui.constants", "mlci_tui.errors", "mlci_tui.gitio", "mlci_tui.hooks", "mlci_tui.values"], (
        ours
    )
    assert heavy_in(modules) == []
    assert _ledger_runs(repo) == 0


@pytest.mark.parametrize(
    "files",
    [
        {"metrics.json": metrics_json(acc=0.5)},
        {"dvclive/metrics.json": metrics_json(acc=0.5)},
        {"mlci.yaml": "metrics:\n  files: [out/scores.json]\n", "out/scores.json": metrics_json(acc=0.5)},
        {
            "pyproject.toml": "[tool.mlci.metrics]\nfiles = ['out/scores.json']\n",
            "out/scores.json": metrics_json(acc=0.5),
        },
    ],
    ids=["metrics.json", "dvclive", "mlci.yaml", "pyproject-tool-mlci"],
)
def test_post_commit_captures_whatever_the_pre_check_cannot_rule_out(repo: Path, files: dict[str, str]) -> None:
    """The positive control of the test above: each of these commits holds a run."""
    commit(repo, files, "a run")
    rc, modules, err = probe(repo, "post-commit")
    assert rc == 0, err
    assert "mlci_tui.capture.write" in modules
    assert _ledger_runs(repo) == 1


def test_commit_hooks_parse_an_unchanged_config_once(repo: Path) -> None:
    """The validated config is remembered by its bytes (capture/config_memo.py): the hooks of the
    next commits import no YAML parser nor the plugin sections; an edited mlci.yaml is read
    again, and an invalid one still blocks the commit."""
    config = "metrics:\n  files: [out/scores.json]  # where eval writes\nparams:\n  files: [params.yaml]\n"
    commit(repo, {"mlci.yaml": config, "params.yaml": "lr: 0.1\n", "out/scores.json": metrics_json(acc=0.5)}, "a")
    rc, modules, err = probe(repo, "post-commit")
    assert rc == 0, err
    assert "yaml" in modules  # the first read parses
    commit(repo, {"out/scores.json": metrics_json(acc=0.6)}, "b")
    rc, modules, err = probe(repo, "post-commit")
    assert rc == 0, err
    assert "yaml" not in modules and "mlci_tui.sweep.config_schema" not in modules
    (repo / "params.yaml").write_text("lr: 0.2\n")
    git(repo, "add", "params.yaml")
    rc, modules, err = probe(repo, "pre-commit")
    assert rc == 0, err
    assert "yaml" not in modules and "mlci_tui.capture.readers" in modules
    assert _ledger_runs(repo) == 2
    # an edited config is read again: the metrics now come from another file
    commit(repo, {"mlci.yaml": config.replace("out/scores.json", "eval.json"), "eval.json": metrics_json(f1=1.0)}, "c")
    rc, modules, err = probe(repo, "post-commit")
    assert rc == 0 and "yaml" in modules, err
    runs = json.loads(run_mlci(repo, "runs", "--json").stdout)
    assert sorted(runs[0]["metrics"]) == ["f1"]
    (repo / "mlci.yaml").write_text("metrics: [oops\n")
    git(repo, "add", "mlci.yaml")
    rc, _modules, err = probe(repo, "pre-commit")
    assert rc == 2 and "mlci.yaml" in err


# What the commit hooks must not import, even with a run to capture (issue 19: a commit with a
# run costs <= 100 ms over a bare one, and imports were most of it): `dataclasses` brings
# `inspect`, `ast`, `dis`, `tokenize` (~10 ms); `typing`, `subprocess` (with `threading`,
# `selectors`, `signal`), `hashlib` (OpenSSL), `datetime`, `random`, `pathlib` (with
# `urllib.parse`, `ipaddress`) a few ms each.
HOOK_PATH_BANNED = (
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "tokenize",
    "typing",
    "subprocess",
    "threading",
    "selectors",
    "hashlib",
    "_hashlib",
    "datetime",
    "random",
    "pathlib",
    "ipaddress",
    "mlci_tui.sanitize",
    "mlci_tui.ledger.conflicts",
    "mlci_tui.data.pointer",
    "mlci_tui.data.dvc",
)


def imported_by_installed_hook(repo: Path, stage: str) -> set[str]:
    """The modules the installed hook script's interpreter (`python -S`, as `mlci install`
    writes it) imports, from `-X importtime`'s report on stderr."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run(["sh", f".git/hooks/{stage}"], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "mlci_tui.hooks" in report, proc.stderr[-2000:]  # the fast path ran, not `mlci hook` from PATH
    return set(report)


@pytest.mark.parametrize("init", [False, True], ids=["default-files", "mlci-init-config"])
def test_a_commit_with_a_run_keeps_the_hooks_light(repo: Path, init: bool) -> None:
    """Both commit hooks, doing their work (pre-commit parses the staged params and metrics,
    post-commit captures the run), import none of HOOK_PATH_BANNED."""
    commit(repo, {"params.yaml": "lr: 0.1\nepochs: 3\n", "metrics.json": metrics_json(acc=0.5)}, "first")
    if init:
        assert run_mlci(repo, "init", "--no-hooks").returncode == 0
        commit(repo, {}, "config")
    assert run_mlci(repo, "install").returncode == 0
    commit(repo, {"params.yaml": "lr: 0.2\nepochs: 3\n", "metrics.json": metrics_json(acc=0.6)}, "warm the config memo")
    (repo / "params.yaml").write_text("lr: 0.3\nepochs: 3\n")
    (repo / "metrics.json").write_text(metrics_json(acc=0.7))
    git(repo, "add", "params.yaml", "metrics.json")
    pre = imported_by_installed_hook(repo, "pre-commit")
    assert "mlci_tui.capture.readers" in pre  # it did read the staged files
    subprocess.run(
        ["git", "commit", "-q", "-m", "third"], cwd=repo, env=dict(os.environ, MLCI_NO_HOOKS="1"), check=True
    )
    post = imported_by_installed_hook(repo, "post-commit")
    assert "mlci_tui.capture.write" in post and "mlci_tui.ledger.store" in post  # it did capture
    assert _ledger_runs(repo) == 2  # the commits made through the hooks
    assert sorted(pre.intersection(HOOK_PATH_BANNED)) == []
    assert sorted(post.intersection(HOOK_PATH_BANNED)) == []


def git_commands_of_installed_hook(repo: Path, stage: str, trace: Path) -> list[str]:
    """The git commands the installed hook script starts (GIT_TRACE), by subcommand."""
    env = dict(os.environ, GIT_TRACE=str(trace))
    proc = subprocess.run(["sh", f".git/hooks/{stage}"], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = trace.read_text().splitlines()
    trace.unlink()
    return sorted(
        line.split("trace: built-in: git ", 1)[1].split()[0] for line in lines if "trace: built-in: git " in line
    )


def test_a_commit_with_a_run_starts_few_git_processes(repo: Path, tmp_path: Path) -> None:
    """pre-commit: the staged diff and one `cat-file --batch`; post-commit: the pre-check, one
    `cat-file --batch` for every read (the ledger's lookups too), the patch id, the dataset
    pointers and the append. No `rev-parse`: the hooks take the repository from where git starts them."""
    commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "first")
    assert run_mlci(repo, "install").returncode == 0
    commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "a ledger exists")
    (repo / "metrics.json").write_text(metrics_json(acc=0.7))
    git(repo, "add", "metrics.json")
    pre = git_commands_of_installed_hook(repo, "pre-commit", tmp_path / "pre.trace")
    subprocess.run(
        ["git", "commit", "-q", "-m", "third"], cwd=repo, env=dict(os.environ, MLCI_NO_HOOKS="1"), check=True
    )
    post = git_commands_of_installed_hook(repo, "post-commit", tmp_path / "post.trace")
    assert pre == ["cat-file", "diff"]
    assert post == ["cat-file", "diff-tree", "fast-import", "ls-tree", "ls-tree", "patch-id", "unpack-objects"]
    assert _ledger_runs(repo) == 2
