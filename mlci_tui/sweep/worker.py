"""Local worker processes: each runs trials named by their leases, records them, releases the leases.

`python -m mlci_tui.sweep.worker --serve ROOT` is a long-lived pool worker: it reads one
lease path per line on stdin and answers with the trial id on stdout when that trial is
recorded, so interpreter start and imports are paid once per worker, not once per trial.
`python -m mlci_tui.sweep.worker LEASE ROOT` runs a single trial. The job is read from the
lease file, so a worker never queries the ledger; it writes its own pid into the lease (so
a coordinator sees it die) and touches the lease while the trial runs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from mlci_tui.gitio import Repo
from mlci_tui.sweep import events, queue
from mlci_tui.sweep.runner import TrialJob, append_outcome, run_trial


def run_one(repo: Repo, lease: Path) -> str | None:
    """Run the trial of `lease`; returns its final state, or None when the lease is gone."""
    data = queue.read_lease_data(lease)
    if data is None:
        print(f"mlci sweep worker: lease {lease} is gone", file=sys.stderr)
        return None
    job = TrialJob.from_json(data["job"])
    queue.update(lease, pid=os.getpid())
    outcome = run_trial(
        repo,
        job,
        lease=lease,
        worker=events.worker_name(os.getpid()),
        on_start=lambda pid: queue.update(lease, child_pid=pid),
    )
    append_outcome(repo, outcome)
    queue.release(lease)
    return outcome.state


def serve(root: str) -> int:
    # Ctrl-C reaches the whole terminal process group: the coordinator decides (it kills this
    # worker, whose command's supervisor then ends the command, and requeues the trial)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    repo = Repo.find(root)
    for line in sys.stdin:
        lease = Path(line.strip())
        if not line.strip():
            continue
        state = run_one(repo, lease)
        sys.stdout.write(f"{lease.name.removesuffix('.lease')} {state}\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--serve":
        return serve(argv[1])
    state = run_one(Repo.find(argv[1]), Path(argv[0]))
    return 0 if state == "done" else (2 if state is None else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
