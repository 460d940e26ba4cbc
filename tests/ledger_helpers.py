"""Helpers shared by the ledger robustness tests: run records, writer processes, queries.

Everything here talks to real git repositories and a real DuckDB cache; writers are
separate OS processes running a small Python snippet against `LedgerStore.append`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import git, run_mlci

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.cache import LedgerCache
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore

# A writer process: appends COUNT runs to the repo at ROOT, alternating one single append
# with one batch of BATCH runs (BATCH <= 1: single appends only). After each append()
# returns it prints the ids it wrote, one per line, and flushes: a printed id is a write
# that reported success.
WRITER = r"""
import sys
from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore

root, count, batch, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
store = LedgerStore(Repo.find(root))
written = 0
single = True
while written < count:
    size = 1 if (single or batch <= 1) else min(batch, count - written)
    single = not single
    recs = []
    for _ in range(size):
        rid = records.new_id()
        recs.append(records.envelope("run", {
            "run_id": rid, "kind": "experiment", "name": f"{label}-{written}", "status": "done",
            "params": {"params.yaml": {"writer": label, "i": written}},
            "metrics": {"metrics.json": {"acc": written / 1000.0}},
        }, event_id=rid))
        written += 1
    store.append(recs)
    sys.stdout.write("".join(r["id"] + "\n" for r in recs))
    sys.stdout.flush()
"""


def make_run(
    *,
    event_id: str | None = None,
    time: str | None = None,
    kind: str = "experiment",
    name: str | None = None,
    commit: str | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    steps: list[list[Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `run` event as mlci writes it (only the fields these tests need)."""
    rid = event_id or records.new_id()
    body: dict[str, Any] = {
        "run_id": rid,
        "kind": kind,
        "name": name,
        "status": "done",
        "started": time,
        "ended": time,
        "commit": commit,
        "params": {"params.yaml": params} if params else {},
        "metrics": {"metrics.json": metrics} if metrics else {},
        "steps": steps or [],
    }
    body.update(extra)
    return records.envelope("run", body, event_id=rid, time=time)


def append_runs(root: Path, count: int, *, batch: int = 0, prefix: str = "run") -> list[str]:
    """Append `count` runs in-process: singles, or batches of `batch` (one ledger commit each)."""
    store = LedgerStore(Repo.find(root))
    ids: list[str] = []
    pending: list[dict[str, Any]] = []
    for i in range(count):
        rec = make_run(name=f"{prefix}-{i}", params={"i": i}, metrics={"acc": i / 1000.0})
        ids.append(rec["id"])
        pending.append(rec)
        if len(pending) >= max(batch, 1):
            store.append(pending)
            pending = []
    if pending:
        store.append(pending)
    return ids


def start_writer(root: Path, count: int, *, batch: int = 0, label: str = "w") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(count), str(batch), label],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_writer(proc: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"writer failed ({proc.returncode}):\n{err}"
    return out.split()


def pull(root: Path, remote: str = "origin", *, force_merge: bool = False) -> Any:
    """`mlci ledger pull` in this process (the same core function the command calls)."""
    from mlci_tui.ledger import sync

    return sync.pull(Repo.find(root), remote, force_merge=force_merge)


def push(root: Path, remote: str = "origin") -> Any:
    from mlci_tui.ledger import sync

    return sync.push(Repo.find(root), remote)


def ledger_tip(root: Path) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "-q", "--verify", LEDGER_REF], cwd=root, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or None


def event_files(root: Path, ref: str = LEDGER_REF) -> list[str]:
    """Names (ids) of the event files in the tree of `ref`, duplicates kept."""
    out = git(root, "ls-tree", "-r", "--name-only", ref)
    return [p.rsplit("/", 1)[-1].removesuffix(".json") for p in out.splitlines() if p.startswith("events/")]


def ledger_tree(root: Path, ref: str = LEDGER_REF) -> str:
    return git(root, "rev-parse", f"{ref}^{{tree}}").strip()


def query(root: Path, sql: str, params: list[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """A query through the real cache (refreshed first), in this process."""
    cache = LedgerCache(Repo.find(root))
    with cache.connect() as con:
        return con.execute(sql, params or []).fetchall()


def run_ids(root: Path) -> list[str]:
    return [r[0] for r in query(root, "SELECT run_id FROM runs")]


def mlci_json(root: Path, *args: str) -> Any:
    """`mlci ARGS --json` as a real process; asserts success, returns the parsed output."""
    proc = run_mlci(root, *args, "--json")
    assert proc.returncode == 0, f"mlci {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout)


def assert_clean_exit(proc: subprocess.CompletedProcess[str], code: int = 0) -> None:
    assert proc.returncode == code, (
        f"exit {proc.returncode}, wanted {code}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def mlci_ok(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`mlci ARGS` as a real process; asserts a clean exit 0 and returns it."""
    proc = run_mlci(root, *args)
    assert_clean_exit(proc)
    return proc
