"""What a pull accepts and what `ledger fsck --repair` moves aside (issue 18, part 3): every
record canonical, of a known type and shape, named by an id that matches its path and, where
mlci derives it, its content; every segment checked as a unit."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import commit, git, run_mlci
from ledger_helpers import make_run
from test_ledger_poison import plant

from mlci_tui.errors import CheckFailed
from mlci_tui.gitio import Repo
from mlci_tui.ledger import records, sync, verify
from mlci_tui.ledger.store import LedgerStore


def _file(record: dict[str, Any], body: bytes | None = None) -> dict[str, bytes]:
    return {records.record_path(record["id"]): records.dumps(record) if body is None else body}


def _segment(rows: list[tuple[str, str, str]], ids: list[str] | None = None, name: str = "s" * 26) -> dict[str, bytes]:
    """A segment file pair: (id, type, body) rows, and the `.ids` list (default: the id column)."""
    table = pa.table({k: pa.array([r[i] for r in rows], pa.string()) for i, k in enumerate(("id", "type", "body"))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    listed = [r[0] for r in rows] if ids is None else ids
    return {f"segments/{name}.parquet": buf.getvalue(), f"segments/{name}.ids": ("\n".join(listed) + "\n").encode()}


def _row(record: dict[str, Any]) -> tuple[str, str, str]:
    return record["id"], record["type"], records.dumps(record).decode()


def _bad_files(sha: str) -> dict[str, dict[str, bytes]]:
    """One of each kind of bad file, by name: what a poisoning remote could push."""
    good = make_run(name="fine", metrics={"acc": 0.1})
    spaced = make_run(name="spaced")
    unsorted = make_run(name="unsorted")
    dup = make_run(name="dup")
    stringy = make_run(name="stringy")
    stringy["params"] = "lr=0.1"
    forged = make_run(kind="commit", commit=sha, metrics={"acc": 0.99})  # a random id for a commit run
    future = records.envelope("x-future", {"target": good["id"]})  # unknown type at this schema's v
    other = make_run(name="other")
    return {
        "spaces": _file(spaced, json.dumps(spaced, sort_keys=True).encode() + b"\n"),
        "key order": _file(unsorted, json.dumps(unsorted, separators=(",", ":")).encode() + b"\n"),
        "duplicate key": _file(dup, records.dumps(dup).replace(b'"name":"dup"', b'"name":"dup","name":"evil"')),
        "params a string": _file(stringy),
        "commit run not derived": _file(forged),
        "unknown type": _file(future),
        "garbage segment": {"segments/g.parquet": b"PAR1 not a parquet file", "segments/g.ids": b"x\n"},
        "ids differ": _segment([_row(good)], ids=[other["id"]], name="d" * 26),
        "body id differs": _segment([(other["id"], "run", records.dumps(good).decode())], name="b" * 26),
        "ids without segment": {"segments/lonely.ids": (records.derived_id("commit", sha) + "\n").encode()},
    }


@pytest.fixture
def pair(clone_of: Callable[..., Path]) -> tuple[Path, Path, str]:
    """Clone `a` with a captured run pushed to the remote, clone `b` that pulled it; the run id."""
    a = clone_of("a")
    sha = commit(a, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    git(a, "push", "-q", "origin", "main")
    assert run_mlci(a, "capture").returncode == 0 and run_mlci(a, "ledger", "push").returncode == 0
    b = clone_of("b")
    assert run_mlci(b, "ledger", "pull").returncode == 0
    return a, b, records.derived_id("commit", sha)


def _push_planted(a: Path, files: dict[str, bytes]) -> None:
    plant(a, files)
    git(a, "push", "-q", "--no-verify", "origin", "refs/mlci/ledger:refs/mlci/ledger")


@pytest.mark.parametrize(
    "kind",
    [
        "spaces",
        "key order",
        "duplicate key",
        "params a string",
        "commit run not derived",
        "unknown type",
        "body id differs",
        "ids differ",
        "ids without segment",
    ],
)
def test_a_pull_refuses_each_kind_of_bad_file_with_its_path(pair: tuple[Path, Path, str], kind: str) -> None:
    a, b, run_id = pair
    sha = git(a, "rev-parse", "HEAD").strip()
    files = _bad_files(sha)[kind]
    _push_planted(a, files)
    before = git(b, "rev-parse", "refs/mlci/ledger").strip()
    with pytest.raises(CheckFailed, match="refused, nothing merged") as refused:
        sync.pull(Repo.find(b), "origin", force_merge=True)
    assert any(path in str(refused.value) for path in files), str(refused.value)
    assert git(b, "rev-parse", "refs/mlci/ledger").strip() == before
    listing = run_mlci(b, "runs")
    assert listing.returncode == 0 and run_id[:8] in listing.stdout


def test_a_pull_of_a_garbage_segment_is_refused_and_runs_still_work(pair: tuple[Path, Path, str]) -> None:
    a, b, run_id = pair
    _push_planted(a, _bad_files("0" * 40)["garbage segment"])
    proc = run_mlci(b, "ledger", "pull", "--force-merge")
    assert proc.returncode == 1 and "segments/g.parquet: not a readable segment" in proc.stderr, proc.stderr
    listing = run_mlci(b, "runs")
    assert listing.returncode == 0 and run_id[:8] in listing.stdout and "segments/" not in listing.stderr


def test_a_genuine_compacted_remote_is_accepted(pair: tuple[Path, Path, str], clone_of: Callable[..., Path]) -> None:
    a, b, run_id = pair
    commit(a, {"metrics.json": json.dumps({"acc": 0.7})}, "b")
    git(a, "push", "-q", "origin", "main")
    assert run_mlci(a, "capture").returncode == 0
    assert run_mlci(a, "ledger", "compact").returncode == 0
    assert run_mlci(a, "ledger", "push").returncode == 0
    fresh = clone_of("fresh")
    for clone in (b, fresh):  # one that holds the event files, one that holds nothing
        proc = run_mlci(clone, "ledger", "pull")
        assert proc.returncode == 0, proc.stderr
        assert run_id[:8] in run_mlci(clone, "runs").stdout
        assert run_mlci(clone, "ledger", "fsck").returncode == 0


def test_local_bad_files_do_not_block_a_pull_and_a_newer_schema_is_a_warning(
    pair: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _run_id = pair
    plant(b, _bad_files("0" * 40)["spaces"])  # from before the check existed
    newer = records.envelope("x-future", {"shape": "unknown"})
    newer["v"] = records.SCHEMA_VERSION + 1
    _push_planted(a, _file(newer))
    sync.pull(Repo.find(b), "origin")
    assert "schema v2" in capsys.readouterr().err
    assert records.record_path(newer["id"]) in git(b, "ls-tree", "-r", "--name-only", "refs/mlci/ledger")


def test_fsck_repair_quarantines_every_bad_file(repo: Path) -> None:
    sha = commit(repo, {"metrics.json": json.dumps({"acc": 0.5})}, "a")
    assert run_mlci(repo, "capture").returncode == 0
    good = make_run(name="kept", metrics={"acc": 0.25})
    LedgerStore(Repo.find(repo)).append([good])
    bad: dict[str, bytes] = {}
    for files in _bad_files(sha).values():
        bad.update(files)
    plant(repo, bad)
    proc = run_mlci(repo, "ledger", "fsck")
    assert proc.returncode == 1, proc.stderr
    for path in bad:
        assert path in proc.stdout, (path, proc.stdout)
    repaired = run_mlci(repo, "ledger", "fsck", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    tree = git(repo, "ls-tree", "-r", "--name-only", "refs/mlci/ledger").split()
    for path in bad:
        assert f"moved {path} -> quarantine/{path}" in repaired.stdout
        assert f"quarantine/{path}" in tree and path not in tree
    assert run_mlci(repo, "ledger", "fsck").returncode == 0
    listing = run_mlci(repo, "runs")
    assert listing.returncode == 0 and "skipped" not in listing.stderr
    assert records.derived_id("commit", sha)[:8] in listing.stdout and good["id"][:8] in listing.stdout


def test_the_canonical_check_is_records_dumps_of_records_loads() -> None:
    """verify checks canonical form without records' float walk; it must agree with it."""
    samples = [
        '{"a":1.0,"b":{"$float":"NaN"},"c":"é\\u0001\\n","d":[1e-05,1e+16,-0.0]}\n',
        '{"a":1e-5}\n',
        '{"a":NaN}\n',
        '{"a":"\\u00e9"}\n',
        '{"a":"\\/"}\n',
        '{"b":1,"a":2}\n',
        '{"a":1,"a":1}\n',
        '{"a":0.10000000000000001}\n',
        '{"a":"\\ud800"}\n',
    ]
    for text in samples:
        try:
            expected = records.dumps(records.loads(text)).decode() == text
        except (ValueError, UnicodeEncodeError):
            expected = False
        got = verify.check_record(text).problem
        assert (got is None or "canonical" not in got) == expected, (text, got)


