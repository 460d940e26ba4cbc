"""One local worker process: runs the trial named by its lease, records it, releases the lease.

Started by the local executor as `python -m mlci_tui.sweep.worker LEASE ROOT`. The job is
read from the lease file, so the worker never queries the ledger; it writes its own pid
into the lease (so a coordinator can see it die) and touches the lease while it runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlci_tui.gitio import Repo
from mlci_tui.sweep import events, queue
from mlci_tui.sweep.runner import TrialJob, append_outcome, run_trial


def main(argv: list[str]) -> int:
    lease, root = Path(argv[0]), argv[1]
    data = queue.read_lease_data(lease)
    if data is None:
        print(f"mlci sweep worker: lease {lease} is gone", file=sys.stderr)
        return 2
    repo = Repo.find(root)
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
    return 0 if outcome.state == "done" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
