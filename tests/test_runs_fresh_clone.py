"""A fresh clone's first `mlci runs --json/--csv` (issue 19): rendered from the ledger's run
records in Python, without DuckDB and without building the cache, byte for byte what the
query prints; anything it cannot render exactly goes to the query."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import git, run_mlci
from ledger_helpers import make_run

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.compact import compact
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore

FORMATS = [("--json",), ("--csv",), ("--csv", "--raw")]
INT_EDGE = 2**63


def _clone(origin: Path, tmp_path: Path, name: str) -> Path:
    """A fresh clone that fetched the ledger: no cache, no memo."""
    target = tmp_path / name
    git(tmp_path, "clone", "-q", str(origin), str(target))
    git(target, "fetch", "-q", "origin", f"{LEDGER_REF}:{LEDGER_REF}")
    assert not (target / ".git" / "mlci").exists()
    return target


def _queried(repo: Path, *fmt: str) -> str:
    """The listing as the query prints it (`--limit 0`: all runs, never memoised)."""
    proc = run_mlci(repo, "runs", *fmt, "--limit", "0")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _memo(repo: Path, *fmt: str) -> Path:
    suffix = ".raw" if "--raw" in fmt else ""
    return repo / ".git" / "mlci" / f"runs-listing.{fmt[0].lstrip('-')}{suffix}"


def _listed(repo: Path, *fmt: str) -> str:
    proc = run_mlci(repo, "runs", *fmt)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _tricky_float(rng: random.Random) -> float:
    return rng.choice(
        [
            1e-05,
            1e-06,
            1e-07,
            -1e-07,
            1e16,
            1e20,
            1e21,
            -1.5e21,
            2.5e-300,
            1.5e300,
            5e-324,
            1.7976931348623157e308,
            -0.0,
            0.1,
            1 / 3,
            123456789.123,
            1.0,
            rng.uniform(-1e6, 1e6),
            10.0 ** rng.randint(-30, 30) * rng.random(),
        ]
    )


def _param(rng: random.Random) -> Any:
    """A param value the records listing renders (text, booleans, ints within 64 bits, finite floats)."""
    return rng.choice(
        [
            _tricky_float(rng),
            rng.randint(-(2**40), 2**40),
            INT_EDGE - 1,
            -(INT_EDGE - 1),
            0,
            True,
            False,
            "",
            "adamw",
            "1e5",
            "=SUM(A1:A9)",
            "-x",
            "+1",
            "@home",
            "naïve ключ 模型 🚀",
            "\u202eevil",
            "tab\there",
            "two\nlines\r\nthree",
        ]
    )


def _metric(rng: random.Random) -> Any:
    return rng.choice(
        [
            _tricky_float(rng),
            math.nan,
            math.inf,
            -math.inf,
            3,
            -7,
            INT_EDGE - 1,
            INT_EDGE,
            -INT_EDGE,
            2**64,
            10**30,
            2**53 + 1,
        ]
    )


def _varied_runs(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Runs with every kind of value the listing prints, missing fields, and ties in time."""
    rng = random.Random(seed)
    out = []
    times = [f"2025-0{m}-0{d}T10:00:0{s}.{rng.randint(0, 999999):06d}Z" for m in (1, 2) for d in (1, 2) for s in (0, 1)]
    for i in range(count):
        when = rng.choice([*times, "2025-03-01T00:00:00Z", "2025-03-01T00:00:00.5Z"])  # repeats: ties
        params = {f"p{k}": _param(rng) for k in range(rng.randint(0, 5))}
        params["ключ"] = _param(rng)
        run = make_run(
            time=when,
            kind=rng.choice(["commit", "experiment", "ci", "trial"]),
            name=rng.choice([None, "", "模型 ✓", "multi\nline name", "=cmd|' /C calc'!A0", f"run {i}"]),
            commit=rng.choice([None, f"{i:040x}"]),
            params=params,
            metrics={f"m{k}": _metric(rng) for k in range(rng.randint(0, 4))},
            message=rng.choice([None, "fix: the loss\n\nbody with\ttab", "שלום עולם", "x" * 300]),
            branch=rng.choice([None, "main", "feature/ü"]),
            author="Zoë <z@example.com>",
            stale=rng.choice([True, False]),
        )
        if i % 5 == 0:
            run["params"]["other.yaml"] = {"p0": _param(rng)}  # p0 in two files: file:name keys
        if i % 7 == 0:
            del run["started"], run["ended"], run["name"]  # missing, not null: the record time decides
        if i % 11 == 0:
            run["started"] = "2025-03-01T00:00:00Z"  # started equal to other runs' time, own time apart
        out.append(run)
    return out


def _records_path_taken(clone: Path, *fmt: str) -> None:
    assert not (clone / ".git" / "mlci" / "cache.duckdb").exists(), "the query ran: the cache was built"
    assert _memo(clone, *fmt).exists()


def test_a_fresh_clone_lists_from_the_records_byte_for_byte_as_the_query(repo: Path, tmp_path: Path) -> None:
    LedgerStore(Repo.find(repo)).append(_varied_runs(160))
    for n, fmt in enumerate(FORMATS):
        clone = _clone(repo, tmp_path, f"clone-{n}")
        listed = _listed(clone, *fmt)
        _records_path_taken(clone, *fmt)
        assert listed == _queried(repo, *fmt)
        assert _listed(clone, *fmt) == listed  # from the records again: no cache, no memo trusted
        _records_path_taken(clone, *fmt)


