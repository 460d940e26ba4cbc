"""`gs://` and `az://` data remotes through gcsfs and adlfs, against real emulators on loopback.

GCS: gcp-storage-emulator (pure Python, from the test extra) serving in this process; gcsfs
finds it through STORAGE_EMULATOR_HOST or the `endpoint_url` option. Azure: Azurite, the
official Azure Storage emulator (the npm package `azurite`, installed on first use into
$TMPDIR/mlci-azurite), run with node; adlfs authenticates with Azurite's published
development account through AZURE_STORAGE_CONNECTION_STRING or `.mlci/config.local.yaml`.
S3 (moto) joins the failure cases as the reference the other two must match.

Every test process is kept off the network: cloud metadata servers are pointed at a closed
loopback port and disabled, so no SDK looks for credentials beyond this machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, git, run_mlci, write
from npm_tools import npm_package
from test_data_remotes import make_project, moved, ok, round_trip

from mlci_tui.data.cache import DataCache

AZURITE_VERSION = "3.37.0"
# Azurite's development account: a well-known, published key that opens nothing but the emulator
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BUCKET = "mlci-data"
HNS = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"


CLOSED = free_port()  # nothing listens there: connections are refused at once
OFFLINE = {
    # no SDK may look for credentials off this machine
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": f"127.0.0.1:{CLOSED}",
    "GCE_METADATA_IP": f"127.0.0.1:{CLOSED}",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "IDENTITY_ENDPOINT": f"http://127.0.0.1:{CLOSED}",
    "MSI_ENDPOINT": f"http://127.0.0.1:{CLOSED}",
}
CLOUD_ENV = (
    "AWS_",
    "GOOGLE_",
    "GCLOUD",
    "CLOUDSDK_",
    "STORAGE_EMULATOR_HOST",
    "GCSFS_",  # mlci must turn gcsfs's gRPC bucket probes off for an emulator by itself
    "AZURE_",
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets reaches mlci: the developer's cloud settings never do."""
    for key in list(os.environ):
        if key.startswith(CLOUD_ENV):
            monkeypatch.delenv(key)
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)


