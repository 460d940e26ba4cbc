"""SQL that comes from config or the command line is data, not code.

A check in a pull request's `mlci.yaml`, a `--where`, `mlci sql`, the TUI's `sql:` filter:
each must be exactly one SELECT as it will run, after mlci wraps it (`one_select`), on a
connection that can open no file but the ones it must read, load or install no extension,
and change no setting for the rest of its life (`lock_down`). DuckDB enforces both: the
statement is parsed by DuckDB itself, and the limits are its own configuration, locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mlci_tui.errors import InputError, first_line
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    import duckdb

# How long one query from config or a flag may run, unless MLCI_SQL_SECONDS says otherwise
# (an environment variable, so a pull request's config cannot raise it).
QUERY_SECONDS = 300.0


def one_select(con: duckdb.DuckDBPyConnection, sql: str, what: str) -> None:
    """Refuse `sql` unless DuckDB parses it as exactly one SELECT (`WITH ... SELECT` included).

    `what` names where it came from (`sql`, `--where`, `datasets.orders.checks no_refunds`)."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"{what}: {display(first_line(exc))}") from None
    kinds = [str(s.type).rsplit(".", 1)[-1] for s in statements]
    if kinds != ["SELECT"]:
        found = ", ".join(kinds) or "nothing"
        raise InputError(f"{what}: only one SELECT may run here, not {found} (SQL from config or a flag is a query)")


def guard(con: duckdb.DuckDBPyConnection, *statements: str, what: str) -> None:
    """Before a user's SQL runs over the ledger's views: each statement as it will run is one
    SELECT, and the connection is locked down (the views need no file)."""
    for sql in statements:
        one_select(con, sql, what)
    lock_down(con)


# What a query over the ledger's views may hold in memory (validation sets its own limit).
QUERY_MEMORY = "4GB"


def lock_down(
    con: duckdb.DuckDBPyConnection,
    *,
    read: Iterable[Path] = (),
    directories: Iterable[Path] = (),
    memory: str | None = QUERY_MEMORY,
) -> None:
    """From now on `con` opens only the files in `read` and under `directories` (spill space),
    holds at most `memory` (None: keep the connection's own limit), loads and installs no
    extension, and accepts no `SET`. Idempotent."""
    locked = con.execute("SELECT current_setting('lock_configuration')").fetchall()  # (read to its end)
    if locked and locked[0][0]:
        return
    files = [str(Path(p)) for p in read]
    folders = [str(Path(d)).rstrip("/") + "/" for d in directories]
    if files:
        con.execute("SET allowed_paths = ?", [files])
    if folders:
        con.execute("SET allowed_directories = ?", [folders])
    if memory:
        con.execute(f"SET memory_limit = '{memory}'")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


@contextmanager
def time_limit(con: duckdb.DuckDBPyConnection, what: str, seconds: float | None = None) -> Iterator[None]:
    """Interrupt what `con` runs inside after `seconds` (MLCI_SQL_SECONDS, else QUERY_SECONDS): one line, exit 2."""
    import threading

    import duckdb

    limit = seconds if seconds is not None else float(os.environ.get("MLCI_SQL_SECONDS") or QUERY_SECONDS)
    timer = threading.Timer(limit, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException:
        raise InputError(f"{what}: stopped after {limit:g} s (MLCI_SQL_SECONDS sets the limit)") from None
    finally:
        timer.cancel()
