"""What is promoted where: the current run of each stage, or every promotion (`mlci stages`, `promote`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci_tui.ledger.query.rows import first_row

if TYPE_CHECKING:
    import duckdb


@dataclass
class Promotion:
    stage: str
    run_id: str | None
    commit: str | None
    time: Any
    model_hash: str | None
    by: str | None


def promotions(con: duckdb.DuckDBPyConnection, *, history: bool) -> list[Promotion]:
    """By stage, newest first; with `history`, every promotion, else the current one per stage."""
    view = "promotions" if history else "stages"
    rows = con.execute(
        f"""SELECT p.stage, p.run_id, r.commit, p.time, p.model_hash, p."by" FROM {view} p
            LEFT JOIN runs r USING (run_id) ORDER BY p.stage, p.time DESC"""
    ).fetchall()
    return [Promotion(*row) for row in rows]


def promotion_count(con: duckdb.DuckDBPyConnection, stage: str) -> int:
    """How many times anything was promoted to `stage` (`promote --tag` names the git tag STAGE/N+1)."""
    return int(first_row(con, "SELECT count(*) FROM promotions WHERE stage = ?", [stage])[0])
