"""Data validation: declared dataset schemas compiled to DuckDB SQL, profiles, drift, reports.

Nothing here is imported by the hook path until a staged change touches a dataset.
"""
