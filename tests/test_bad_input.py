"""Bad params/metrics input through the real `mlci record`, `mlci capture` and the pre-commit hook.

Every case: one clear line naming the file (and the line where there is one), never a
traceback; `record` exits 2 and leaves the ledger alone; the pre-commit hook blocks the
commit with exit 1; `capture` of a commit holding the bad file warns and records the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import git, run_mlci, write

GOOD_PARAMS = "train:\n  lr: 0.1\n"
GOOD_METRICS = '{"acc": 0.5}\n'
_TEMPLATE: list[Path] = []


def _nested_json(depth: int) -> str:
    doc: object = 1
    for _ in range(depth - 1):
        doc = {"a": doc}
    return json.dumps(doc)


def _list_alias_bomb() -> str:
    # the "billion laughs": 9 levels of 9 aliases each, 387 million strings once expanded
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _string_alias_bomb() -> str:
    # small on disk, 200 MB once the aliases are expanded into a record
    return "big: &s " + "x" * 100_000 + "\ncopies: [" + ", ".join(["*s"] * 2000) + "]\n"


@dataclass
class Case:
    files: dict[str, str | bytes]
    bad: str  # the file the error must name
    expect: list[str]  # fragments of the error line
    config: str | None = None
    links: dict[str, str] = field(default_factory=dict)


CASES = {
    "malformed-json": Case({"metrics.json": '{"acc": 0.5,\n "loss": }\n'}, "metrics.json", ["metrics.json:2:", "JSON"]),
    "malformed-yaml": Case({"params.yaml": "train:\n  lr: [0.1,\n"}, "params.yaml", ["params.yaml:3:", "YAML"]),
    "malformed-toml": Case(
        {"metrics.toml": "acc = 0.5\nloss = \n"},
        "metrics.toml",
        ["metrics.toml", "TOML", "line 2"],
        config="metrics:\n  files: [metrics.json, metrics.toml]\n",
    ),
    "ragged-csv": Case(
        {"train.csv": "step,acc\n0,0.5\n1,0.6,9\n"},
        "train.csv",
        ["train.csv:3:", "columns"],
        config="metrics:\n  files: [metrics.json, train.csv]\n",
    ),
    "empty": Case({"metrics.json": ""}, "metrics.json", ["metrics.json", "empty"]),
    "non-utf8": Case({"metrics.json": b'{"acc": "\xff\xfe"}\n'}, "metrics.json", ["metrics.json", "UTF-8"]),
    "over-size": Case(
        {"metrics.json": json.dumps({f"metric_{i}": i / 7 for i in range(100)})},
        "metrics.json",
        ["metrics.json", "limit", "max_file_mb"],
        config="limits:\n  max_file_mb: 0.001\n",
    ),
    "over-depth": Case(
        {"metrics.json": _nested_json(6)},
        "metrics.json",
        ["metrics.json", "deeper than 4"],
        config="limits:\n  max_depth: 4\n",
    ),
    "over-keys": Case(
        {"params.yaml": "".join(f"k{i}: {i}\n" for i in range(30))},
        "params.yaml",
        ["params.yaml", "more than 20 keys"],
        config="limits:\n  max_keys: 20\n",
    ),
    "default-depth-64": Case({"metrics.json": _nested_json(100)}, "metrics.json", ["metrics.json", "deeper than 64"]),
    "yaml-alias-bomb": Case({"params.yaml": _list_alias_bomb()}, "params.yaml", ["params.yaml", "more than 100000"]),
    "yaml-string-alias-bomb": Case({"params.yaml": _string_alias_bomb()}, "params.yaml", ["params.yaml", "expands"]),
    "symlinked-metrics": Case(
        {"elsewhere.json": GOOD_METRICS},
        "metrics.json",
        ["metrics.json", "symlink"],
        links={"metrics.json": "elsewhere.json"},
    ),
}


def _tip(root: Path) -> str:
    return git(root, "rev-parse", "-q", "--verify", "refs/mlci/ledger", check=False).strip()


def _copy_template(dest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo with good params and metrics and one captured commit: a ledger to leave unchanged.

    Built once per session and copied per test (a copy costs milliseconds, a capture does not).
    """
    if not _TEMPLATE:
        root = tmp_path_factory.mktemp("bad-input-template") / "repo"
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        write(root, {"params.yaml": GOOD_PARAMS, "metrics.json": GOOD_METRICS})
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "good")
        proc = run_mlci(root, "capture")
        assert proc.returncode == 0, proc.stderr
        _TEMPLATE.append(root)
    shutil.copytree(_TEMPLATE[0], dest, symlinks=True)
    return dest


