"""Sweep definitions, search strategies, params writing and the trial-state fold (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_mlci
from sweep_helpers import ok, sweep_repo

from mlci_tui import config
from mlci_tui.errors import ConfigError
from mlci_tui.ledger import records
from mlci_tui.sweep import events, strategies
from mlci_tui.sweep.params_io import apply_params
from mlci_tui.sweep.spec import build


def test_range_is_exact_and_excludes_stop() -> None:
    values = strategies.range_values(0.1, 0.4, 0.1)
    assert values == [0.1, 0.2, 0.3]
    assert [repr(v) for v in values] == ["0.1", "0.2", "0.3"]
    tenths = strategies.range_values(0, 1, 0.1)
    assert len(tenths) == 10 and repr(tenths[-1]) == "0.9" and repr(tenths[3]) == "0.3"
    assert strategies.range_values(1, 10, 3) == [1, 4, 7]
    assert all(isinstance(v, int) for v in strategies.range_values(1, 10, 3))
    assert strategies.range_values(1.0, 0.0, -0.25) == [1.0, 0.75, 0.5, 0.25]


def _spec(tmp_path: Path, raw: dict[str, object]) -> object:
    cfg = config.load_text(tmp_path, "train:\n  command: python train.py\n")
    from mlci_tui.sweep.config_schema import SWEEP

    def fail(path: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: {why}")

    return build(cfg, "s", SWEEP.check(raw, "sweeps.s", fail), source="test")


def test_grid_is_the_cartesian_product_in_order(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"params": {"train.lr": {"range": [0.1, 0.4, 0.1]}, "train.epochs": [1, 2]}})
    trials = strategies.grid(spec)  # type: ignore[arg-type]
    assert trials == [
        {"train.lr": 0.1, "train.epochs": 1},
        {"train.lr": 0.1, "train.epochs": 2},
        {"train.lr": 0.2, "train.epochs": 1},
        {"train.lr": 0.2, "train.epochs": 2},
        {"train.lr": 0.3, "train.epochs": 1},
        {"train.lr": 0.3, "train.epochs": 2},
    ]
    # canonical JSON of the queued values is exact too
    assert b"0.30000000000000004" not in records.dumps({"t": trials})


def test_random_is_reproducible_with_a_seed_and_stays_in_bounds(tmp_path: Path) -> None:
    raw = {
        "method": "random",
        "max_trials": 20,
        "params": {
            "lr": {"range": [0.1, 0.4, 0.1]},
            "l2": {"loguniform": ["1e-5", 0.1]},  # PyYAML reads 1e-5 as a string: accepted as a number
            "drop": {"uniform": [0.0, 0.5]},
            "layers": {"int": [1, 4]},
            "opt": {"values": ["adam", "sgd"]},
        },
    }
    spec = _spec(tmp_path, raw)
    first, again, other = (strategies.random_trials(spec, s) for s in (7, 7, 8))  # type: ignore[arg-type]
    assert first == again and first != other and len(first) == 20
    for t in first:
        assert t["lr"] in (0.1, 0.2, 0.3)
        assert 1e-5 <= t["l2"] <= 0.1 and 0.0 <= t["drop"] <= 0.5
        assert t["layers"] in (1, 2, 3, 4) and t["opt"] in ("adam", "sgd")
    assert len({t["layers"] for t in first}) > 1


def test_tpe_suggests_within_the_space(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {
            "method": "tpe",
            "metric": "acc",
            "max_trials": 6,
            "params": {"lr": {"loguniform": [0.001, 1.0]}, "k": [1, 2]},
        },
    )
    done = [{"lr": 0.01, "k": 1}, {"lr": 0.5, "k": 2}, {"lr": 0.1, "k": 1}]
    new = strategies.tpe_suggest(spec, 3, done, [0.2, 0.9, None], 2)  # type: ignore[arg-type]
    assert len(new) == 2
    assert all(0.001 <= t["lr"] <= 1.0 and t["k"] in (1, 2) for t in new)
    assert new == strategies.tpe_suggest(spec, 3, done, [0.2, 0.9, None], 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("{range: [0.4, 0.1, 0.1]}", "sweeps.bad.params.lr.range: range [0.4, 0.1, 0.1] is empty"),
        ("{between: [1, 2]}", "sweeps.bad.params.lr.between: unknown kind"),
        ("{loguniform: [0, 1]}", "loguniform bounds must be positive"),
        ("{int: [1.5, 3]}", "int bounds must be integers"),
        ("{uniform: [1, x]}", "sweeps.bad.params.lr.uniform[1]: expected a number"),
    ],
)
def test_bad_spaces_are_refused_with_their_key_path(repo: Path, space: str, message: str) -> None:
    sweep_repo(repo, f"  bad:\n    params:\n      lr: {space}\n")
    proc = run_mlci(repo, "sweep", "create", "bad")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_grid_refuses_continuous_params_and_unknown_sweeps(repo: Path) -> None:
    sweep_repo(repo, "  g:\n    params:\n      lr: {uniform: [0.1, 0.2]}\n")
    proc = run_mlci(repo, "sweep", "create", "g")
    assert proc.returncode == 2 and "grid needs discrete values" in proc.stderr
    proc = run_mlci(repo, "sweep", "create", "nope")
    assert proc.returncode == 2 and "sweeps.nope: no such sweep (defined: g)" in proc.stderr


def test_params_are_written_keeping_comments(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text('# top\ntrain:\n  lr: 0.5   # learning rate\n  "a.b": 1\nseed: 3\n')
    (tmp_path / "extra.json").write_text('{"x": {"y": 1}}')
    apply_params(tmp_path, {"train.lr": 0.3, "train.l2": 1e-05, "train.a.b": 2, "extra.json:x.y": 5}, "params.yaml")
    text = (tmp_path / "params.yaml").read_text()
    assert text == '# top\ntrain:\n  lr: 0.3   # learning rate\n  "a.b": 2\n  l2: 1.0e-05\nseed: 3\n'
    assert (tmp_path / "extra.json").read_text() == '{\n  "x": {\n    "y": 5\n  }\n}\n'


def test_fold_done_is_final_and_retries_are_counted() -> None:
    sweep = events.sweep_event("s", {"direction": "max", "retries": 1}, base="b" * 40, base_kind="commit", seed=1)
    sid = sweep["id"]
    tid = events.trial_id(sid, 0)
    seq = [
        events.trial_event(sid, tid, "queued", number=0, params={"lr": 0.1}),
        events.trial_event(sid, tid, "started", attempt=1),
        events.trial_event(sid, tid, "requeued", reason="lost"),
        events.trial_event(sid, tid, "started", attempt=2),
        events.trial_event(sid, tid, "done", run_id="r", value=0.5),
        events.trial_event(sid, tid, "failed", exit_code=1),  # a late duplicate: done stays
    ]
    for n, ev in enumerate(seq):
        ev["time"] = f"2026-01-01T00:00:0{n}.000000Z"
    trial = events.fold([sweep, *seq])[sid].trials[tid]
    assert (trial.state, trial.attempts, trial.requeues, trial.value) == ("done", 2, 1, 0.5)
    assert seq[4]["id"] == events.done_event_id(tid)


def test_status_lists_no_sweeps_cleanly(repo: Path) -> None:
    sweep_repo(repo, "  s:\n    params:\n      lr: [0.1]\n")
    proc = ok(run_mlci(repo, "sweep", "status"))
    assert "no sweeps yet" in proc.stdout
