"""Bad config: every mistake names the file, the key path and what was expected; exit code 2.

The messages are checked in-process (fast, many cases); the command line is checked for the
exit code, a single line, no traceback and an untouched ledger on a representative set.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import git, run_mlci, write

from mlci_tui import config as config_mod
from mlci_tui.errors import ConfigError

YAML_CASES: dict[str, tuple[str | bytes, str]] = {
    # name: (mlci.yaml content, regex the one-line message must match)
    "unknown-section": ("bogus: 1\n", r"^mlci\.yaml: bogus: unknown key \(known here: .*metrics.*\)$"),
    "unknown-nested-key": (
        "metrics:\n  filez: [metrics.json]\n",
        r"^mlci\.yaml: metrics\.filez: unknown key \(known here: fields, files\)$",
    ),
    "unknown-key-deep": (
        "metrics:\n  fields:\n    acc:\n      dir: max\n",
        r"^mlci\.yaml: metrics\.fields\.acc\.dir: unknown key \(known here: direction\)$",
    ),
    "wrong-type-integer": (
        "limits:\n  max_depth: deep\n",
        r"^mlci\.yaml: limits\.max_depth: expected an integer, got string 'deep'$",
    ),
    "wrong-type-float-for-integer": (
        "limits:\n  max_keys: 1.5\n",
        r"^mlci\.yaml: limits\.max_keys: expected an integer, got number 1\.5$",
    ),
    "wrong-type-bool": (
        "ledger:\n  auto_pull: sometimes\n",
        r"^mlci\.yaml: ledger\.auto_pull: expected true or false, got string 'sometimes'$",
    ),
    "wrong-type-string": (
        "ledger:\n  remote: 42\n",
        r"^mlci\.yaml: ledger\.remote: expected a string, got integer 42$",
    ),
    "wrong-type-list-item": (
        "params:\n  files: [params.yaml, {a: 1}]\n",
        r"^mlci\.yaml: params\.files\[1\]: expected a string, got mapping",
    ),
    "section-not-a-mapping": ("metrics: 3\n", r"^mlci\.yaml: metrics: expected a mapping, got integer 3$"),
    "fields-not-a-mapping": (
        "metrics:\n  fields: [acc]\n",
        r"^mlci\.yaml: metrics\.fields: expected a mapping, got list",
    ),
    "top-level-list": (
        "- params\n- metrics\n",
        r"^mlci\.yaml: expected a mapping of sections at the top level, got list$",
    ),
    "top-level-scalar": ("just text\n", r"^mlci\.yaml: expected a mapping of sections at the top level, got string$"),
    "bad-enum": (
        "metrics:\n  fields:\n    acc:\n      direction: up\n",
        r"^mlci\.yaml: metrics\.fields\.acc\.direction: expected one of max, min, got string 'up'$",
    ),
    "enum-wrong-type": (
        "metrics:\n  fields:\n    acc:\n      direction: 1\n",
        r"^mlci\.yaml: metrics\.fields\.acc\.direction: expected one of max, min, got integer 1$",
    ),
    "below-minimum": ("limits:\n  max_keys: 0\n", r"^mlci\.yaml: limits\.max_keys: must be at least 1, got 0$"),
    "anchor": ("params: &p\n  files: [params.yaml]\n", r"^mlci\.yaml:1: YAML anchors are not allowed in mlci config$"),
    "alias": ("metrics:\n  files: *missing\n", r"^mlci\.yaml:2: YAML aliases are not allowed in mlci config$"),
    "alias-bomb": (
        'a: &a ["x", "x", "x"]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n',
        r"^mlci\.yaml:1: YAML anchors are not allowed",
    ),
    "merge-key": (
        "base: &base {remote: origin}\nledger:\n  <<: *base\n",
        r"^mlci\.yaml:1: YAML anchors are not allowed",
    ),
    "invalid-yaml": ("metrics: [\n", r"^mlci\.yaml:2: invalid YAML: .+$"),
    "invalid-yaml-indent": ("metrics:\n  files: [a]\n fields: {}\n", r"^mlci\.yaml:3: invalid YAML: .+$"),
    "duplicate-tab": ("metrics:\n\tfiles: [a]\n", r"^mlci\.yaml:2: invalid YAML: .+$"),
    "non-utf8": (b"metrics:\n  files: [m\xe9trics.json]\n", r"^mlci\.yaml: not UTF-8 text \(byte 0xe9 at offset 20\)$"),
}

PYPROJECT_CASES: dict[str, tuple[str | bytes, str]] = {
    "unknown-key": (
        "[tool.mlci]\nbogus = 1\n",
        r"^pyproject\.toml \[tool\.mlci\]: bogus: unknown key \(known here: .*\)$",
    ),
    "wrong-type": (
        '[tool.mlci.limits]\nmax_depth = "deep"\n',
        r"^pyproject\.toml \[tool\.mlci\]: limits\.max_depth: expected an integer, got string 'deep'$",
    ),
    "bad-enum": (
        '[tool.mlci.metrics.fields.acc]\ndirection = "up"\n',
        r"^pyproject\.toml \[tool\.mlci\]: metrics\.fields\.acc\.direction: expected one of max, min",
    ),
    "not-a-table": ("[tool]\nmlci = 3\n", r"^pyproject\.toml \[tool\.mlci\]: expected a mapping of sections"),
    "dotted-keys": (
        '[tool]\nmlci.limits.max_keys = "many"\n',
        r"^pyproject\.toml \[tool\.mlci\]: limits\.max_keys: expected an integer",
    ),
    "invalid-toml": ("[tool.mlci\nx = 1\n", r"^pyproject\.toml: invalid TOML: .*line 1"),
    "non-utf8": (b"[tool.mlci]\n# \xff\n", r"^pyproject\.toml: not UTF-8 text \(byte 0xff at offset 14\)$"),
}


def _load(root: Path, name: str, content: str | bytes) -> config_mod.Config:
    write(root, {name: content})
    return config_mod.load(root)


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_bad_mlci_yaml_names_file_key_and_expected_type(tmp_path: Path, case: str) -> None:
    content, pattern = YAML_CASES[case]
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "mlci.yaml", content)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("case", list(PYPROJECT_CASES))
def test_bad_tool_mlci_in_pyproject_is_checked_the_same_way(tmp_path: Path, case: str) -> None:
    content, pattern = PYPROJECT_CASES[case]
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "pyproject.toml", content)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


def test_staged_config_is_checked_the_same_way(repo: Path) -> None:
    # the hooks read mlci.yaml from the index: the same schema, the same messages
    write(repo, {"mlci.yaml": "limits:\n  max_depth: deep\n"})
    git(repo, "add", "mlci.yaml")
    with pytest.raises(ConfigError, match=r"^mlci\.yaml: limits\.max_depth: expected an integer"):
        config_mod.load_from_git(_repo(repo), ":")
    write(repo, {"mlci.yaml": "params: &p\n  files: [a]\n"})
    git(repo, "add", "mlci.yaml")
    with pytest.raises(ConfigError, match=r"^mlci\.yaml:1: YAML anchors"):
        config_mod.load_from_git(_repo(repo), ":")


def _repo(root: Path):  # type: ignore[no-untyped-def]
    from mlci_tui.gitio import Repo

    return Repo.find(root)


def test_good_config_and_defaults(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        "mlci.yaml",
        "# comments are fine\nparams:\n  files: p.yaml\nmetrics:\n  files: [m.json, e/m.json]\n"
        "  fields:\n    acc: {direction: max}\nlimits:\n  max_file_mb: 0.5\n",
    )
    assert cfg.source == "mlci.yaml"
    assert cfg.params_files == ["p.yaml"]  # a single item stands for a one-item list
    assert cfg.metrics_files == ["m.json", "e/m.json"]
    assert cfg.direction("acc") == "max" and cfg.direction("loss") is None
    assert cfg.limits == {"max_file_mb": 0.5, "max_depth": 64, "max_keys": 100_000}
    assert cfg.remote == "origin"
    empty = _load(tmp_path / "empty", "mlci.yaml", "")
    assert empty.params_files == ["params.yaml"]
    assert empty.metrics_files == ["metrics.json", "dvclive/metrics.json"]


def test_tool_mlci_in_pyproject_is_read_when_there_is_no_mlci_yaml(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "pyproject.toml", '[project]\nname = "x"\n[tool.mlci.metrics]\nfiles = ["out/m.json"]\n')
    assert cfg.source == "pyproject.toml"
    assert cfg.metrics_files == ["out/m.json"]
    # `mlci = {...}` under `[tool]` is the same table
    inline = _load(tmp_path / "inline", "pyproject.toml", '[tool]\nmlci = { metrics = { files = ["i.json"] } }\n')
    assert inline.source == "pyproject.toml" and inline.metrics_files == ["i.json"]
    # a pyproject that only mentions mlci, or has no [tool] table, gives the defaults
    for other in ('[project]\ndependencies = ["mlci-tui"]\n', 'tool = "mlci"\n', "[tool.other]\nmlci = 1\n"):
        cfg = _load(tmp_path / "other", "pyproject.toml", other)
        assert cfg.source is None and cfg.metrics_files == ["metrics.json", "dvclive/metrics.json"]
    # mlci.yaml wins over pyproject.toml
    write(tmp_path, {"mlci.yaml": "metrics:\n  files: [m.json]\n"})
    assert config_mod.load(tmp_path).metrics_files == ["m.json"]


# ---- through the command line ---------------------------------------------------------------

CLI_CASES = ["unknown-section", "wrong-type-integer", "bad-enum", "alias-bomb", "invalid-yaml", "non-utf8"]


def _tip(root: Path) -> str:
    return git(root, "rev-parse", "-q", "--verify", "refs/mlci/ledger", check=False).strip()


def _one_clear_line(proc: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mlci: "), proc.stderr
    assert re.search(pattern.lstrip("^"), lines[0]), (pattern, lines[0])


@pytest.fixture
def captured(repo: Path) -> Path:
    """A repo whose ledger holds one run, so that "unchanged" means something."""
    write(repo, {"metrics.json": '{"acc": 0.5}\n'})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    proc = run_mlci(repo, "capture")
    assert proc.returncode == 0, proc.stderr
    return repo


def test_bad_config_through_record_and_capture_exits_2_and_leaves_the_ledger(captured: Path, tmp_path: Path) -> None:
    before = _tip(captured)
    # one copy of the repo per case, run side by side: each a real `mlci` process
    roots = {}
    for case in CLI_CASES:
        root = tmp_path / f"case-{case}"
        shutil.copytree(captured, root, symlinks=True)
        write(root, {"mlci.yaml": YAML_CASES[case][0], "metrics.json": '{"acc": 0.7}\n'})
        roots[case] = root
    jobs = [(case, ("record", "-m", "x")) for case in CLI_CASES] + [(case, ("capture",)) for case in CLI_CASES[:2]]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: run_mlci(roots[job[0]], *job[1]), jobs))
    for (case, cmd), proc in zip(jobs, results):
        _one_clear_line(proc, YAML_CASES[case][1])
        assert _tip(roots[case]) == before, (case, cmd)
    assert _tip(captured) == before


def test_bad_pyproject_config_through_record_exits_2(repo: Path) -> None:
    write(repo, {"pyproject.toml": PYPROJECT_CASES["wrong-type"][0], "metrics.json": '{"acc": 1}\n'})
    proc = run_mlci(repo, "record")
    _one_clear_line(proc, PYPROJECT_CASES["wrong-type"][1])
    assert _tip(repo) == ""


def test_staged_bad_config_blocks_the_pre_commit_hook(repo: Path) -> None:
    write(repo, {"mlci.yaml": "metrics:\n  filez: [m.json]\n", "metrics.json": '{"acc": 1}\n'})
    git(repo, "add", "-A")
    proc = run_mlci(repo, "hook", "pre-commit")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "mlci: mlci.yaml: metrics.filez: unknown key (known here: fields, files)"
