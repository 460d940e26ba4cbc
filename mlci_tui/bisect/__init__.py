"""`mlci bisect`: which commit moved a metric, from the ledger (change points) or by training
the commits the search needs (git-bisect style, through the sweep machinery). docs/bisect.md."""
