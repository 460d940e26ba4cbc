"""Importers: bring a team's history into the ledger (DVC projects, MLflow stores).

Every importer reads without changing the source (git objects, never a checkout; a SQLite
store opened read-only), builds `run` records the way `mlci_tui.capture.build` does, gives each a
deterministic id so a re-run adds nothing, and appends in batches.
"""
