"""`mlci ledger publish` and `mlci ledger query` (issue 19): segments on the data remote, read by
DuckDB through fsspec without the local cache, each object checked against the ledger's manifest.

S3 is a real S3 API on loopback (moto's server mode); the memory filesystem runs in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import commit, git, mlci_in_process, run_mlci
from ledger_helpers import append_runs, assert_clean_exit, make_run

from mlci_tui.gitio import Repo
from mlci_tui.ledger import events, records
from mlci_tui.ledger.publish import MANIFEST_PATH, parse_manifest
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore

Clone = Callable[..., Path]
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
QUERY = "SELECT count(*) AS n, round(sum(metrics['acc']), 6) AS acc, count(DISTINCT params['i']) AS i FROM runs"


def _s3_project(root: Path, endpoint: str) -> None:
    yaml = (
        "data:\n  remotes:\n    s3:\n      url: s3://mlci-ledger/team\n"
        f"      options: {{client_kwargs: {{endpoint_url: '{endpoint}'}}}}\n"
    )
    commit(root, {"mlci.yaml": yaml}, "remote")


def _json(proc: object) -> list[dict[str, object]]:
    assert_clean_exit(proc)  # type: ignore[arg-type]
    return json.loads(proc.stdout)  # type: ignore[attr-defined, no-any-return]


def _manifest(root: Path) -> dict[str, object]:
    return json.loads(git(root, "cat-file", "-p", f"{LEDGER_REF}:{MANIFEST_PATH}"))


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> object:
    import boto3

    for key, value in CREDS.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket="mlci-ledger")
    for obj in client.list_objects_v2(Bucket="mlci-ledger").get("Contents", []):
        client.delete_object(Bucket="mlci-ledger", Key=obj["Key"])
    return client


def test_a_clone_queries_published_segments_from_s3_without_a_cache(
    upstream: Path, clone_of: Clone, s3_endpoint: str, s3: object
) -> None:
    a = clone_of("a")
    _s3_project(a, s3_endpoint)
    git(a, "push", "-q", "origin", "main")
    append_runs(a, 400, batch=200)
    published = run_mlci(a, "ledger", "publish")
    assert_clean_exit(published)
    assert "published 32 segments (400 records) to s3: 32 uploaded" in published.stdout
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlci-ledger")["Contents"]]  # type: ignore[attr-defined]
    manifest = parse_manifest(git(a, "cat-file", "-p", f"{LEDGER_REF}:{MANIFEST_PATH}").encode())
    assert manifest.covers == git(a, "rev-parse", f"{LEDGER_REF}~1").strip()  # the compacted commit
    assert sorted(keys) == sorted(f"team/ledger/{e.sha256}.parquet" for e in manifest.segments.values())
    assert sum(e.rows for e in manifest.segments.values()) == 400
    again = run_mlci(a, "ledger", "publish")  # content-addressed: nothing new to send
    assert_clean_exit(again)
    assert "32 uploaded" not in again.stdout and "0 uploaded" in again.stdout and "manifest unchanged" in again.stdout
    assert_clean_exit(run_mlci(a, "ledger", "push"))
    expected = _json(run_mlci(a, "sql", QUERY, "--json"))
    assert expected[0]["n"] == 400

    b = clone_of("b")
    assert_clean_exit(run_mlci(b, "ledger", "pull"))  # the pull checks the manifest against the segments
    got = _json(run_mlci(b, "ledger", "query", QUERY, "--json"))
    assert got == expected
    # MLCI_LEDGER_READ=remote: the commands that open the ledger (runs, show, ...) read them too
    listed = _json(run_mlci(b, "runs", "--json", env={"MLCI_LEDGER_READ": "remote"}))
    assert listed == _json(run_mlci(a, "runs", "--json")) and len(listed) == 400
    assert not (b / ".git" / "mlci" / "cache.duckdb").exists()  # no local rebuild

    # records newer than the publish are read locally and unioned; a tombstone hides a published run
    newer = append_runs(b, 3, prefix="newer")
    victim = manifest_run(b)
    LedgerStore(Repo.find(b)).append([events.redact(victim, "test")])
    local = _json(run_mlci(b, "sql", QUERY, "--json"))
    remote = run_mlci(b, "ledger", "query", QUERY, "--json")
    assert _json(remote) == local and local[0]["n"] == 400 + len(newer) - 1
    assert "4 record file(s) and 0 segment(s) newer than the publish" in remote.stderr


def manifest_run(root: Path) -> str:
    """A run id held by a published segment."""
    rows = _json(run_mlci(root, "ledger", "query", "SELECT min(run_id) AS r FROM runs", "--json"))
    return str(rows[0]["r"])


def test_a_changed_object_on_s3_is_refused_whole(upstream: Path, clone_of: Clone, s3_endpoint: str, s3: object) -> None:
    a = clone_of("a")
    _s3_project(a, s3_endpoint)
    append_runs(a, 100, batch=100)
    assert_clean_exit(run_mlci(a, "ledger", "publish"))
    manifest = parse_manifest(git(a, "cat-file", "-p", f"{LEDGER_REF}:{MANIFEST_PATH}").encode())
    path, entry = sorted(manifest.segments.items())[3]
    key = f"team/ledger/{entry.sha256}.parquet"
    body = s3.get_object(Bucket="mlci-ledger", Key=key)["Body"].read()  # type: ignore[attr-defined]
    forged = body[:200] + bytes([body[200] ^ 1]) + body[201:]
    s3.put_object(Bucket="mlci-ledger", Key=key, Body=forged)  # type: ignore[attr-defined]
    proc = run_mlci(a, "ledger", "query", "SELECT run_id FROM runs", "--json")
    assert_clean_exit(proc, 2)
    assert proc.stdout == ""  # no partial answer
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and path in lines[0] and "does not hash to the manifest's SHA-256" in lines[0], lines
    # an object of the right size is taken as there (publish lists, it does not download): once
    # removed, publishing again puts the right bytes back
    s3.delete_object(Bucket="mlci-ledger", Key=key)  # type: ignore[attr-defined]
    assert "1 uploaded" in run_mlci(a, "ledger", "publish").stdout
    assert len(_json(run_mlci(a, "ledger", "query", "SELECT run_id FROM runs", "--json"))) == 100


def test_memory_filesystem_query_matches_the_cache_and_survives_compaction(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec

    commit(repo, {"mlci.yaml": "data:\n  remotes:\n    mem: {url: 'memory://mlci-publish/team'}\n"}, "remote")
    store = LedgerStore(Repo.find(repo))
    store.append(
        [make_run(metrics={"acc": float(i)}, params={"i": i}, steps=[["s.json", "loss", 1, 0.5]]) for i in range(60)]
    )
    out = mlci_in_process(monkeypatch, repo, "ledger", "publish")
    assert re.search(r"published \d+ segments \(60 records\)", out), out
    assert len(fsspec.filesystem("memory").find("/mlci-publish/team/ledger")) == len(_manifest(repo)["segments"])  # type: ignore[arg-type]
    # past the publish: new records, compacted, so some buckets are rewritten (read locally)
    store.append([make_run(metrics={"acc": 100.0 + i}, params={"i": 100 + i}) for i in range(5)])
    mlci_in_process(monkeypatch, repo, "ledger", "compact")
    assert git(repo, "ls-tree", LEDGER_REF, MANIFEST_PATH).strip()  # compaction kept the manifest
    for sql in (
        QUERY,
        "SELECT count(*) AS n, round(sum(value), 3) AS v FROM steps",
        "SELECT kind, count(*) AS n FROM names GROUP BY kind ORDER BY kind",
        "SELECT count(*) AS n FROM events",
    ):
        local = json.loads(mlci_in_process(monkeypatch, repo, "sql", sql, "--json"))
        remote = json.loads(mlci_in_process(monkeypatch, repo, "ledger", "query", sql, "--json"))
        assert remote == local, sql
    assert local == [{"n": 65}]
    # a query may not read files beyond the segments
    from mlci_tui.cli.main import main

    monkeypatch.chdir(repo)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["ledger", "query", "SELECT * FROM read_text('/etc/hostname')"])
    assert code == 2 and "disabled by configuration" in err.getvalue()
    fsspec.filesystem("memory").rm("/mlci-publish", recursive=True)


def test_a_pull_refuses_a_manifest_that_misstates_a_segment(upstream: Path, clone_of: Clone, tmp_path: Path) -> None:
    a = clone_of("a")
    commit(a, {"mlci.yaml": f"data:\n  remotes:\n    store: {{url: '{tmp_path / 'store'}'}}\n"}, "remote")
    append_runs(a, 50, batch=50)
    assert_clean_exit(run_mlci(a, "ledger", "publish"))
    assert_clean_exit(run_mlci(a, "ledger", "fsck"))
    # a clone that writes a manifest naming other bytes for a segment it holds
    doc = _manifest(a)
    segments = doc["segments"]
    assert isinstance(segments, dict)
    first = sorted(segments)[0]
    segments[first]["sha256"] = "0" * 64
    store = LedgerStore(Repo.find(a))
    store.update(lambda _tip: {MANIFEST_PATH: records.dumps(doc)}, "a lying manifest")
    fsck = run_mlci(a, "ledger", "fsck")
    assert_clean_exit(fsck, 1)
    assert f"{MANIFEST_PATH}: {first}: the manifest says sha256 000000000000" in fsck.stdout
    git(a, "push", "-q", "--no-verify", "origin", f"{LEDGER_REF}:{LEDGER_REF}")
    b = clone_of("b")
    pulled = run_mlci(b, "ledger", "pull")
    assert_clean_exit(pulled, 1)
    assert "refused, nothing merged" in pulled.stderr and MANIFEST_PATH in pulled.stderr
    assert not git(b, "for-each-ref", LEDGER_REF).strip()


def test_a_failed_upload_records_no_manifest(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "ledger").write_text("a file where the segments' folder would go\n")  # root or not: no folder here
    commit(repo, {"mlci.yaml": f"data:\n  remotes:\n    store: {{url: '{store}'}}\n"}, "remote")
    append_runs(repo, 20, batch=20)
    proc = run_mlci(repo, "ledger", "publish")
    assert_clean_exit(proc, 1)
    assert "upload failed" in proc.stderr and "no manifest recorded" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not git(repo, "ls-tree", LEDGER_REF, MANIFEST_PATH).strip()
    assert_clean_exit(run_mlci(repo, "ledger", "query", "SELECT 1"), 2)  # nothing published: said, exit 2


def test_every_table_and_view_matches_the_cache(repo: Path, tmp_path: Path) -> None:
    """The published read's tables are views made from the cache's own ingest statements: the
    same columns, types and rows as the cache's, for every table and view (a guard for both)."""
    import fsspec

    from mlci_tui.ledger.cache import TABLES, VIEWS, LedgerCache
    from mlci_tui.ledger.publish import publish
    from mlci_tui.ledger.remote_read import open_published

    ids = append_runs(repo, 40, batch=40)
    store = LedgerStore(Repo.find(repo))
    store.append([make_run(steps=[["s.json", "loss", k, 1.0 / (k + 1)] for k in range(3)], metrics={"acc": 1.0})])
    _compact(repo)
    publish(store, fsspec.filesystem("file"), str(tmp_path / "store"))
    store.append([events.tag(ids[0], "best"), events.note(ids[1], "look"), events.promote(ids[2], "prod")])
    with (
        LedgerCache(Repo.find(repo)).connect() as local,
        open_published(store, fsspec.filesystem("file"), str(tmp_path / "store")) as (con, read),
    ):
        assert read.remote_segments > 0 and read.local_records == 3
        for name in [*TABLES, *VIEWS]:
            shape = f"DESCRIBE SELECT * FROM {name}"
            assert con.execute(shape).fetchall() == local.execute(shape).fetchall(), name
            rows = f"SELECT count(*) FROM {name}"
            assert con.execute(rows).fetchall() == local.execute(rows).fetchall(), name
        assert con.execute("SELECT count(*) FROM steps").fetchall() == [(3,)]
        assert con.execute("SELECT stage FROM stages").fetchall() == [("prod",)]


def _compact(root: Path) -> None:
    """Compaction as `mlci ledger compact` does it, without the CLI."""
    from mlci_tui.ledger.compact import compact

    compact(LedgerStore(Repo.find(root)))
