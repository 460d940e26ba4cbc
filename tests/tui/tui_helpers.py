"""Shared pieces of the TUI tests: deterministic ledgers in real git repositories, a runner
that drives the real app with Textual's Pilot, and SVG snapshot comparison.

Ledgers are built with `LedgerStore.append` (fixed ids and times, so screenshots are
stable) or with `mlci capture` of real commits; every test reads them through the real
DuckDB cache. Nothing in Textual is mocked.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from conftest import git
from ledger_helpers import make_run  # noqa: F401 - the one run-event builder the tests share

from mlci_tui import config as config_mod
from mlci_tui.gitio import Repo
from mlci_tui.ledger import events, records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.tui.app import MlciApp

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (120, 30)
AUTHOR = "Ada Lovelace <ada.lovelace@analytical-engines.research.example.org>"  # long: must not set widths
MLCI_YAML = "metrics:\n  fields:\n    acc: {direction: max}\n    loss: {direction: min}\n"


def rid(letter: str) -> str:
    return letter * 26


def _steps(name: str, values: list[float]) -> list[list[Any]]:
    return [[f"plots/{name}.tsv", name, i, v] for i, v in enumerate(values)]


# six runs of a small project: three commits on main, two experiments, one failed run
LAB: list[dict[str, Any]] = [
    dict(
        event_id=rid("a"),
        time="2025-03-01T09:00:00.000000Z",
        kind="commit",
        message="Baseline: logistic regression\n\nfirst try",
        author=AUTHOR,
        branch="main",
        commit="1" * 40,
        params={"lr": 0.1, "model": "linear", "epochs": 5},
        metrics={"acc": 0.71, "loss": 0.62},
        steps=_steps("loss", [0.9, 0.8, 0.7, 0.65, 0.62]) + _steps("acc", [0.5, 0.6, 0.65, 0.7, 0.71]),
    ),
    dict(
        event_id=rid("b"),
        time="2025-03-02T09:00:00.000000Z",
        kind="commit",
        message="Raise learning rate",
        author=AUTHOR,
        branch="main",
        commit="2" * 40,
        params={"lr": 0.01, "model": "linear", "epochs": 5},
        metrics={"acc": 0.78, "loss": 0.51},
        steps=_steps("loss", [0.85, 0.7, 0.6, 0.55, 0.51]) + _steps("acc", [0.55, 0.65, 0.7, 0.75, 0.78]),
    ),
    dict(
        event_id=rid("c"),
        time="2025-03-03T09:00:00.000000Z",
        kind="commit",
        message="Switch to a small CNN",
        author=AUTHOR,
        branch="main",
        commit="3" * 40,
        params={"lr": 0.01, "model": "cnn-small", "epochs": 10},
        metrics={"acc": 0.91, "loss": 0.24},
        steps=_steps("loss", [0.7, 0.5, 0.35, 0.28, 0.24]) + _steps("acc", [0.6, 0.75, 0.85, 0.89, 0.91]),
    ),
    dict(
        event_id=rid("d"),
        time="2025-03-04T09:00:00.000000Z",
        kind="experiment",
        name="cnn-wide",
        branch="exp/wide",
        commit="3" * 40,
        params={"lr": 0.001, "model": "cnn-wide", "epochs": 10},
        metrics={"acc": 0.93, "loss": 0.2},
        steps=_steps("loss", [0.6, 0.4, 0.3, 0.22, 0.2]),
    ),
    dict(
        event_id=rid("e"),
        time="2025-03-05T09:00:00.000000Z",
        kind="experiment",
        name="cnn-lr-0.1",
        branch="exp/wide",
        commit="3" * 40,
        params={"lr": 0.1, "model": "cnn-small", "epochs": 10},
        metrics={"acc": 0.55, "loss": 1.3},
        steps=_steps("loss", [0.9, 1.1, 1.2, 1.25, 1.3]),
    ),
    dict(
        event_id=rid("f"),
        time="2025-03-06T09:00:00.000000Z",
        kind="experiment",
        name="diverged",
        branch="exp/wide",
        commit="3" * 40,
        status="failed",
        params={"lr": 1.0, "model": "cnn-small", "epochs": 10},
        metrics={"loss": float("nan")},
    ),
]


def make_lab(root: Path, runs: list[dict[str, Any]] | None = None, *, config: str = MLCI_YAML) -> Path:
    """Write the lab ledger into the repository at `root` (no commits needed)."""
    (root / "mlci.yaml").write_text(config)
    store = LedgerStore(Repo.find(root))
    batch = []
    for spec in runs if runs is not None else LAB:
        spec = dict(spec)
        status = spec.pop("status", "done")
        batch.append(make_run(status=status, **spec))
    store.append(batch)
    return root


def append_runs(root: Path, specs: list[dict[str, Any]]) -> None:
    LedgerStore(Repo.find(root)).append([make_run(**s) for s in specs])


def add_events(root: Path, *evs: dict[str, Any]) -> None:
    LedgerStore(Repo.find(root)).append(list(evs))


def fixed(event: dict[str, Any], letter: str, time: str = "2025-03-07T09:00:00.000000Z") -> dict[str, Any]:
    """An event with a fixed id and time (stable screenshots)."""
    event["id"] = rid(letter)
    event["time"] = time
    return event


def promote(root: Path, run_id: str, stage: str = "deployed") -> None:
    add_events(root, fixed(events.promote(run_id, stage), "p"))


def copy_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def make_app(root: Path, **kw: Any) -> MlciApp:
    kw.setdefault("poll_seconds", 0.1)
    kw.setdefault("timings", False)
    return MlciApp(Repo.find(root), config_mod.load(root), **kw)


async def wait_until(pilot: Any, condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


async def settle(pilot: Any, timeout: float = 15.0) -> None:
    """Wait until no query or write worker runs and their messages are handled."""
    app = pilot.app

    def idle() -> bool:
        return not [w for w in app.workers if w.group != "watch" and not w.is_finished]

    await wait_until(pilot, idle, timeout, "workers to finish")
    await pilot.pause()
    await pilot.pause()


def run_app(
    root: Path,
    scenario: Callable[[MlciApp, Any], Awaitable[None]],
    *,
    size: tuple[int, int] = SIZE,
    notifications: bool = False,
    **kw: Any,
) -> MlciApp:
    """Run the real app headless at a fixed size and drive it with `scenario(app, pilot)`."""
    app = make_app(root, **kw)

    async def main() -> None:
        async with app.run_test(size=size, notifications=notifications) as pilot:
            await wait_until(
                pilot, lambda: app.runs_screen.result is not None or app.runs_screen.error, what="first view"
            )
            await settle(pilot)
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def screen_text(app: MlciApp) -> str:
    """The screen as plain text (what a user reads)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor", record=True
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def assert_snapshot(app: MlciApp, name: str, size: tuple[int, int] | None = None) -> None:
    """Compare an SVG screenshot with tests/tui/snapshots/NAME-WxH.svg (MLCI_UPDATE_SNAPSHOTS=1 rewrites)."""
    assert size is None or tuple(app.size) == size, f"the app runs at {app.size}, not {size}"
    svg = _normalise(app.export_screenshot(title="mlci"))
    path = SNAPSHOTS / (f"{name}-{size[0]}x{size[1]}.svg" if size else f"{name}.svg")
    if os.environ.get("MLCI_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        if not path.exists() and os.environ.get("MLCI_UPDATE_SNAPSHOTS") != "1":
            raise AssertionError(f"no snapshot {path.name}: run with MLCI_UPDATE_SNAPSHOTS=1 and review it")
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
        return
    expected = path.read_text()
    if svg != expected:
        actual = path.with_suffix(".actual.svg")
        actual.write_text(svg)
        raise AssertionError(
            f"screen differs from {path.name}; see {actual.name} (MLCI_UPDATE_SNAPSHOTS=1 accepts it)\n"
            f"screen now:\n{screen_text(app)}"
        )


def _normalise(svg: str) -> str:
    """Nothing random should reach a screenshot; this is a guard for temp paths only."""
    return re.sub(r"/tmp/[^<\"]*", "/tmp/…", svg)


def new_id() -> str:
    return records.new_id()


def commit_files(root: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


def validation_event(
    path: str, content_hash: str, rev: str, status: str, checks: list[dict[str, Any]], time: str
) -> dict[str, Any]:
    """A `validation` event built as mlci_tui/validate/run.py builds it."""
    from mlci_tui import __version__
    from mlci_tui.ledger.records import derived_id, envelope

    body = {
        "dataset": Path(path).stem,
        "path": path,
        "content_hash": content_hash,
        "rev": rev,
        "schema_hash": "sha256:" + "0" * 64,
        "status": status,
        "rows": 1200,
        "base_hash": None,
        "error": None,
        "warnings": [],
        "checks": checks,
        "mlci_version": __version__,
    }
    return envelope("validation", body, event_id=derived_id("validation", path, rev, time), time=time)


def check(name: str, column: str | None, status: str, failures: int = 0, message: str = "") -> dict[str, Any]:
    return {
        "check": name,
        "column": column,
        "status": status,
        "severity": "error",
        "failures": failures,
        "rows": 1200,
        "params": {},
        "message": message,
        "top_values": [],
    }
