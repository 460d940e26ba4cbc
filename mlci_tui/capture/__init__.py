"""Capture: read params and metrics files (`readers`), build run records (`build`), write them to the ledger (`write`).

Empty on purpose: the post-commit hook imports `capture.write` alone, and nothing here may load more.
"""
