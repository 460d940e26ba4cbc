"""A trial's full log travels: stored content-addressed in the data cache, uploaded to the data
remote, linked from the trial's end event; `mlci sweep logs` in another clone shows it whole."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import run_mlci
from sweep_helpers import ok, shared_project

SWEEP = """\
  noisy:
    method: grid
    params:
      lr: [0.1, 0.2]
"""
NOISY = (
    "import json, sys, yaml\n"
    "p = yaml.safe_load(open('params.yaml'))\n"
    "for i in range(3000):\n"
    "    print(f'epoch {i} lr={p[\"lr\"]} loss={1 / (i + 1):.6f}', file=sys.stderr)\n"
    "json.dump({'acc': p['lr'] * 2}, open('metrics.json', 'w'))\n"
)


def test_the_full_log_reaches_another_clone_through_the_data_remote(
    tmp_path: Path, upstream: Path, clone_of: Callable[..., Path]
) -> None:
    store = tmp_path / "store"
    a = shared_project(clone_of("a"), store, SWEEP, NOISY)
    ok(run_mlci(a, "sweep", "create", "noisy"))
    ok(run_mlci(a, "sweep", "start", "noisy", "-j", "1"))
    ok(run_mlci(a, "ledger", "push"))
    here = ok(run_mlci(a, "sweep", "logs", "noisy-1")).stdout
    assert "epoch 2999" in here and len(here) > 4096 * 10  # far more than the 4 KB tail the event keeps

    ended = json.loads(
        ok(
            run_mlci(a, "sql", "SELECT body FROM events WHERE type = 'trial' AND body->>'state' = 'done'", "--json")
        ).stdout
    )
    links = [json.loads(e["body"]).get("log") for e in ended]
    assert len(links) == 2 and all(link and link["size"] > 40_000 for link in links), links
    assert sum(1 for f in store.rglob("*") if f.is_file()) == 2  # both logs uploaded, by content

    b = clone_of("b")
    ok(run_mlci(b, "ledger", "pull"))
    there = ok(run_mlci(b, "sweep", "logs", "noisy-1"))
    assert there.stdout == here
    assert "on the machine that ran it" not in there.stderr


RESUMABLE = (
    "import json, os, pathlib, yaml\n"
    "p = yaml.safe_load(open('params.yaml'))\n"
    "ckpt = pathlib.Path(os.environ['MLCI_CHECKPOINT_DIR']) / 'state' / 'epoch.txt'\n"
    "if not ckpt.exists():\n"
    "    ckpt.parent.mkdir(parents=True, exist_ok=True)\n"
    "    ckpt.write_text('7')\n"
    "    raise SystemExit('lost after epoch 7')\n"
    "json.dump({'acc': p['lr'] + int(ckpt.read_text()) / 100}, open('metrics.json', 'w'))\n"
)
ONE = """\
  resume:
    method: grid
    metric: acc
    retries: 0
    params:
      lr: [0.5]
"""


def test_a_retry_on_another_clone_resumes_from_the_uploaded_checkpoint(
    tmp_path: Path, upstream: Path, clone_of: Callable[..., Path]
) -> None:
    """The first attempt fails on clone a after writing a checkpoint; the retry runs on clone b
    (as on a Dask worker that cloned the project) and starts from that checkpoint."""
    a = shared_project(clone_of("a"), tmp_path / "store", ONE, RESUMABLE)
    ok(run_mlci(a, "sweep", "create", "resume"))
    run_mlci(a, "sweep", "start", "resume")  # the one trial fails (retries: 0)
    failed = json.loads(
        ok(
            run_mlci(a, "sql", "SELECT body FROM events WHERE type = 'trial' AND body->>'state' = 'failed'", "--json")
        ).stdout
    )
    assert len(failed) == 1 and json.loads(failed[0]["body"])["checkpoint"]["nfiles"] == 1
    ok(run_mlci(a, "ledger", "push"))

    b = clone_of("b")
    ok(run_mlci(b, "ledger", "pull"))
    ok(run_mlci(b, "sweep", "retry", "resume"))
    ok(run_mlci(b, "sweep", "start", "resume"))
    best = json.loads(ok(run_mlci(b, "sweep", "best", "resume", "--json")).stdout)[0]
    assert abs(best["value"] - 0.57) < 1e-9  # lr 0.5 + epoch 7 from the checkpoint a wrote