def test_ties_and_missing_times_order_as_the_query(repo: Path, tmp_path: Path) -> None:
    """Equal times go by run id; a run with no start sorts by its record time."""
    same = "2025-05-05T05:05:05.000005Z"
    runs = [make_run(time=same, name=f"tie-{k}") for k in range(6)]
    runs += [make_run(time=same, name="no start") for _ in range(2)]
    for run in runs[-2:]:
        run["started"] = None
    runs.append(make_run(time="2025-05-05T05:05:04Z", name="older"))
    LedgerStore(Repo.find(repo)).append(runs)
    clone = _clone(repo, tmp_path, "clone")
    listed = _listed(clone, "--json")
    _records_path_taken(clone, "--json")
    assert listed == _queried(repo, "--json")
    ids = [line.split('"')[3] for line in listed.splitlines()[1:-1]]
    assert ids[:8] == sorted(r["id"] for r in runs[:8])


def test_the_listing_loads_no_duckdb(repo: Path, tmp_path: Path) -> None:
    LedgerStore(Repo.find(repo)).append(_varied_runs(20))
    clone = _clone(repo, tmp_path, "clone")
    probe = (
        "import sys\nfrom mlci_tui.cli.main import main\ncode = main(['runs', '--json'])\n"
        "print(code, 'duckdb' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=clone, capture_output=True, text=True, check=False)
    assert proc.stderr.strip().splitlines()[-1] == "0 False", proc.stderr
    assert proc.stdout == _queried(repo, "--json")


def _tag(repo: Path, run_id: str) -> None:
    assert run_mlci(repo, "tag", run_id, "best").returncode == 0


def _note(repo: Path, run_id: str) -> None:
    assert run_mlci(repo, "note", run_id, "lr too high").returncode == 0


def _redact(repo: Path, run_id: str) -> None:
    assert run_mlci(repo, "ledger", "redact", run_id).returncode == 0


def _segment(repo: Path, _run_id: str) -> None:
    compact(LedgerStore(Repo.find(repo)))


def _planted(body: str) -> Any:
    """A run record file written by hand (what no mlci writes, a clone may still hold)."""

    def plant(repo: Path, _run_id: str) -> None:
        store = LedgerStore(Repo.find(repo))
        tip = store.tip()
        assert tip is not None
        rid = records.new_id()
        text = body.replace("ID", rid)
        assert store.replace_tree([(records.record_path(rid), text.encode())], "plant", tip, keep=store.entries(tip))

    return plant


DEEP = '{"id":"ID","run_id":"ID","type":"run","v":1,"time":"2025-01-01T00:00:00Z","params":{"p.yaml":{"x":'


def _value(param: Any) -> Any:
    def add(repo: Path, _run_id: str) -> None:
        LedgerStore(Repo.find(repo)).append([make_run(time="2025-06-01T00:00:00Z", params={"odd": param})])

    return add


@pytest.mark.parametrize(
    "change",
    [
        _tag,
        _note,
        _redact,
        _segment,
        _value([1, 2]),
        _value({"nested": 1}),
        _value(None),
        _value(INT_EDGE),
        _value(-INT_EDGE),
        _value(10**30),
        _planted(DEEP + "[" * 100_000 + "]" * 100_000 + "}}}\n"),
        _planted('{"id":"ID","run_id":"ID","type":"run","v":1,"time":"not a time"}\n'),
        _planted("not json\n"),
        _planted('{"id":"ID","run_id":"ID","type":"run","v":1,"time":"2025-13-01T00:00:00Z"}\n'),
        _planted(r'{"id":"ID","run_id":"ID","type":"run","v":1,"time":"2025-01-01T00:00:00Z","name":"a \ud800"}' "\n"),
    ],
    ids=[
        *["tag", "note", "redaction", "segment", "list", "map", "null", "2**63", "-2**63", "10**30"],
        *["nested past Python's parser", "a time DuckDB reads otherwise", "not JSON", "month 13", "a lone surrogate"],
    ],
)
def test_what_the_records_cannot_render_goes_to_the_query(repo: Path, tmp_path: Path, change: Any) -> None:
    runs = _varied_runs(12, seed=3)
    LedgerStore(Repo.find(repo)).append(runs)
    change(repo, runs[0]["id"])
    clone = _clone(repo, tmp_path, "clone")
    listed = _listed(clone, "--json")
    assert (clone / ".git" / "mlci" / "cache.duckdb").exists(), "the records path answered"
    assert listed == _queried(repo, "--json")


def test_the_memo_the_records_wrote_serves_once_a_cache_exists(repo: Path, tmp_path: Path) -> None:
    """Without a cache no memo is trusted (a dropped cache drops the memo); the memo the records
    wrote is the query's listing, so it serves once a cache exists, and takes a capture."""
    LedgerStore(Repo.find(repo)).append(_varied_runs(10, seed=5))
    clone = _clone(repo, tmp_path, "clone")
    first = _listed(clone, "--csv")
    memo = _memo(clone, "--csv")
    key = memo.read_text(encoding="utf-8").split("\n", 1)[0]
    memo.write_text(key + "\nrun_id\n", encoding="utf-8")  # right key, wrong body
    assert _listed(clone, "--csv") == first  # no cache: the records answer again
    assert run_mlci(clone, "runs", "--limit", "1").returncode == 0  # a table listing builds the cache
    hint = clone / ".git" / "mlci" / "cache.tip"
    cached_tip = hint.read_text()
    assert _listed(clone, "--csv") == first  # the memo, at the cache's tip
    LedgerStore(Repo.find(clone)).append([make_run(time="2026-01-01T00:00:00Z", params={"lr": 0.5})])
    spliced = _listed(clone, "--csv")
    assert hint.read_text() == cached_tip  # the new run went in front of the memo: no query
    assert spliced.count("\n") == first.count("\n") + 1 and spliced == _queried(clone, "--csv")
