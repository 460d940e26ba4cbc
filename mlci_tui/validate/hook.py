"""The pre-commit side of validation: staged datasets, read from the index, block on error."""

from __future__ import annotations

import sys
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.validate import source


def affected(datasets: dict[str, Any], staged: list[str]) -> list[str]:
    """Names of the datasets a commit touches (file, pointer, or a file in their folder); all when mlci.yaml is staged."""
    from mlci_tui.validate.spec import load_specs

    specs = load_specs(datasets)
    if "mlci.yaml" in staged:
        return list(specs)
    return [n for n, s in specs.items() if source.touches(s.path, staged)]


def validate_staged(repo: Repo, datasets: dict[str, Any], staged: list[str]) -> int:
    from mlci_tui.validate.report import dataset_lines
    from mlci_tui.validate.run import Validator

    names = affected(datasets, staged)
    if not names:
        return 0
    v = Validator(repo, datasets, source.INDEX)
    specs = [v.specs[n] for n in names]
    # a dataset removed from the index (deleted, or only in the working tree) has nothing to check
    present = source.in_index(repo, [s.path for s in specs])
    specs = [s for s in specs if s.path in present]
    results = v.validate_all(specs)
    for r in results:
        if r.status != "pass":
            for line in dataset_lines(r):
                print(f"mlci: {line}", file=sys.stderr)
    if any(r.failed for r in results):
        print(
            "mlci: commit blocked: fix the data above (or the schema in mlci.yaml); "
            "`git commit --no-verify` skips the check once, CI's `mlci data validate` still runs it",
            file=sys.stderr,
        )
        return 1
    return 0
