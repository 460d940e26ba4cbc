"""Hyperparameter sweeps: a queue of trials kept in the ledger, run by an executor.

`spec` reads and checks a sweep definition, `strategies` turns its params space into
trials (grid, random, tpe), `events` builds the ledger events and folds them into each
trial's state, `queue` reads that state and keeps the local leases, `runner` runs one
trial in its own git worktree, `local` and `dask_executor` execute, and `operations` is
what the front ends call: create, start, read, cancel, retry, and the CI matrix and work.
"""
