"""Resolve a run reference: id or prefix, stage, then commit-ish (docs/contracts.md: run references)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo, commit_info, patch_id
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    import duckdb

_PREFIX = re.compile(r"^[a-z2-7]{4,26}$")
ANCESTOR_LIMIT = 2000


@dataclass(frozen=True)
class Resolved:
    run_id: str
    how: str  # "id", "stage", "commit", "tree", "patch-id", "ancestor"
    notice: str | None = None


def resolve_run(repo: Repo, con: duckdb.DuckDBPyConnection, ref: str) -> Resolved:
    if _PREFIX.match(ref):
        found = [
            r[0]
            for r in con.execute(
                "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id LIMIT 11", [ref]
            ).fetchall()
        ]
        if len(found) == 1:
            return Resolved(found[0], "id")
        if len(found) > 1:
            shown = ", ".join(f[:12] for f in found[:10])
            raise InputError(f"run prefix {ref!r} is ambiguous: {shown}{' …' if len(found) > 10 else ''}")
    stage = con.execute("SELECT run_id FROM stages WHERE stage = ?", [ref]).fetchone()
    if stage:
        return Resolved(stage[0], "stage")
    sha = repo.commit_of(ref)
    if sha is None:
        raise InputError(f"{display(ref)!r} is not a run id, a promoted stage or a commit")
    return resolve_commit(repo, con, sha, ref)


# The run that stands for a commit (a tree, a patch-id): its newest run with metrics, else its
# newest run (docs/contracts.md: run references). Reports' history and the TUI's commit plot use it too.
COMMIT_RUN_ORDER = "cardinality(metrics) = 0, time DESC, run_id"


def newest_run_for_commit(con: duckdb.DuckDBPyConnection, sha: str) -> str | None:
    row = con.execute(f"SELECT run_id FROM runs WHERE commit = ? ORDER BY {COMMIT_RUN_ORDER} LIMIT 1", [sha]).fetchone()
    return row[0] if row else None


def resolve_commit(repo: Repo, con: duckdb.DuckDBPyConnection, sha: str, ref: str | None = None) -> Resolved:
    label = display(ref or sha[:12])
    run = newest_run_for_commit(con, sha)
    if run:
        return Resolved(run, "commit")
    info = commit_info(repo, sha)
    row = con.execute(
        f"SELECT run_id, commit FROM runs WHERE tree = ? ORDER BY {COMMIT_RUN_ORDER} LIMIT 1", [info.tree]
    ).fetchone()
    if row:
        return Resolved(row[0], "tree", f"no run for {label}; using the run of {row[1][:12]}, which has the same tree")
    pid = patch_id(repo, info)
    if pid:
        row = con.execute(
            f"SELECT run_id, commit FROM runs WHERE patch_id = ? ORDER BY {COMMIT_RUN_ORDER} LIMIT 1", [pid]
        ).fetchone()
        if row:
            return Resolved(
                row[0], "patch-id", f"no run for {label}; using the run of {row[1][:12]}, which has the same patch-id"
            )
    ancestors = repo.text("rev-list", f"--max-count={ANCESTOR_LIMIT}", sha).split()
    if len(ancestors) > 1:
        con.execute("CREATE OR REPLACE TEMP TABLE _anc (sha VARCHAR, pos INTEGER)")
        con.executemany("INSERT INTO _anc VALUES (?, ?)", [(a, i) for i, a in enumerate(ancestors[1:], 1)])
        row = con.execute(
            "SELECT r.run_id, a.sha, a.pos FROM runs r JOIN _anc a ON r.commit = a.sha "
            f"ORDER BY a.pos, {COMMIT_RUN_ORDER} LIMIT 1"
        ).fetchone()
        if row:
            return Resolved(
                row[0],
                "ancestor",
                f"no run for {label}; using the nearest ancestor with one, {row[1][:12]} ({row[2]} back)",
            )
    raise InputError(f"no run recorded for {label} or its ancestors")