def test_size_limits_and_shapes() -> None:
    deep = make_run(params={"x": json.loads("[" * 120 + "]" * 120)})
    assert "nested deeper" in str(verify.check_record(records.dumps(deep).decode()).problem)
    tag = records.envelope("tag", {"target": "not-an-id", "name": "t", "remove": False})
    assert "target" in str(verify.check_record(records.dumps(tag).decode()).problem)
    metrics = make_run(metrics={"acc": "high"})
    assert "metrics" in str(verify.check_record(records.dumps(metrics).decode()).problem)
    fine = make_run(metrics={"acc": float("nan")}, steps=[["m.csv", "loss", 0, 0.5]])
    assert verify.check_record(records.dumps(fine).decode()) == verify.RecordCheck(type="run")


def test_a_large_segment_is_checked_by_forked_workers_and_finds_a_bad_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past PARALLEL_ROWS the rows go to one forked process per core; a bad row is still named."""
    monkeypatch.setattr(verify, "PARALLEL_ROWS", 100)
    monkeypatch.setattr(verify.os, "cpu_count", lambda: 2)
    good = [make_run(name=f"r{i}") for i in range(400)]
    rows = [_row(r) for r in good]
    stringy = dict(good[333], params="lr=0.1")
    rows[333] = (stringy["id"], "run", records.dumps(stringy).decode())
    seg = _segment(rows)
    data, listed = seg["segments/" + "s" * 26 + ".parquet"], seg["segments/" + "s" * 26 + ".ids"]
    warnings: list[str] = []
    problem = verify._segment_problem(data, listed, warnings, "segments/x.parquet")
    assert problem is not None and "1 invalid record(s): row 333" in problem, problem
    monkeypatch.setattr(verify, "PARALLEL_ROWS", 10**9)  # in this process: the same finding
    assert verify._segment_problem(data, listed, [], "segments/x.parquet") == problem


def test_a_pulled_segment_checks_only_the_rows_this_clone_does_not_hold(
    pair: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote that compacted records this clone holds: those rows are not checked again."""
    a, b, _rid = pair
    for i in range(3):
        commit(a, {"metrics.json": json.dumps({"acc": i / 10})}, f"more {i}")
        assert run_mlci(a, "capture").returncode == 0
    assert run_mlci(a, "ledger", "push").returncode == 0
    assert run_mlci(b, "ledger", "pull").returncode == 0  # b holds all four runs as event files
    assert run_mlci(a, "ledger", "compact").returncode == 0
    new = make_run(name="only on the remote")
    store_a = LedgerStore(Repo.find(a))
    store_a.append([new])
    git(a, "push", "-q", "--force", "origin", "refs/mlci/ledger:refs/mlci/ledger")
    checked: list[str] = []
    real = verify.check_record

    def counting(text: str, **kw: Any) -> verify.RecordCheck:
        checked.append(json.loads(text)["id"])
        return real(text, **kw)

    monkeypatch.setattr(verify, "check_record", counting)
    store_b = LedgerStore(Repo.find(b))
    fetched = sync.fetch(store_b.repo, "origin")
    assert fetched is not None
    verdict = verify.incoming_verdict(store_b, fetched)
    assert verdict.problems == []
    assert checked == [new["id"]]  # the compacted rows b holds byte for byte were skipped