def azure_connection(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


@dataclass
class Backend:
    """How one cloud remote is reached: committed config (no secrets) and the environment."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)  # committed (mlci.yaml)
    env: dict[str, str] = field(default_factory=dict)
    fs_options: dict[str, Any] = field(default_factory=dict)  # to open the store from the test

    def yaml(self) -> str:
        return (
            f"data:\n  remotes:\n    {self.name}:\n      url: {self.url}\n      options: {json.dumps(self.options)}\n"
        )

    def fs(self) -> Any:
        import fsspec

        return fsspec.core.url_to_fs(self.url, **self.fs_options)


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    # this process opens the store too: gcsfs reads the switch once, when first imported
    before = os.environ.get(HNS)
    os.environ[HNS] = "false"
    import gcsfs  # noqa: F401

    if before is None:
        del os.environ[HNS]
    else:
        os.environ[HNS] = before
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def azurite_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = npm_package("azurite", AZURITE_VERSION, "dist/src/blob/main.js", "MLCI_AZURITE_DIR")
    port = free_port()
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["node", str(folder / "node_modules/azurite/dist/src/blob/main.js"), "--blobHost", "127.0.0.1"]
            + ["--blobPort", str(port), "--inMemoryPersistence", "--extentMemoryLimit", "64"]
            + ["--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"azurite exited: {log.read_text()[-1000:]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"azurite did not listen: {log.read_text()[-1000:]}"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def gcs(gcs_endpoint: str) -> Backend:
    prefix = f"{BUCKET}/t{time.monotonic_ns()}"  # one emulator, a fresh prefix per test
    env = {"STORAGE_EMULATOR_HOST": gcs_endpoint}
    return Backend("gcs", f"gs://{prefix}", env=env, fs_options={"endpoint_url": gcs_endpoint, "token": "anon"})


@pytest.fixture
def azure(azurite_port: int) -> Backend:
    import fsspec

    container = f"c{time.monotonic_ns()}"
    conn = azure_connection(azurite_port)
    fsspec.filesystem("az", connection_string=conn, skip_instance_cache=True).mkdir(container)
    return Backend(
        "az",
        f"az://{container}/cache",
        env={"AZURE_STORAGE_CONNECTION_STRING": conn},
        fs_options={"connection_string": conn},
    )


@pytest.fixture(params=["gcs", "azure"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(request.param)


def test_round_trip(tmp_path: Path, backend: Backend) -> None:
    """push all, push nothing, one changed file only; a fresh clone pulls identical bytes."""
    round_trip(tmp_path, backend.yaml(), env=backend.env)
    a, b = tmp_path / "a", tmp_path / "b"
    files = sorted(p.relative_to(a) for p in (a / "data").rglob("*") if p.is_file())
    assert len(files) == 13  # 11 data files and 2 pointers
    assert all((b / f).read_bytes() == (a / f).read_bytes() for f in files)
    fs, base = backend.fs()
    assert len(fs.find(base)) == 14  # 12 + the changed file + its new manifest


def test_corrupt_remote_object_never_reaches_the_working_tree(tmp_path: Path, backend: Backend) -> None:
    """Credentials from the gitignored local config; a tampered object fails its hash on download."""
    local = f"remotes:\n  {backend.name}:\n    options: {json.dumps(backend.fs_options)}\n"
    a = make_project(tmp_path / "a", backend.yaml())
    write(a, {".mlci/config.local.yaml": local, ".gitignore": ".mlci/config.local.yaml\n"})
    ok(a, "data", "add", "data/table.csv", "data/imgs")
    git(a, "add", "-A")
    git(a, "commit", "-qm", "data")
    assert "config.local.yaml" not in git(a, "ls-files")
    assert moved(ok(a, "data", "push")) == 12
    digest = (a / "data/table.csv.mlci").read_text().split("hash: ")[1].split()[0]
    fs, base = backend.fs()
    fs.pipe_file(f"{base}/{digest[:2]}/{digest[2:]}", b"id,v\n0,tampered\n")
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(a), str(b))
    write(b, {".mlci/config.local.yaml": local})
    proc = run_mlci(b, "data", "pull")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"data/table.csv: object {digest[:12]} on the remote is corrupt (hash differs)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (b / "data/table.csv").exists()
    assert not DataCache.for_repo(b).has(digest)
    tmp = DataCache.for_repo(b).root / "tmp"
    assert not tmp.is_dir() or not list(tmp.iterdir())  # no partial download left
    # the rest arrived in the cache; a checkout places it and still not the corrupt file
    proc = run_mlci(b, "data", "checkout")
    assert proc.returncode == 1 and "data/table.csv: not in the local cache" in proc.stderr, proc.stderr
    assert all((b / p).read_bytes() == (a / p).read_bytes() for p in (f"data/imgs/{i:02}.bin" for i in range(10)))
    assert not (b / "data/table.csv").exists()


def test_missing_credentials_and_unreachable_endpoints_are_one_line(
    tmp_path: Path, s3_endpoint: str, gcs: Backend, azure: Backend
) -> None:
    """No credentials: exit 2 before any transfer. Endpoint down: exit 1. One line each, the same
    on S3, GCS and Azure; the slow cases (SDK retries: GCS gives up after ~35 s) run side by side."""
    refused = f"http://127.0.0.1:{CLOSED}"
    s3_creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    cases: list[tuple[str, Backend, str | None, str, int]] = [
        # (case, remote, local config, command, exit code)
        (
            "s3-no-creds",
            Backend("s3", "s3://mlci-data/cache", {"client_kwargs": {"endpoint_url": s3_endpoint}}),
            None,
            "push",
            2,
        ),
        (
            "gcs-no-creds",
            Backend("gcs", gcs.url, {"endpoint_url": gcs.env["STORAGE_EMULATOR_HOST"]}),
            "{token: google_default}",
            "push",
            2,
        ),
        ("az-no-creds", Backend("az", azure.url), None, "push", 2),
        (
            "s3-down",
            Backend("s3", "s3://mlci-data/cache", {"client_kwargs": {"endpoint_url": refused}}, s3_creds),
            None,
            "push",
            1,
        ),
        ("gcs-down", Backend("gcs", gcs.url, {}, {"STORAGE_EMULATOR_HOST": refused}), None, "push", 1),
        ("gcs-down-pull", Backend("gcs", gcs.url, {}, {"STORAGE_EMULATOR_HOST": refused}), None, "pull", 1),
    ]
    run_failing(tmp_path, cases)


def run_failing(tmp_path: Path, cases: list[tuple[str, Backend, str | None, str, int]]) -> None:
    """Each case's `mlci data push|pull` at once; each must fail on one line with its exit code."""
    procs = {}
    for case, remote, local, command, _code in cases:
        root = make_project(tmp_path / case, remote.yaml())
        if local:
            write(root, {".mlci/config.local.yaml": f"remotes:\n  {remote.name}:\n    options: {local}\n"})
        if command == "push":
            ok(root, "data", "add", "data/table.csv")
        else:  # a clone whose cache lacks the data
            write(
                root, {"data/table.csv.mlci": "path: data/table.csv\nalgo: blake3\nhash: " + "a" * 64 + "\nsize: 1\n"}
            )
            (root / "data/table.csv").unlink()
        env = {**os.environ, **remote.env, "MLCI_NO_HOOKS": "1"}
        procs[case] = subprocess.Popen(
            [sys.executable, "-m", "mlci_tui", "data", command],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for case, remote, _local, _command, code in cases:
        out, err = procs[case].communicate(timeout=240)
        lines = err.strip().splitlines()
        assert procs[case].returncode == code, (case, out, err)
        assert len(lines) == 1 and "Traceback" not in err, (case, err)
        assert f"data remote {remote.name}" in lines[0] or f"data.remotes.{remote.name}" in lines[0], (case, err)
        if code == 2:
            assert "credentials" in lines[0] or "connection_string" in lines[0], (case, err)
        else:
            assert "cannot be reached" in lines[0], (case, err)


@pytest.mark.skipif(
    not os.environ.get("MLCI_SLOW_TESTS"),
    reason="set MLCI_SLOW_TESTS=1: the Azure SDK retries a refused connection for ~3 min and adlfs has no option to shorten it",
)
def test_unreachable_azure_endpoint_is_one_line(tmp_path: Path, azure: Backend) -> None:
    down = Backend("az", azure.url, {}, {"AZURE_STORAGE_CONNECTION_STRING": azure_connection(CLOSED)})
    run_failing(tmp_path, [("az-down", down, None, "push", 1)])
