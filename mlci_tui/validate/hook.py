"""The pre-commit side of validation: staged datasets, read from the index, block on error."""

from __future__ import annotations

import sys
from typing import Any

from mlci_tui.gitio import Repo
from mlci_tui.validate import source


def affected(datasets: dict[str, Any], staged: list[str]) -> list[str]:
    """Names of the datasets a commit touches (their file or pointer); all when mlci.yaml is staged."""
    from mlci_tui.validate.spec import load_specs

    specs = load_specs(datasets)
    if "mlci.yaml" in staged:
        return list(specs)
    touched = set(staged)
    return [n for n, s in specs.items() if s.path in touched or s.path + source.POINTER_SUFFIX in touched]


def validate_staged(repo: Repo, datasets: dict[str, Any], staged: list[str]) -> int:
    from mlci_tui.validate.report import dataset_lines
    from mlci_tui.validate.run import Validator

    names = affected(datasets, staged)
    if not names:
        return 0
    v = Validator(repo, datasets, source.INDEX)
    specs = [v.specs[n] for n in names]
    # a dataset removed from the index (deleted, or only in the working tree) has nothing to check
    present = {p for p in _index_paths(repo, [s.path for s in specs])}
    specs = [s for s in specs if s.path in present or s.path + source.POINTER_SUFFIX in present]
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


def _index_paths(repo: Repo, paths: list[str]) -> list[str]:
    wanted = []
    for p in paths:
        wanted += [p, p + source.POINTER_SUFFIX]
    proc = repo.run("ls-files", "-z", "--", *wanted, check=False)
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