def test_a_repaired_clone_does_not_take_the_quarantined_file_back_on_pull(pair: tuple[Path, Path, str]) -> None:
    """b held a bad file from before the check, repaired it; the remote still has it: a pull
    is not refused for it, and the merge does not put it back in events/."""
    a, b, _rid = pair
    bad = _bad_files(git(a, "rev-parse", "HEAD").strip())["spaces"]
    _push_planted(a, bad)
    plant(b, bad)  # as a pull before this check existed would have left it
    proc = run_mlci(b, "ledger", "fsck", "--repair")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commit(a, {"metrics.json": json.dumps({"acc": 0.7})}, "later")
    assert run_mlci(a, "capture").returncode == 0
    git(a, "push", "-q", "--no-verify", "origin", "refs/mlci/ledger:refs/mlci/ledger")
    proc = run_mlci(b, "ledger", "pull")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = bad
    assert not git(b, "ls-tree", "refs/mlci/ledger", "--", path).strip()
    assert git(b, "ls-tree", "refs/mlci/ledger", "--", "quarantine/" + path).strip()
    proc = run_mlci(b, "ledger", "fsck")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _canonical_verdict(text: str) -> bool:
    """What `check_record` says of a text's form alone: a JSON object, written canonically."""
    problem = verify.check_record(text).problem
    return problem is None or not (
        problem.startswith(("not JSON", "not a JSON object", "not canonical")) or "lines;" in problem
    )


