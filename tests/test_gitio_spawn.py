"""gitio starts git without `subprocess` (posix_spawnp + poll): what `subprocess.run` gave must hold."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from mlci_tui import gitio
from mlci_tui.errors import GitError


def _ignored_signals() -> int:
    """The SigIgn mask of a process git starts (a shell alias reading its own /proc status)."""
    out = gitio.git(["-c", "alias.sig=!grep SigIgn /proc/self/status", "sig"]).stdout.decode()
    return int(out.split()[1], 16)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_git_does_not_inherit_pythons_ignored_sigpipe() -> None:
    # Python ignores SIGPIPE and an ignored signal survives exec: git must get the default back
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    mask = _ignored_signals()
    assert not mask & (1 << (signal.SIGPIPE - 1)) and not mask & (1 << (signal.SIGXFSZ - 1)), hex(mask)


def test_input_output_and_errors_round_trip(tmp_path: Path) -> None:
    gitio.git(["init", "-q", str(tmp_path)])
    body = b"x" * 300_000  # more than a pipe holds: written while stdout is read
    oid = gitio.git(["hash-object", "-w", "--stdin"], tmp_path, input=body).stdout.decode().strip()
    assert gitio.git(["cat-file", "blob", oid], tmp_path).stdout == body
    failed = gitio.git(["cat-file", "blob", "0" * 40], tmp_path, check=False)
    assert failed.returncode == 128 and b"0000000000000000000000000000000000000000" in failed.stderr
    with pytest.raises(GitError):
        gitio.git(["cat-file", "blob", "0" * 40], tmp_path)
