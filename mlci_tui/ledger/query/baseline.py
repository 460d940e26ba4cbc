"""The baseline a candidate is compared with: one order for `mlci gate`, `diff`, reports and the TUI's Δ columns.

`--base` (or a run pinned in the TUI), then `gate.baseline` in mlci.yaml, then the stage
`deployed` if anything was promoted to it (docs/contracts.md: gate baselines).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlci_tui.config import Config
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query.rows import first_row
from mlci_tui.ledger.resolve import Resolved, resolve_run

if TYPE_CHECKING:
    import duckdb

DEFAULT_STAGE = "deployed"


def resolve_baseline(
    repo: Repo,
    con: duckdb.DuckDBPyConnection,
    cfg: Config,
    base: str | None,
    *,
    stages: dict[str, str] | None = None,
) -> Resolved | None:
    """The baseline run, or None when there is none; `how` says which rule chose it.
    `stages` (stage -> run id), when the caller has read them already, saves a query."""
    if base:
        return resolve_run(repo, con, base)
    configured = cfg.section("gate")["baseline"]
    if configured:
        return resolve_run(repo, con, configured)
    if stages is not None:
        promoted = stages.get(DEFAULT_STAGE)
        return Resolved(promoted, "stage") if promoted else None
    row = first_row(con, "SELECT run_id FROM stages WHERE stage = ?", [DEFAULT_STAGE])
    return Resolved(row[0], "stage") if row else None
