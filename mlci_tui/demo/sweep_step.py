"""The sweep part of `mlci demo`: a small grid over the demo's training script, run locally.

`demo.py` calls `run_demo_sweep(root)` once the demo repository is built; it appends a
`sweeps:` section to mlci.yaml (left uncommitted, for the user to read), queues the sweep
against HEAD, runs it on two local workers and returns the lines to print.
"""

from __future__ import annotations

import time
from pathlib import Path

from mlci_tui.gitio import Repo
from mlci_tui.output import cell_text
from mlci_tui.sanitize import display
from mlci_tui.sweep.local import run
from mlci_tui.sweep.operations import create_sweep

SWEEP_NAME = "lr-search"
SWEEP_YAML = f"""\
sweeps:
  {SWEEP_NAME}:                    # mlci sweep create {SWEEP_NAME} && mlci sweep start {SWEEP_NAME}
    params:
      train.lr: {{values: [0.005, 0.05, 0.5]}}
      train.epochs: {{range: [4, 12, 6]}}   # 4, 10 (stop excluded)
    method: grid
    metric: acc
    direction: max
    parallel: 2
    timeout: 300
"""


def run_demo_sweep(root: Path) -> list[str]:
    """Define, queue and run the demo sweep in the repository at `root`; lines to print."""
    config_file = root / "mlci.yaml"
    text = config_file.read_text()
    if "\nsweeps:" not in "\n" + text:
        config_file.write_text(text.rstrip("\n") + "\n" + SWEEP_YAML)
    repo = Repo.find(root)
    sweep, count = create_sweep(repo, SWEEP_NAME)
    began = time.monotonic()
    progress: list[str] = []
    final = run(repo, sweep.sweep_id, int(sweep.spec.get("parallel") or 2), progress.append)
    seconds = time.monotonic() - began
    counts = final.counts()
    lines = [
        f"sweep {SWEEP_NAME}: {count} trials (grid over train.lr x train.epochs, defined under sweeps: in mlci.yaml),"
        f" run in git worktrees on 2 local workers",
        "  " + ", ".join(f"{n} {state}" for state, n in counts.items() if n) + f" in {seconds:.1f} s",
    ]
    for trial in final.ordered():
        params = " ".join(f"{k}={cell_text(v)}" for k, v in trial.params.items())
        lines.append(f"  {SWEEP_NAME}-{trial.number}  {trial.state:<6}  {params:<32}  acc={cell_text(trial.value)}")
    best = final.best()
    if best is not None:
        params = " ".join(f"{k}={cell_text(v)}" for k, v in best.params.items())
        lines.append(f"best: {SWEEP_NAME}-{best.number} acc={cell_text(best.value)} with {params}")
    lines.append(f"  mlci sweep status {SWEEP_NAME}    ·    mlci sweep best {SWEEP_NAME}    ·    mlci tui, then w")
    return [display(line) for line in lines]
