"""One read core: the TUI, the CLI, the gate and the reports agree on the baseline and on how a number prints.

Real commits captured by `mlci capture`, the real DuckDB cache, the real app under Pilot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import commit, git, metrics_json, run_mlci
from tui_helpers import run_app, screen_text

from mlci_tui import config as config_mod
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query.runs_view import ViewSpec, load_view
from mlci_tui.tui.app import MlciApp

GATE = "gate:\n  rules:\n    acc: {direction: max}\n"


def _capture_three(repo: Path, config: str) -> list[str]:
    """Three captured commits (oldest first); the middle one promoted to `deployed`."""
    shas = [
        commit(repo, {"mlci.yaml": config, "metrics.json": metrics_json(acc=0.5)}, "first"),
        commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "second"),
        commit(repo, {"metrics.json": metrics_json(acc=0.7)}, "third"),
    ]
    assert run_mlci(repo, "capture", *shas).returncode == 0
    assert run_mlci(repo, "promote", shas[1]).returncode == 0
    return shas


def _run_of(repo: Path, sha: str) -> str:
    shown = run_mlci(repo, "show", sha, "--json")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["run_id"])


def _gate_base(repo: Path) -> str | None:
    proc = run_mlci(repo, "gate", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)["base"]


def _tui_baseline(repo: Path) -> str | None:
    seen: dict[str, Any] = {}

    async def scenario(app: MlciApp, pilot: Any) -> None:
        result = app.runs_screen.result
        assert result is not None
        seen["baseline"] = result.baseline.run_id if result.baseline else None
        seen["screen"] = screen_text(app)

    run_app(repo, scenario)
    return seen["baseline"]


def test_the_tui_deltas_and_the_gate_use_the_same_baseline(repo: Path) -> None:
    first, second, _third = _capture_three(repo, GATE + "  baseline: HEAD~2\n")
    pinned = _run_of(repo, first)
    assert _gate_base(repo) == pinned  # gate.baseline wins over the promoted stage
    assert _tui_baseline(repo) == pinned
    view = load_view(Repo.find(repo), ViewSpec(), config_mod.load(repo))
    assert view.baseline is not None and (view.baseline.run_id, view.baseline.how) == (pinned, "gate.baseline")
    # without gate.baseline both fall back to the stage `deployed`
    commit(repo, {"mlci.yaml": GATE}, "no configured baseline")
    deployed = _run_of(repo, second)
    assert _gate_base(repo) == deployed
    assert _tui_baseline(repo) == deployed


def test_one_number_prints_the_same_way_in_runs_show_diff_the_tui_and_the_report(repo: Path) -> None:
    """Five significant digits everywhere; where two compared values would print alike, more."""
    config = "metrics:\n  fields:\n    acc: {direction: max}\n" + GATE
    base = commit(repo, {"mlci.yaml": config, "metrics.json": metrics_json(acc=0.912345678, loss=0.123456789)}, "a")
    head = commit(repo, {"metrics.json": metrics_json(acc=0.912349, loss=0.5)}, "b")
    assert run_mlci(repo, "capture", base, head).returncode == 0
    git(repo, "tag", "base", base)

    listing = run_mlci(repo, "runs").stdout
    shown = run_mlci(repo, "show", "base").stdout
    diff = run_mlci(repo, "diff", "base", "HEAD").stdout
    gate = run_mlci(repo, "gate", "--base", "base").stdout
    report = run_mlci(repo, "report", "--base", "base", "--format", "md").stdout
    # a number alone: five digits, in every output
    for text in (listing, shown, diff, report):
        assert "0.12346" in text and "0.123456789" not in text and "0.123457" not in text, text
    assert "0.91235" in shown and "0.912346" not in shown
    # the baseline and candidate of acc differ in the sixth digit: every comparison shows six
    for text in (listing, diff, gate, report):
        assert "0.912346" in text and "0.912349" in text, text

    seen: dict[str, Any] = {}

    async def scenario(app: MlciApp, pilot: Any) -> None:
        seen["screen"] = screen_text(app)

    run_app(repo, scenario)
    assert "0.912346" in seen["screen"] and "0.912349" in seen["screen"] and "0.12346" in seen["screen"]
