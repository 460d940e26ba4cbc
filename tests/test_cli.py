"""The command line: help everywhere, record, capture, stale runs, sorting and resolution."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import commit, git, metrics_json, run_mlci

from mlci_tui.cli.main import build_parser


def _subcommands() -> list[str]:
    """Every command and `ledger` action the parser knows: new ones are checked without a list."""
    parser = build_parser()
    top = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    names = []
    for name, sub in top.items():
        if sub._subparsers is None:
            names.append(name)
        else:
            names += [f"{name} {action}" for action in sub._subparsers._group_actions[0].choices]
    return names


def test_every_subcommand_is_documented_with_an_example(tmp_path: Path) -> None:
    commands = _subcommands()
    assert {"demo", "init", "runs", "show", "sql", "gate", "ledger push", "ledger redact"} <= set(commands)
    for command in commands:
        proc = run_mlci(tmp_path, *command.split(), "--help")
        assert proc.returncode == 0, command
        assert "example" in proc.stdout, command
    top = run_mlci(tmp_path, "--help")
    assert top.returncode == 0 and "examples:" in top.stdout
    version = run_mlci(tmp_path, "--version")
    assert version.stdout.startswith("mlci ")


def test_the_registry_names_the_module_of_every_command() -> None:
    """`mlci COMMAND` builds only its module's parser: a command missing from COMMANDS would
    cost every module's import, and one in the wrong module would not parse at all."""
    from mlci_tui.cli.main import COMMANDS, command_modules

    declared = {}
    for module in command_modules():
        parser = argparse.ArgumentParser()
        module.add_commands(parser.add_subparsers())
        declared.update(dict.fromkeys(parser._subparsers._group_actions[0].choices, module.__name__.rsplit(".", 1)[1]))  # type: ignore[union-attr]
    assert declared == COMMANDS
    assert list(declared) == list(COMMANDS)  # the order of `mlci --help`
    for command, module in COMMANDS.items():
        only = build_parser(command)._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        assert command in only and {COMMANDS[c] for c in only} == {module}, command


def _project(repo: Path, **config: str) -> None:
    lines = ["params:\n  files: [params.yaml]\n", "metrics:\n  files: [metrics.json]\n"]
    if "deps" in config:
        lines.append(f"train:\n  deps: [{config['deps']}]\n")
    (repo / "mlci.yaml").write_text("".join(lines))


def test_capture_range_is_idempotent_and_skips_commits_without_files(repo: Path) -> None:
    _project(repo)
    base = commit(repo, {"README.md": "hi\n"}, "no params yet")
    a = commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "a")
    b = commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "b")
    first = run_mlci(repo, "capture", "--range", f"{base}..HEAD")
    assert first.returncode == 0, first.stderr
    again = run_mlci(repo, "capture", "--range", f"{base}..HEAD", base)
    assert "2 commit(s) already in the ledger" in again.stdout
    assert "1 commit(s) hold no params or metrics files" in again.stdout
    runs = json.loads(run_mlci(repo, "runs", "--json").stdout)
    assert sorted(r["commit"] for r in runs) == sorted([a, b])
    # the ledger commit count did not grow on the second capture
    assert len(git(repo, "rev-list", "refs/mlci/ledger").split()) == 1


def test_a_commit_changing_deps_but_not_metrics_is_stale(repo: Path) -> None:
    _project(repo, deps="train.py")
    commit(repo, {"train.py": "print(1)\n", "params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "a")
    commit(repo, {"train.py": "print(2)\n"}, "changed the code, kept old metrics")
    commit(repo, {"train.py": "print(3)\n", "metrics.json": metrics_json(acc=0.7)}, "retrained")
    assert run_mlci(repo, "capture", "--range", "HEAD~2..HEAD", "HEAD~2").returncode == 0
    runs = json.loads(run_mlci(repo, "runs", "--json", "--sort", "time").stdout)
    assert [r["stale"] for r in runs] == [False, True, False]
    table = run_mlci(repo, "runs", "--wide").stdout
    assert "commit (stale)" in table


def test_record_workspace_and_ci_runs(repo: Path) -> None:
    _project(repo)
    head = commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "a")
    (repo / "metrics.json").write_text(metrics_json(acc=0.9))
    ws = run_mlci(repo, "record", "-m", "trying things", "--name", "try-1")
    assert ws.returncode == 0, ws.stderr
    ci = run_mlci(repo, "record", "--commit", "HEAD")
    assert ci.returncode == 0, ci.stderr
    runs = {r["kind"]: r for r in json.loads(run_mlci(repo, "runs", "--json").stdout)}
    assert runs["workspace"]["name"] == "try-1" and runs["workspace"]["metrics"] == {"acc": 0.9}
    assert runs["workspace"]["message"] == "trying things"
    assert runs["ci"]["commit"] == head and runs["ci"]["metrics"] == {"acc": 0.9}
    bad = run_mlci(repo, "record", "--commit", "nope")
    assert bad.returncode == 2 and "not a commit" in bad.stderr


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "md"])
def test_sort_descending_by_metric_in_every_format(repo: Path, fmt: str) -> None:
    _project(repo)
    for value in (0.3, 0.9, 0.6):
        commit(repo, {"params.yaml": f"lr: {value}\n", "metrics.json": metrics_json(acc=value)}, f"acc {value}")
    run_mlci(repo, "capture", "--range", "HEAD~2..HEAD", "HEAD~2")
    proc = run_mlci(repo, "runs", "--sort", "-acc", "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    if fmt == "json":  # (its times have fractional seconds, which may hold "0.9")
        assert [r["metrics"]["acc"] for r in json.loads(text)] == [0.9, 0.6, 0.3]
    else:
        assert text.index("0.9") < text.index("0.6") < text.index("0.3")


def test_tag_and_note_resolve_runs_and_show_them(repo: Path) -> None:
    _project(repo)
    commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "a")
    run_mlci(repo, "capture")
    assert run_mlci(repo, "tag", "HEAD", "baseline").returncode == 0
    assert run_mlci(repo, "note", "HEAD", "first try").returncode == 0
    shown = json.loads(run_mlci(repo, "show", "HEAD", "--json").stdout)
    assert shown["tags"] == ["baseline"]
    assert [n["text"] for n in shown["notes"]] == ["first try"]
    assert run_mlci(repo, "tag", "HEAD", "baseline", "--remove").returncode == 0
    assert json.loads(run_mlci(repo, "show", "HEAD", "--json").stdout)["tags"] == []
    bad = run_mlci(repo, "tag", "HEAD", "has space")
    assert bad.returncode == 2 and "tag" in bad.stderr


