"""`mlci data import-url` / `mlci data update` against `dvc import-url` / `dvc update`, one run, interleaved.

A local HTTP server (127.0.0.1, in this process) serves one file per tool with an ETag and a
Last-Modified header, as object stores and most web servers do. Measured, for a file of
`--size-mib` (default 128 MiB):
  - import-url into a fresh repository (download, hash, cache, pointer);
  - update when the source did not change (mlci asks for the ETag and stops there);
  - update when the source changed (one byte rewritten before each repetition, untimed).
DVC runs from the peers venv (`python benchmarks/run_all.py --setup-peers`).

Usage: python benchmarks/bench_import_url.py [--quick] [--size-mib N] [--repeats N]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, directory=str(folder), **kw)

        def end_headers(self) -> None:
            path = folder / self.path.lstrip("/")
            if path.is_file():
                st = path.stat()
                tag = hashlib.sha1(f"{st.st_mtime_ns}-{st.st_size}".encode()).hexdigest()[:20]  # noqa: S324
                self.send_header("ETag", f'"{tag}"')
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client closing a connection early (DVC's downloader does) is not news

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def touch_source(path: Path, n: int) -> None:
    """A new version of the source: one byte changed in place, a new mtime (so a new ETag)."""
    with open(path, "r+b") as fh:
        fh.seek(n % path.stat().st_size)
        fh.write(bytes([n % 251]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))


def main() -> int:
    parser = common.base_args(__doc__ or "")
    parser.add_argument("--size-mib", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    size_mib = args.size_mib or (16 if args.quick else 128)
    repeats = args.repeats or (3 if args.quick else 5)
    dvc = common.peer_tool("dvc")
    if dvc is None:
        print("DVC is not installed: python benchmarks/run_all.py --setup-peers", file=sys.stderr)
        return 2
    work = common.fresh_dir("import-url")
    source = work / "source"
    source.mkdir()
    for name in ("mlci.bin", "dvc.bin"):
        with open(source / name, "wb") as fh:
            for _ in range(size_mib):
                fh.write(os.urandom(1 << 20))
    server, url = serve(source)
    counter = [0]

    def fresh(name: str) -> Path:
        counter[0] += 1
        path = work / f"{name}-{counter[0]}"
        common.git_init(path)
        if name == "dvc":
            common.run([dvc, "init", "-q"], path)
        return path

    def mlci_import() -> float:
        repo = fresh("mlci")
        took = common.time_cmd([common.MLCI, "data", "import-url", f"{url}/mlci.bin", "data.bin"], repo)
        shutil.rmtree(repo, ignore_errors=True)
        return took

    def dvc_import() -> float:
        repo = fresh("dvc")
        took = common.time_cmd([dvc, "import-url", f"{url}/dvc.bin", "data.bin"], repo)
        shutil.rmtree(repo, ignore_errors=True)
        return took

    mlci_repo, dvc_repo = fresh("mlci"), fresh("dvc")
    common.run([common.MLCI, "data", "import-url", f"{url}/mlci.bin", "data.bin"], mlci_repo)
    common.run([dvc, "import-url", f"{url}/dvc.bin", "data.bin"], dvc_repo)

    def mlci_update_same() -> float:
        return common.time_cmd([common.MLCI, "data", "update"], mlci_repo)

    def dvc_update_same() -> float:
        return common.time_cmd([dvc, "update", "data.bin.dvc"], dvc_repo)

    def mlci_update_changed() -> float:
        counter[0] += 1
        touch_source(source / "mlci.bin", counter[0])
        return common.time_cmd([common.MLCI, "data", "update"], mlci_repo)

    def dvc_update_changed() -> float:
        counter[0] += 1
        touch_source(source / "dvc.bin", counter[0])
        return common.time_cmd([dvc, "update", "data.bin.dvc"], dvc_repo)

    results: dict[str, Any] = {"machine": common.machine(), "size_mib": size_mib, "quick": args.quick}
    for title, variants in (
        ("import-url (fresh repo)", {"mlci": mlci_import, "dvc": dvc_import}),
        ("update, source unchanged", {"mlci": mlci_update_same, "dvc": dvc_update_same}),
        ("update, source changed", {"mlci": mlci_update_changed, "dvc": dvc_update_changed}),
    ):
        rows = common.summarise(common.interleave(variants, repeats), baseline="mlci")
        common.print_table(f"{title}: {size_mib} MiB over HTTP", rows, note="ratio = time / mlci's time")
        results[title] = rows
    server.shutdown()
    common.write_results("import_url", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
