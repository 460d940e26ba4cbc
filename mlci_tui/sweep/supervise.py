"""The supervisor of one trial's command: `python -I -S supervise.py COMMAND`.

The runner starts it in a new session, so it leads a process group; the command's shell
and everything the command starts stay in that group. Whatever ends the trial ends the
whole group: the worker that started it going away (even by SIGKILL, seen as a change of
parent pid, so a lost Dask worker leaves no `python train.py` behind), SIGTERM/SIGINT/SIGHUP
sent to it (timeout, cancel, Ctrl-C), or the command exiting (its leftover background
children are stopped too). Its exit code is the command's (128 + N for a signal).

Run by path with `-I -S`: nothing but `os` and `signal` is imported, so it costs a few
milliseconds, and it never imports mlci_tui.
"""

from __future__ import annotations

import os
import signal
import sys

WATCHED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
CHECK_PARENT = 0.1  # seconds between two looks at the parent pid
GRACE = 3.0  # seconds between SIGTERM and SIGKILL to the group


def signal_group(child: int, sig: int) -> None:
    """`sig` to this process group when this process leads one (as the runner starts it), else to the command."""
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(0, sig)
        else:
            os.kill(child, sig)
    except OSError:
        pass


def kill_group(child: int) -> None:
    """SIGTERM the group, wait up to GRACE for the command, then SIGKILL what is left (and this process)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal_group(child, signal.SIGTERM)
    waited = 0.0
    while waited < GRACE:
        try:
            done, _status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            break
        if done:
            break
        signal.sigtimedwait([signal.SIGCHLD], 0.05)
        waited += 0.05
    signal_group(child, signal.SIGKILL)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> int:
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    child = os.fork()
    if child == 0:  # the command: default signal mask, same process group
        for sig in WATCHED[1:]:  # an ignored SIGINT (a pool worker's) is not the command's
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        try:
            os.execv("/bin/sh", ["/bin/sh", "-c", argv[0]])
        finally:
            os._exit(127)
    while True:
        got = signal.sigtimedwait(WATCHED, CHECK_PARENT)
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal_group(child, signal.SIGTERM)  # leftover background children do not outlive the trial
            return exit_code(status)
        if (got is not None and got.si_signo != signal.SIGCHLD) or os.getppid() != parent:
            kill_group(child)
            return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