def test_the_joint_parse_vouches_only_for_texts_check_record_finds_canonical() -> None:
    """Segment rows are parsed many at a time as one JSON array; a row is taken from that parse
    only if it is canonical on its own, whatever its neighbours do to the joint parse."""
    good = records.dumps(make_run(name="a,b")).decode()
    cut = good.index("a,b") + 1  # a string's comma: the two halves parse as one value when joined
    parsable = [
        good,
        '{"a":1.0,"b":{"$float":"NaN"},"c":"é\\u0001\\n","d":[1e-05,1e+16,-0.0]}\n',
        good[:cut] + "\n",
        good[cut + 1 :],
        good[:-1] + "," + good,  # two records on one line
        "[1]\n",
        '{"a":"\u2028"}\n',
        '{"b":1,"a":2}\n',
        '{"a":1,"a":1}\n',
        '{"a":1e-5}\n',
        '{"a":-0}\n',
        '{"a":"\\u00e9"}\n',
        '{"a":0.10000000000000001}\n',
        good,
    ]
    vouched = verify._canonical_records(parsable)
    assert [v is not None for v in vouched] == [_canonical_verdict(t) for t in parsable]
    assert [v is not None for v in vouched] == [True, True] + [False] * 4 + [True] + [False] * 6 + [True]
    assert vouched[0] == vouched[-1] == records.loads(good)
    refused_whole = [  # each breaks the joint parse of its batch: every text is left to the check alone
        '{"a":NaN}\n',
        '{"a":1e400}\n',
        '{"a":"\\ud800"}\n',
        '{"a":' + "9" * 5000 + "}\n",
        '{"a":' + "[" * 3000 + "]" * 3000 + "}\n",
        good[:-1] + "," + good[:-1],  # no newline
        "\n",
    ]
    for odd in refused_whole:
        texts = [good, odd, good]
        vouched = verify._canonical_records(texts)
        assert all(v is None or (_canonical_verdict(t) and v == records.loads(t)) for t, v in zip(texts, vouched))
        assert vouched[1] is None


