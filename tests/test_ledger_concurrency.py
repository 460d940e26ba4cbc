"""Many writers, killed writers and concurrent readers on one repository's ledger.

Writers are separate OS processes appending through `LedgerStore.append`; a killed writer
is killed with SIGKILL together with its git child (its whole process group), at random
moments; readers go through the real DuckDB cache.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import git
from ledger_helpers import append_runs, event_files, finish_writer, ledger_tip, query, run_ids, start_writer

from mlci_tui.gitio import Repo
from mlci_tui.ledger.compact import compact
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore

ID_LINE = re.compile(r"^[a-z2-7]{26}$")


def test_four_processes_appending_100_runs_each_lose_nothing(repo: Path) -> None:
    writers = [start_writer(repo, 100, batch=0, label=f"w{n}") for n in range(4)]
    printed = [finish_writer(w) for w in writers]
    every = {i for ids in printed for i in ids}
    assert [len(ids) for ids in printed] == [100] * 4
    assert len(every) == 400
    files = event_files(repo)
    assert len(files) == 400 and set(files) == every
    # one ledger commit per append, in one line of history: nothing was overwritten
    assert git(repo, "rev-list", "--count", LEDGER_REF).strip() == "400"
    assert query(repo, "SELECT count(*), count(DISTINCT run_id) FROM runs") == [(400, 400)]
    assert {r[0] for r in query(repo, "SELECT params['writer'] FROM runs")} == {"w0", "w1", "w2", "w3"}


# A zygote: imports mlci once, then forks one writer per request, so that 50 kills do not
# pay 50 interpreter start-ups. Each child is its own process group (it and its git
# fast-import die together) and writes each id to its log file after append() returns.
ZYGOTE = r"""
import os, random, sys
from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore

root = sys.argv[1]
for line in sys.stdin:
    log_path, seed = line.split()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        rng = random.Random(int(seed))
        store = LedgerStore(Repo.find(root))
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        n = 0
        while True:
            batch = []
            for _ in range(rng.choice((1, 1, 1, 3))):
                rid = records.new_id()
                batch.append(records.envelope("run", {
                    "run_id": rid, "kind": "experiment", "status": "done", "name": f"k{seed}-{n}",
                    "metrics": {"metrics.json": {"acc": n / 100.0}},
                }, event_id=rid))
                n += 1
            store.append(batch)
            os.write(fd, "".join(r["id"] + "\n" for r in batch).encode())
    os.setpgid(pid, pid)  # here too, so the group exists before the test can kill it
    sys.stdout.write(f"{pid}\n")
    sys.stdout.flush()
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(f"{status}\n")
    sys.stdout.flush()
