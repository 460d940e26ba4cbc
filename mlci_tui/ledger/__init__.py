"""The experiment ledger: immutable events on `refs/mlci/ledger`, queried through DuckDB."""
