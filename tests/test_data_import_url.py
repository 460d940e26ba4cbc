"""`mlci data import-url` / `mlci data update` against a real local HTTP server whose file changes.

The server (http.server on 127.0.0.1, random port, in a thread) serves one dataset whose
content the test changes between calls, with an ETag, only a Last-Modified, or neither. It
counts GET requests, so a test shows that `update` downloads nothing when the source's
version did not change.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import commit, git, run_mlci

from mlci_tui.data.pointer import parse_pointer

CSV_V1 = "id,x\n1,0.5\n2,0.7\n"
CSV_V2 = "id,x\n1,0.5\n2,0.7\n3,0.9\n"


@dataclass
class DataServer:
    files: dict[str, bytes] = field(default_factory=dict)
    mode: str = "etag"  # etag, mtime, none
    gets: list[str] = field(default_factory=list)
    mtime: float = 1_700_000_000.0
    url: str = ""

    def set(self, path: str, text: str) -> None:
        self.files[path] = text.encode()
        self.mtime += 60

    def headers_for(self, path: str) -> dict[str, str]:
        data = self.files[path]
        out = {"Content-Length": str(len(data)), "Content-Type": "text/csv"}
        if self.mode == "etag":
            out["ETag"] = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'  # noqa: S324 - a version tag, not security
        if self.mode in ("etag", "mtime"):
            out["Last-Modified"] = formatdate(self.mtime, usegmt=True)
        return out


@pytest.fixture
def server() -> Iterator[DataServer]:
    state = DataServer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            if self.path not in state.files:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body:
                state.gets.append(self.path)
            self.send_response(200)
            for k, v in state.headers_for(self.path).items():
                self.send_header(k, v)
            self.end_headers()
            if body:
                self.wfile.write(state.files[self.path])

        def do_HEAD(self) -> None:
            self._answer(False)

        def do_GET(self) -> None:
            self._answer(True)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if "proxy" in key.lower():
            monkeypatch.delenv(key)


def _pointer(repo: Path, rel: str) -> Any:
    return parse_pointer((repo / (rel + ".mlci")).read_text(), rel + ".mlci")


def _start(repo: Path) -> None:
    commit(repo, {"README.md": "data project\n"}, "start")


@pytest.mark.parametrize("mode", ["etag", "mtime", "none"])
def test_import_then_update_only_when_the_source_changed(repo: Path, server: DataServer, mode: str) -> None:
    _start(repo)
    server.mode = mode
    server.set("/train.csv", CSV_V1)
    url = f"{server.url}/train.csv"

    res = run_mlci(repo, "data", "import-url", url, "data/train.csv")
    assert res.returncode == 0, res.stderr
    assert (repo / "data/train.csv").read_text() == CSV_V1
    first = _pointer(repo, "data/train.csv")
    assert first.source_url == url
    expected_prefix = {"etag": "etag:", "mtime": "mtime:", "none": "hash:"}[mode]
    assert first.source_version.startswith(expected_prefix), first.source_version
    assert first.size == len(CSV_V1)
    assert "data/train.csv" in (repo / ".gitignore").read_text()
    assert git(repo, "check-ignore", "data/train.csv").strip() == "data/train.csv"
    assert len(server.gets) == 1

    # the source did not change: nothing moves; with a version the source reports, nothing is downloaded
    res = run_mlci(repo, "data", "update", "--json")
    assert res.returncode == 0, res.stderr
    (change,) = json.loads(res.stdout)
    assert change["status"] == "unchanged"
    assert _pointer(repo, "data/train.csv") == first
    assert len(server.gets) == (2 if mode == "none" else 1)

    # the source changed: downloaded, placed, pointer re-written with the new hash and version
    server.set("/train.csv", CSV_V2)
    gets_before = len(server.gets)
    res = run_mlci(repo, "data", "update")
    assert res.returncode == 0, res.stderr
    assert "data/train.csv: updated from" in res.stdout
    assert f"size {len(CSV_V1)} -> {len(CSV_V2)} bytes" in res.stdout
    assert "1 of 1 imported dataset(s) changed" in res.stdout
    assert (repo / "data/train.csv").read_text() == CSV_V2
    second = _pointer(repo, "data/train.csv")
    assert second.hash != first.hash and second.size == len(CSV_V2)
    assert second.source_version != first.source_version
    assert len(server.gets) == gets_before + 1


def test_update_names_only_imported_datasets_and_a_local_source(repo: Path, server: DataServer, tmp_path: Path) -> None:
    _start(repo)
    server.set("/a.csv", CSV_V1)
    source = tmp_path / "exports" / "b.csv"
    source.parent.mkdir()
    source.write_text(CSV_V1)
    assert run_mlci(repo, "data", "import-url", f"{server.url}/a.csv", "data/a.csv").returncode == 0
    res = run_mlci(repo, "data", "import-url", source.as_uri(), "data/b.csv")
    assert res.returncode == 0, res.stderr
    assert _pointer(repo, "data/b.csv").source_version.startswith("mtime:")

    # change only the local source: update of one path touches only that one
    source.write_text(CSV_V2)
    import os

    os.utime(source, (1_800_000_000, 1_800_000_000))
    res = run_mlci(repo, "data", "update", "data/a.csv", "--json")
    assert [c["status"] for c in json.loads(res.stdout)] == ["unchanged"]
    res = run_mlci(repo, "data", "update", "--json")
    statuses = {c["path"]: c["status"] for c in json.loads(res.stdout)}
    assert statuses == {"data/a.csv": "unchanged", "data/b.csv": "updated"}
    assert (repo / "data/b.csv").read_text() == CSV_V2


def test_bad_input(repo: Path, server: DataServer) -> None:
    _start(repo)
    server.set("/a.csv", CSV_V1)
    # credentials in the URL would be committed in the pointer: refused
    res = run_mlci(repo, "data", "import-url", "http://user:pw@127.0.0.1:1/a.csv", "data/a.csv")
    assert res.returncode == 2 and "user info" in res.stderr and "Traceback" not in res.stderr
    # a missing source is a failure of the source (exit 1), and nothing is written
    res = run_mlci(repo, "data", "import-url", f"{server.url}/missing.csv", "data/m.csv")
    assert res.returncode == 1, res.stderr
    assert "not found" in res.stderr or "download failed" in res.stderr or "cannot read" in res.stderr
    assert not (repo / "data/m.csv").exists() and not (repo / "data/m.csv.mlci").exists()
    # importing over an existing import asks for update instead
    assert run_mlci(repo, "data", "import-url", f"{server.url}/a.csv", "data/a.csv").returncode == 0
    res = run_mlci(repo, "data", "import-url", f"{server.url}/a.csv", "data/a.csv")
    assert res.returncode == 2 and "mlci data update" in res.stderr
    # a path outside the repository is a usage error
    res = run_mlci(repo, "data", "import-url", f"{server.url}/a.csv", "../outside.csv")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    # the source vanishing during update fails (exit 1) and leaves data and pointer as they were
    before = (repo / "data/a.csv.mlci").read_text()
    del server.files["/a.csv"]
    res = run_mlci(repo, "data", "update")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert (repo / "data/a.csv.mlci").read_text() == before and (repo / "data/a.csv").read_text() == CSV_V1


def test_a_folder_source_is_versioned_by_its_content(repo: Path, tmp_path: Path) -> None:
    _start(repo)
    src = tmp_path / "export"
    (src / "part").mkdir(parents=True)
    (src / "a.csv").write_text(CSV_V1)
    (src / "part" / "b.csv").write_text(CSV_V1)
    res = run_mlci(repo, "data", "import-url", src.as_uri(), "data/export")
    assert res.returncode == 0, res.stderr
    first = _pointer(repo, "data/export")
    assert first.nfiles == 2 and first.source_version.startswith("hash:")
    assert (repo / "data/export/part/b.csv").read_text() == CSV_V1
    res = run_mlci(repo, "data", "update", "--json")
    assert [c["status"] for c in json.loads(res.stdout)] == ["unchanged"]
    (src / "c.csv").write_text(CSV_V2)
    res = run_mlci(repo, "data", "update", "--json")
    assert [c["status"] for c in json.loads(res.stdout)] == ["updated"]
    assert _pointer(repo, "data/export").nfiles == 3 and (repo / "data/export/c.csv").read_text() == CSV_V2


def test_an_s3_source_on_a_loopback_server_is_versioned_by_its_etag(repo: Path, s3_endpoint: str) -> None:
    boto3 = pytest.importorskip("boto3")
    endpoint = s3_endpoint
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="mlci-source")
    s3.put_object(Bucket="mlci-source", Key="exports/train.csv", Body=CSV_V1.encode())
    env = {**creds, "AWS_ENDPOINT_URL": endpoint}
    _start(repo)
    res = run_mlci(repo, "data", "import-url", "s3://mlci-source/exports/train.csv", "data/train.csv", env=env)
    assert res.returncode == 0, res.stderr
    first = _pointer(repo, "data/train.csv")
    assert first.source_version.startswith("etag:")
    res = run_mlci(repo, "data", "update", "--json", env=env)
    assert [c["status"] for c in json.loads(res.stdout)] == ["unchanged"]
    s3.put_object(Bucket="mlci-source", Key="exports/train.csv", Body=CSV_V2.encode())
    res = run_mlci(repo, "data", "update", "--json", env=env)
    (change,) = json.loads(res.stdout)
    assert change["status"] == "updated" and change["new_version"] != first.source_version
    assert (repo / "data/train.csv").read_text() == CSV_V2
