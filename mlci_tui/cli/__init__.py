"""The `mlci` command line: one module per command group, each with its parser and thin handlers (`main` dispatches)."""