"""


def test_writer_killed_at_random_moments_leaves_a_valid_ledger(repo: Path, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, str(repo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    acknowledged: set[str] = set()
    alive: int | None = None
    try:
        for kill in range(50):
            log = tmp_path / f"writer-{kill}.log"
            zygote.stdin.write(f"{log} {rng.randrange(1 << 30)}\n")
            zygote.stdin.flush()
            pid = alive = int(zygote.stdout.readline())
            if kill in (0, 25):
                # twice, let at least one append return first, so later kills meet a ledger
                # with acknowledged writes however slow the machine is
                deadline = time.monotonic() + 60
                while not (log.exists() and log.read_text().count("\n")) and time.monotonic() < deadline:
                    time.sleep(0.005)
            # from "just forked" to "several appends in", often mid-append
            time.sleep(rng.choice((0.0, rng.uniform(0.0, 0.05), rng.uniform(0.02, 0.25))))
            os.killpg(pid, signal.SIGKILL)
            status = int(zygote.stdout.readline())
            alive = None
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"seed {seed}"
            text = log.read_text() if log.exists() else ""
            lines = text.split("\n")
            complete = lines[:-1]  # a line cut by the kill is not an acknowledged write
            assert all(ID_LINE.match(x) for x in complete), f"seed {seed}: {complete}"
            acknowledged.update(complete)

            tip = ledger_tip(repo)
            if tip is None:
                assert not acknowledged, f"seed {seed}: writes returned but there is no ledger ref"
                continue
            assert git(repo, "cat-file", "-t", tip).strip() == "commit"
            missing = acknowledged - set(event_files(repo))
            assert not missing, f"seed {seed}, kill {kill}: acknowledged writes lost: {sorted(missing)[:5]}"
            if kill % 10 == 9:
                fsck = subprocess.run(
                    ["git", "fsck", "--no-dangling", "--no-progress"], cwd=repo, capture_output=True, text=True
                )
                assert fsck.returncode == 0, f"seed {seed}: {fsck.stdout}{fsck.stderr}"
    finally:
        if alive is not None:  # the test failed with a writer still running
            os.killpg(alive, signal.SIGKILL)
        zygote.stdin.close()
        try:
            zygote.wait(timeout=10)
        except subprocess.TimeoutExpired:
            zygote.kill()  # it was still waiting for a writer the test did not get to kill
            zygote.wait()
    assert acknowledged, f"seed {seed}: no writer ever finished an append"
    fsck = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0, f"seed {seed}: {fsck.stdout}{fsck.stderr}"
    # every record parses and sits at its own name; the ledger still takes appends and queries
    store = LedgerStore(Repo.find(repo))
    from mlci_tui.ledger.verify import fsck as ledger_fsck

    assert ledger_fsck(store) == []
    after = set(append_runs(repo, 2))
    ids = set(run_ids(repo))
    assert acknowledged | after <= ids
    assert len(ids) == len(event_files(repo))


# A reader: refreshes the cache and queries it, over and over, while writers append; it
# reports every failure instead of raising, and the count it saw each time.
READER = r"""
import sys
from mlci_tui.gitio import Repo
from mlci_tui.ledger.cache import LedgerCache

root, rounds = sys.argv[1], int(sys.argv[2])
repo = Repo.find(root)
for _ in range(rounds):
    try:
        cache = LedgerCache(repo)
        with cache.connect() as con:
            n = con.execute("SELECT count(*) FROM runs").fetchone()[0]
            m = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
        print(f"ok {n} {m}", flush=True)
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
"""


def test_concurrent_readers_during_refreshes_never_fail(repo: Path) -> None:
    append_runs(repo, 5)
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(repo), "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    writer = start_writer(repo, 60, batch=4, label="w")
    written = finish_writer(writer)
    outputs = []
    for r in readers:
        out, err = r.communicate(timeout=180)
        assert r.returncode == 0, err
        outputs.append(out.splitlines())
    errors = [line for lines in outputs for line in lines if not line.startswith("ok ")]
    assert errors == [], errors[:5]
    for lines in outputs:
        assert len(lines) == 20
        seen = []
        for line in lines:
            _, runs, metrics = line.split()
            assert runs == metrics  # each answer comes from one consistent snapshot
            seen.append(int(runs))
        assert seen[0] >= 5 and seen[-1] <= 65
        # a reader never goes back in time: the ledger only grows
        assert seen == sorted(seen), seen
    assert len(written) == 60
    assert query(repo, "SELECT count(*) FROM runs") == [(65,)]


def test_compaction_while_a_writer_appends_loses_nothing(repo: Path) -> None:
    before = append_runs(repo, 20, batch=5)
    store = LedgerStore(Repo.find(repo))
    writer = start_writer(repo, 60, batch=3, label="w")
    compactions = 0
    while writer.poll() is None or compactions == 0:
        compact(store)  # rewrites the whole tree; loses the compare-and-swap when the writer moved
        compactions += 1
    written = finish_writer(writer)
    expected = set(before) | set(written)
    assert len(expected) == 80
    assert {r["id"] for r in store.read_records()} == expected
    assert query(repo, "SELECT count(*), count(DISTINCT run_id) FROM runs") == [(80, 80)]
    assert compact(store) == 80
    assert event_files(repo) == []
    assert set(run_ids(repo)) == expected
