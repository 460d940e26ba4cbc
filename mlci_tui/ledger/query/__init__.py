"""The read core: every front end (CLI, TUI, reports, gate, export, CI) reads the ledger through here.

One rule each, in one place: the `Run` record and its field list (`run`), the `file:name`
key rule (`names`), the sort order and its tie-break (`sort`), the baseline order
(`baseline`), the runs view with filter and sort (`runs_view`, `filter`), one run in full
(`detail`), runs side by side (`compare`), series for plots (`series`). Every function
takes an open cache connection or opens one through `ledger.held.open_cache`.

Empty on purpose: importing the package loads nothing.
"""