def test_nan_never_sorts_as_the_best_run(repo: Path) -> None:
    _project(repo)
    for value in (0.3, float("nan"), 0.6):
        commit(repo, {"params.yaml": f"lr: {value!r}\n", "metrics.json": metrics_json(acc=value)}, f"acc {value}")
    run_mlci(repo, "capture", "--range", "HEAD~2..HEAD", "HEAD~2")
    runs = json.loads(run_mlci(repo, "runs", "--sort", "-acc", "--json").stdout)
    assert [r["metrics"]["acc"] for r in runs] == [0.6, 0.3, "NaN"]


def test_init_respects_tool_mlci_in_pyproject(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.mlci.params]\nfiles = ["conf/params.toml"]\n')
    proc = run_mlci(repo, "init", "--no-hooks")
    assert proc.returncode == 0, proc.stderr
    assert not (repo / "mlci.yaml").exists()
    assert "[tool.mlci]" in proc.stdout


def test_a_shallow_boundary_commit_gets_no_whole_tree_patch_id(repo: Path, upstream: Path, tmp_path: Path) -> None:
    _project(repo)
    commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "a")
    commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "b")
    git(repo, "push", "-q", str(upstream), "main")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{upstream}", str(shallow))
    assert run_mlci(shallow, "capture").returncode == 0
    assert run_mlci(repo, "capture").returncode == 0
    deep = json.loads(run_mlci(repo, "show", "HEAD", "--json").stdout)
    cut = json.loads(run_mlci(shallow, "show", "HEAD", "--json").stdout)
    assert deep["patch_id"] and cut["patch_id"] is None
    assert deep["run_id"] == cut["run_id"]


def test_sorting_by_a_name_from_two_files_asks_for_file_colon_name(repo: Path) -> None:
    (repo / "mlci.yaml").write_text("metrics:\n  files: [train/metrics.json, eval/metrics.json]\n")
    commit(repo, {"train/metrics.json": metrics_json(acc=0.9), "eval/metrics.json": metrics_json(acc=0.7)}, "a")
    run_mlci(repo, "capture")
    bad = run_mlci(repo, "runs", "--sort", "acc")
    assert bad.returncode == 2 and "eval/metrics.json:acc" in bad.stderr
    ok = run_mlci(repo, "runs", "--sort", "-eval/metrics.json:acc", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)[0]["metrics"] == {"train/metrics.json:acc": 0.9, "eval/metrics.json:acc": 0.7}


def test_the_full_listing_is_memoised_per_ledger_tip_and_identical(repo: Path) -> None:
    _project(repo)
    commit(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)}, "a")
    run_mlci(repo, "capture")
    first = run_mlci(repo, "runs", "--json").stdout
    memo = repo / ".git" / "mlci" / "runs-listing.json"
    assert memo.read_text().split("\n", 1)[1] == first
    assert run_mlci(repo, "runs", "--json").stdout == first  # served from the memo
    # a new run moves the tip: the memo is not used, and is rewritten
    commit(repo, {"metrics.json": metrics_json(acc=0.7)}, "b")
    run_mlci(repo, "capture")
    second = json.loads(run_mlci(repo, "runs", "--json").stdout)
    assert [r["metrics"]["acc"] for r in second] == [0.7, 0.5]
    # a memo whose key does not match (another mlci version, a hand edit) is ignored
    memo.write_text("mlci-listing something-else\n[]\n")
    assert len(json.loads(run_mlci(repo, "runs", "--json").stdout)) == 2
    # filtered or sorted listings are never memoised
    assert len(json.loads(run_mlci(repo, "runs", "--json", "--where", "metrics['acc'] > 0.6").stdout)) == 1
    # the memo is derived from the cache: deleting the cache means a real query again
    (repo / ".git" / "mlci" / "cache.duckdb").unlink()
    memo.write_text(memo.read_text().split("\n", 1)[0] + "\n[]\n")  # right key, wrong body
    assert len(json.loads(run_mlci(repo, "runs", "--json").stdout)) == 2
