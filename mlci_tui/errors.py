"""Errors that reach the user as one line and an exit code, never a traceback."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the thing checked failed: a gate rule, a dataset, corrupt data
EXIT_USAGE = 2  # usage or config error, bad input


class MlciError(Exception):
    """An expected failure: printed as `mlci: <message>` with its exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(MlciError):
    """Bad user input: a file, key or row that cannot be used (exit 2)."""


class ConfigError(MlciError):
    """mlci.yaml (or [tool.mlci]) is invalid (exit 2)."""


class CheckFailed(MlciError):
    """The thing checked failed (exit 1)."""

    exit_code = EXIT_FAILED


class GitError(MlciError):
    """A git command failed in a way the user must see."""


def first_line(exc: BaseException, *, with_type: bool = False, limit: int = 200) -> str:
    """A library's error in the one line mlci prints: its first line, cut at `limit` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0][:limit] if lines else ""
    if with_type:
        return f"{type(exc).__name__}: {text}".rstrip(": ")
    return text or type(exc).__name__
