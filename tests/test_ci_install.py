"""`mlci ci init`: the install pin, the project's own CI files left alone, the DVC train step."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml
from conftest import commit, run_mlci

from mlci_tui.ci.install import from_direct_url, is_requirement


def test_pins_from_pip_records(tmp_path: Path) -> None:
    """PEP 610 direct_url.json: a VCS URL at its commit, an archive URL, the index version; local: a warning."""
    sha = "3f" * 20
    vcs = {"url": "https://github.com/acme/mlci.git", "vcs_info": {"vcs": "git", "commit_id": sha}}
    pin = from_direct_url(vcs, "0.3.0", "/venv/lib/python3.11/site-packages", tmp_path)
    assert pin.line == f"python -m pip install 'mlci-tui @ git+https://github.com/acme/mlci.git@{sha}'"
    assert pin.warning is None and sha[:12] in pin.why
    archive = {"url": "https://example.com/mlci_tui-0.3.0-py3-none-any.whl", "archive_info": {}}
    assert "mlci-tui @ https://example.com/" in from_direct_url(archive, "0.3.0", None, tmp_path).line
    index = from_direct_url(None, "0.3.0", "/venv/lib/python3.11/site-packages", tmp_path)
    assert index.line == "python -m pip install mlci-tui==0.3.0" and index.warning is None
    for local in ({"url": "file:///home/ada/mlci", "dir_info": {"editable": True}}, None):
        pin = from_direct_url(local, "0.3.0", "/home/ada/mlci", tmp_path)
        assert pin.line == "python -m pip install mlci-tui==0.3.0" and "no CI runner can reach" in str(pin.warning)
    (tmp_path / "requirements.txt").write_text("numpy\n")
    assert from_direct_url(None, "1", "/x/site-packages", tmp_path).line.endswith(" -r requirements.txt")


def test_ci_install_is_a_requirement_or_a_shell_line() -> None:
    for req in (
        "mlci-tui==1.2.0",
        "mlci-tui[s3]>=1.2,<2",
        "git+https://github.com/a/b@v1",
        "./dist/m-1-py3-none-any.whl",
    ):
        assert is_requirement(req), req
    for line in ("pip install -e .[ml]", "python -m pip install -r requirements.txt", "uv sync && uv pip install ."):
        assert not is_requirement(line), line


def test_init_beside_a_gitlab_ci_of_the_project_leaves_it_byte_identical(repo: Path) -> None:
    own = "# our pipeline\nstages: [test]\n\nunit:\n  script:  [ 'pytest' ]   # keep this spacing\n"
    commit(repo, {".gitlab-ci.yml": own}, "own CI")
    res = run_mlci(repo, "ci", "init", "gitlab")
    assert res.returncode == 0, res.stderr
    assert (repo / ".gitlab-ci.yml").read_text() == own
    assert "include:\n  - local: .gitlab/mlci.yml" in res.stdout
    included = yaml.safe_load((repo / ".gitlab/mlci.yml").read_text())
    assert "workflow" not in included and "default" not in included and "variables" not in included
    assert included["mlci-merge-request"]["extends"] == ".mlci"
    # --include adds the line, keeping the file's comments; a second run finds it there
    res = run_mlci(repo, "ci", "init", "gitlab", "--include", "--force")
    assert res.returncode == 0, res.stderr
    text = (repo / ".gitlab-ci.yml").read_text()
    assert "# our pipeline" in text and "# keep this spacing" in text
    doc = yaml.safe_load(text)
    assert doc["include"] == [{"local": ".gitlab/mlci.yml"}] and doc["unit"]["script"] == ["pytest"]
    res = run_mlci(repo, "ci", "init", "gitlab", "--include", "--force")
    assert res.returncode == 0 and (repo / ".gitlab-ci.yml").read_text() == text and "already includes" in res.stdout


def test_github_workflow_names_never_collide(repo: Path) -> None:
    own = "name: mlci\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n"
    commit(repo, {".github/workflows/mlci.yml": own}, "own workflow")
    res = run_mlci(repo, "ci", "init", "github")
    assert res.returncode == 0, res.stderr
    assert (repo / ".github/workflows/mlci.yml").read_text() == own
    doc = yaml.safe_load((repo / ".github/workflows/mlci-2.yml").read_text())
    assert doc["name"] == "mlci 2" and "mlci-2.yml" in res.stdout
    # the workflow we wrote is ours to overwrite (with --force), under the same name
    assert run_mlci(repo, "ci", "init", "github").returncode == 2
    assert run_mlci(repo, "ci", "init", "github", "--force").returncode == 0
    assert sorted(p.name for p in (repo / ".github/workflows").iterdir()) == ["mlci-2.yml", "mlci.yml"]
    # a sweep workflow file of the project's own is refused, naming the key to change
    commit(repo, {".github/workflows/mlci-sweep.yml": own}, "another")
    res = run_mlci(repo, "ci", "init", "github", "--sweeps", "--force")
    assert res.returncode == 2 and "ci.sweep_workflow" in res.stderr and "Traceback" not in res.stderr


def test_dvc_project_train_step_pulls_reproduces_and_records(repo: Path, tmp_path: Path) -> None:
    """A dvc.yaml at the root: `dvc pull`, `dvc repro`, then `mlci record --commit HEAD` of the metrics
    DVC left in the working tree (a `dvc` on PATH that records its calls and writes the metrics)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dvc = bin_dir / "dvc"
    dvc.write_text(
        '#!/bin/sh\necho "$@" >> dvc-calls.txt\n[ "$1" = repro ] && echo \'{"acc": 0.91}\' > metrics.json\nexit 0\n'
    )
    dvc.chmod(dvc.stat().st_mode | stat.S_IEXEC)
    commit(repo, {"dvc.yaml": "stages: {}\n", "params.yaml": "lr: 0.1\n", ".gitignore": "metrics.json\n"}, "dvc")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GITHUB_TOKEN": "ghp_" + "x" * 36}
    res = run_mlci(repo, "ci", "run", "train", "--event", "pull_request", "--base", "HEAD", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (repo / "dvc-calls.txt").read_text().split("\n")[:2] == ["pull", "repro"]
    shown = run_mlci(repo, "show", "HEAD", "--json")
    assert shown.returncode == 0 and "0.91" in shown.stdout
