"""The typed run record is the one field list: the cache's columns, listings and newer fields all meet it."""

from __future__ import annotations

import dataclasses

from mlci_tui.ledger.cache import RUN_COLUMNS
from mlci_tui.ledger.query.run import LISTED_FIELDS, Run


def test_every_cache_column_and_listed_field_is_a_field_of_the_run_record() -> None:
    fields = {f.name for f in dataclasses.fields(Run)}
    assert {name for name, _type in RUN_COLUMNS} <= fields
    assert set(LISTED_FIELDS) <= fields


def test_a_column_written_by_a_newer_mlci_is_kept_in_extra() -> None:
    run = Run.from_row(
        {"run_id": "a" * 26, "kind": "commit", "metrics": {"acc": 0.5}, "datasets": '{"d.csv": "h"}', "gpu": "a100"}
    )
    assert run.extra == {"gpu": "a100"}
    assert run.metrics == {"acc": 0.5} and run.datasets == {"d.csv": "h"} and run.stale is False
    assert run.listed()["run_id"] == "a" * 26 and "gpu" not in run.listed()
