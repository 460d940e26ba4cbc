"""The sweeps screen driven by Textual's Pilot over real sweeps: progress, trials, logs, start,
cancel, retry, the create form; and an SVG snapshot over a ledger with fixed ids and times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import git, run_mlci
from sweep_helpers import ok, sweep_repo
from textual.widgets import DataTable
from tui_helpers import assert_snapshot, run_app, screen_text, settle, wait_until

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sweep import events
from mlci_tui.tui.app import MlciApp
from mlci_tui.tui.screens.sweeps import SweepFormScreen, SweepsScreen, parse_params

SWEEPS = "  lr:\n    params:\n      lr: [0.1, 0.2, 0.3]\n    metric: acc\n"


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    return sweep_repo(root, SWEEPS)


async def _open(app: MlciApp, pilot: Any) -> SweepsScreen:
    await pilot.press("w")
    screen = app.screen
    assert isinstance(screen, SweepsScreen)
    await settle(pilot)
    return screen


def test_start_a_sweep_and_watch_its_trials_finish(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    ok(run_mlci(root, "sweep", "create", "lr"))

    async def scenario(app: MlciApp, pilot: Any) -> None:
        screen = await _open(app, pilot)
        assert "░░░░ 0/3" in screen_text(app)
        await pilot.press("S")  # start: the real `mlci sweep start`, in the background
        await wait_until(pilot, lambda: "████████████ 3/3" in screen_text(app), timeout=60, what="3/3 done")
        await settle(pilot)
        text = screen_text(app)
        assert text.count(" done ") >= 3 and "0.61" in text and "best acc so far" in text
        await pilot.press("tab", "down", "l")
        await pilot.pause()
        assert "log of lr-1 (done)" in screen_text(app) and "== mlci trial lr-1 attempt 1" in screen_text(app)
        for proc in screen.started:
            proc.wait(timeout=30)

    run_app(root, scenario)


def test_cancel_and_retry_from_the_screen(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    ok(run_mlci(root, "sweep", "create", "lr"))

    async def scenario(app: MlciApp, pilot: Any) -> None:
        await _open(app, pilot)
        await pilot.press("x")
        await wait_until(pilot, lambda: screen_text(app).count("cancelled") >= 3, what="trials cancelled")
        await pilot.press("R")
        await wait_until(pilot, lambda: screen_text(app).count("queued  ") >= 3, what="trials queued again")
        assert "retry after cancelled" in screen_text(app)

    run_app(root, scenario)


def test_the_form_creates_and_queues_a_sweep(tmp_path: Path) -> None:
    root = _repo(tmp_path)

    async def scenario(app: MlciApp, pilot: Any) -> None:
        await _open(app, pilot)
        assert "no sweeps yet" in screen_text(app)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, SweepFormScreen)
        await pilot.press(*"grid-1")
        form.query_one("#form-params").text = "lr: range 0.1 0.4 0.1\nepochs: values 1, 2\n"  # type: ignore[attr-defined]
        form.query_one("#form-metric").value = "acc"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "grid-1" in screen_text(app) and "0/6" in screen_text(app), what="queued")
        text = screen_text(app)
        assert "lr-0" not in text and "grid-1-5" in text and "0.3" in text

    run_app(root, scenario)
    status = ok(run_mlci(root, "sweep", "status", "grid-1"))
    assert status.stdout.count("  queued  ") == 6


def test_parse_params_of_the_form() -> None:
    assert parse_params("lr: range 0.1 0.4 0.1\nl2: loguniform 1e-5, 1e-1\nopt: values adam sgd\n") == {
        "lr": {"range": [0.1, 0.4, 0.1]},
        "l2": {"loguniform": [1e-5, 0.1]},
        "opt": {"values": ["adam", "sgd"]},
    }


def _fixed_ledger(root: Path) -> None:
    """A sweep with trials in every state, fixed ids and times: a stable screenshot."""
    sid = "s" * 26
    spec = {"method": "grid", "metric": "acc", "direction": "max", "params": {"lr": {}, "epochs": {}}, "retries": 1}
    recs = [
        records.envelope(
            "sweep",
            {"name": "lr-search", "spec": spec, "base": "1" * 40, "base_kind": "commit", "seed": 7},
            event_id=sid,
            time="2025-03-05T09:00:00.000000Z",
        )
    ]
    plan = [
        (0.1, 1, ["started", "done"], 0.62),
        (0.1, 2, ["started", "done"], 0.71),
        (0.2, 1, ["started", "requeued", "started", "done"], 0.83),
        (0.2, 2, ["started", "failed"], None),
        (0.3, 1, ["started"], None),
        (0.3, 2, [], None),
    ]
    for n, (lr, epochs, states, value) in enumerate(plan):
        tid = events.trial_id(sid, n)
        seq = [("queued", {"number": n, "params": {"lr": lr, "epochs": epochs}})]
        for state in states:
            extra: dict[str, Any] = {}
            if state == "done":
                extra = {"run_id": events.trial_run_id(tid), "value": value}
            elif state == "failed":
                extra = {"exit_code": 1, "reason": "exit code 1", "stderr_tail": "Traceback: boom\nValueError: lr\n"}
            elif state == "requeued":
                extra = {"reason": "lost: worker vm:4242 is gone"}
            seq.append((state, extra))
        for k, (state, extra) in enumerate(seq):
            ev = events.trial_event(sid, tid, state, **extra)
            ev["id"] = ev["id"] if state in ("queued", "done") else records.derived_id("fixed", tid, str(k))
            ev["time"] = f"2025-03-05T09:{n + 1:02d}:{k:02d}.000000Z"
            recs.append(ev)
    LedgerStore(Repo.find(root)).append(recs)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_of_the_sweeps_screen(tmp_path: Path, size: tuple[int, int]) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    _fixed_ledger(root)

    async def scenario(app: MlciApp, pilot: Any) -> None:
        await _open(app, pilot)
        await pilot.press("tab", "down", "down", "down", "l")
        await pilot.pause()
        assert_snapshot(app, "sweeps", size)

    run_app(root, scenario, watch=False, size=size)


def test_refilled_trials_have_their_widths_before_the_first_paint(tmp_path: Path) -> None:
    """Textual measures auto-width columns on a later idle, and a repaint in between keeps the
    cells cut at the header's width (CI once showed `queued` as `queue`): widths are set with
    the rows, before anything can paint."""
    root = _repo(tmp_path)
    ok(run_mlci(root, "sweep", "create", "lr"))

    async def scenario(app: MlciApp, pilot: Any) -> None:
        screen = await _open(app, pilot)
        sweep = screen.sweeps[screen.current or ""]
        for trial in sweep.trials.values():
            trial.state, trial.reason = "cancelled", "retry after a long wait"
        screen._show_trials()
        table = screen.query_one("#trials-table", DataTable)
        pad = 2 * table.cell_padding
        widths = {c.label.plain: c.get_render_width(table) - pad for c in table.ordered_columns}  # nothing idled
        assert widths["state"] == len("cancelled") and widths["note"] == len("retry after a long wait")
        await pilot.pause()
        text = screen_text(app)
        assert text.count("cancelled ") == 3 and text.count("retry after a long wait") == 3, text

    run_app(root, scenario)