@pytest.fixture
def seeded(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_template(tmp_path / "repo", tmp_path_factory)


def _apply(root: Path, case: Case) -> None:
    if case.config is not None:
        write(root, {"mlci.yaml": case.config})
    write(root, case.files)
    for link, target in case.links.items():
        (root / link).unlink(missing_ok=True)
        os.symlink(target, root / link)


def _assert_clear(stderr: str, case: Case) -> str:
    """One line names the bad file, says what is wrong, and there is no traceback."""
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if case.bad in line]
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("mlci: "), stderr
    for fragment in case.expect:
        assert fragment in line, (fragment, stderr)
    assert len(line) < 400, line
    return line


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_in_record_pre_commit_hook_and_capture(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    case = CASES[name]
    # `work`: the bad file in the working tree and staged; `history`: the bad file committed
    work = _copy_template(tmp_path / "work", tmp_path_factory)
    history = _copy_template(tmp_path / "history", tmp_path_factory)
    before = _tip(work)
    for root in (work, history):
        _apply(root, case)
        git(root, "add", "-A")
    git(history, "commit", "-q", "--no-verify", "-m", f"bad {name}")
    head = git(history, "rev-parse", "HEAD").strip()
    # three independent processes: run them side by side to keep the suite fast
    with ThreadPoolExecutor(3) as pool:
        record_job = pool.submit(run_mlci, work, "record", "-m", "bad")
        hook_job = pool.submit(run_mlci, work, "hook", "pre-commit")
        capture_job = pool.submit(run_mlci, history, "capture")
    record, hook, capture = record_job.result(), hook_job.result(), capture_job.result()

    # `mlci record`: exit 2, exactly one line, nothing written
    assert record.returncode == 2, ("record", record.stdout, record.stderr)
    _assert_clear(record.stderr, case)
    assert record.stderr.count("\n") == 1, record.stderr
    assert record.stdout == ""

    # the pre-commit hook on the staged file: the commit is blocked with exit 1
    assert hook.returncode == 1, ("hook", hook.stdout, hook.stderr)
    _assert_clear(hook.stderr, case)
    assert "commit blocked" in hook.stderr
    assert _tip(work) == before

    # `mlci capture` of a commit holding it: a warning, and the good file still makes a run
    assert capture.returncode == 0, ("capture", capture.stdout, capture.stderr)
    line = _assert_clear(capture.stderr, case)
    assert line.startswith(f"mlci: warning: {head[:12]}: "), line
    assert f"captured {head[:12]}" in capture.stdout, capture.stdout
    [run] = [r for r in _ledger_records(history) if r.get("commit") == head]
    assert any(case.bad in w for w in run["warnings"]), run["warnings"]
    assert run["params"] == {"params.yaml": {"train.lr": 0.1}} or run["metrics"] == {"metrics.json": {"acc": 0.5}}
    assert case.bad not in run["params"] and case.bad not in run["metrics"]


def test_capture_of_a_commit_whose_only_file_is_bad_records_nothing(repo: Path) -> None:
    write(repo, {"metrics.json": '{"acc": '})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "broken")
    proc = run_mlci(repo, "capture")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "metrics.json:1:" in proc.stderr and "warning" in proc.stderr
    assert _tip(repo) == ""


def test_a_real_git_commit_is_blocked_by_the_installed_hook(repo: Path) -> None:
    proc = run_mlci(repo, "install")
    assert proc.returncode == 0, proc.stderr
    write(repo, {"metrics.json": '{"acc": 0.5,\n\n  "loss": ]\n'})
    git(repo, "add", "-A")
    commit = subprocess.run(["git", "commit", "-q", "-m", "bad"], cwd=repo, capture_output=True, text=True)
    assert commit.returncode != 0
    assert "metrics.json:3:" in commit.stderr, commit.stderr
    assert "Traceback" not in commit.stderr
    assert git(repo, "rev-parse", "-q", "--verify", "HEAD", check=False).strip() == ""
    assert _tip(repo) == ""


def test_a_symlinked_folder_is_refused_by_record(seeded: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, {"metrics.json": GOOD_METRICS})
    os.symlink(outside, seeded / "dvclive")
    before = _tip(seeded)
    proc = run_mlci(seeded, "record")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "dvclive" in proc.stderr, proc.stderr
    assert _tip(seeded) == before


def _ledger_records(root: Path) -> list[dict[str, object]]:
    paths = [p for p in git(root, "ls-tree", "-r", "--name-only", "refs/mlci/ledger").split() if p.endswith(".json")]
    return [json.loads(git(root, "cat-file", "-p", f"refs/mlci/ledger:{p}")) for p in paths]