def test_a_large_segment_names_each_bad_row_and_checks_alone_only_rows_the_joint_parse_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Among many good rows: a non-canonical body, a commit run whose id does not derive from
    its commit, two rows that form one record only when joined, a row of two records. Each is
    named with what `check_record` says of it alone, in this process and in forked workers."""
    runs = [make_run(name=f"r{i}") for i in range(300)]
    rows = [_row(r) for r in runs]
    rows[17] = (runs[17]["id"], "run", json.dumps(runs[17], sort_keys=True) + "\n")
    forged = make_run(kind="commit", commit="ab" * 20)
    rows[101] = (forged["id"], "run", records.dumps(forged).decode())
    halves = records.dumps(dict(runs[150], name="x,y")).decode()
    cut = halves.index("x,y") + 1
    rows[150] = (runs[150]["id"], "run", halves[:cut] + "\n")
    rows[151] = (runs[151]["id"], "run", halves[cut + 1 :])
    rows[152] = (runs[152]["id"], "run", records.dumps(runs[152]).decode()[:-1] + "," + rows[153][2])
    bad = {17, 101, 150, 151, 152}
    expected = [
        (n, verify.check_record(body, row_id=rid).problem) for n, (rid, _t, body) in enumerate(rows) if n in bad
    ]
    assert all(why for _n, why in expected)
    assert "does not derive" in str(expected[1][1]) and "canonical" in str(expected[0][1])
    seg = _segment(rows)
    data, listed = seg["segments/" + "s" * 26 + ".parquet"], seg["segments/" + "s" * 26 + ".ids"]
    table = pq.read_table(io.BytesIO(data))
    alone: list[str] = []
    real = verify.check_record

    def counting(text: str, **kw: Any) -> verify.RecordCheck:
        alone.append(kw["row_id"])
        return real(text, **kw)

    monkeypatch.setattr(verify, "check_record", counting)
    assert verify._check_table_split(table, None) == (expected, [])
    assert sorted(alone) == sorted(rows[n][0] for n in bad - {101})  # the forged id's body is canonical
    problem = verify._segment_problem(data, listed, [], "segments/x.parquet")
    assert problem is not None and problem.startswith(
        f"5 invalid record(s): row 17 (id {rows[17][0]!r}): not canonical"
    )
    held = _Holds({verify.blob_id(body.encode()) for _rid, _t, body in rows[::2]})  # a clone with the even rows
    odd = [(n, why) for n, why in expected if n % 2]
    assert verify._check_table_split(table, held) == (odd, [])  # rows taken by number, in this process
    monkeypatch.setattr(verify, "PARALLEL_ROWS", 100)
    monkeypatch.setattr(verify.os, "cpu_count", lambda: 2)
    assert verify._check_table_split(table, None) == (expected, [])  # forked workers: the same findings
    assert verify._check_table_split(table, held) == (odd, [])
    assert verify._segment_problem(data, listed, [], "segments/x.parquet") == problem


class _Holds:
    """`verify.Known` for a clone that holds these blob ids."""

    def __init__(self, oids: set[str]) -> None:
        self.oids = oids

    def holds_body(self, oid: str) -> bool:
        return oid in self.oids


def test_a_segment_whose_body_column_is_not_utf8_is_refused() -> None:
    """Arrow checks the columns' UTF-8 before any row is read; the reason is Python's decoder's."""
    good = make_run(name="fine")
    body = pa.array([records.dumps(good)[:-2] + b"\xff}\n"], pa.binary()).view(pa.string())
    table = pa.table({"id": pa.array([good["id"]]), "type": pa.array(["run"]), "body": body})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    listed = (good["id"] + "\n").encode()
    assert verify._segment_problem(buf.getvalue(), listed, [], "segments/x.parquet") == "not UTF-8 (invalid start byte)"
