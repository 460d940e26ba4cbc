"""The thin slice: commit through plain hooks, capture, query."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import commit, metrics_json, run_mlci


def test_commit_through_plain_hooks_is_captured_and_queryable(repo: Path) -> None:
    (repo / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (repo / "metrics.json").write_text(metrics_json(acc=0.8))
    assert run_mlci(repo, "init").returncode == 0
    first = commit(repo, {}, "first")
    second = commit(repo, {"params.yaml": "train:\n  lr: 0.01\n", "metrics.json": metrics_json(acc=0.9)}, "second")
    proc = run_mlci(repo, "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)
    assert [r["commit"] for r in runs] == [second, first]
    assert runs[0]["metrics"] == {"acc": 0.9}
    assert runs[0]["params"] == {"train.lr": "0.01"}
