"""The pre-commit side of validation: staged datasets, read from the index, block on error."""

from __future__ import annotations

import sys
from typing import Any

from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo
from mlci_tui.validate import source
from mlci_tui.validate.spec import load_specs


def affected(datasets: dict[str, Any], staged: list[str], repo: Repo | None = None) -> list[str]:
    """Names of the datasets a commit touches (file, pointer, or a file in their folder); all
    when mlci.yaml is staged. A dataset reached only through a staged `dvc.lock` counts when
    that lock's record of it changed (with `repo`; without it, or when a lock cannot be read,
    it counts)."""
    specs = load_specs(datasets)
    if "mlci.yaml" in staged:
        return list(specs)
    locks = [p for p in staged if p.split("/")[-1] == "dvc.lock"]
    others = [p for p in staged if p not in locks]
    names = []
    changed: set[str] | None = None
    for name, spec in specs.items():
        if source.touches(spec.path, others):
            names.append(name)
        elif locks and source.touches(spec.path, locks):
            if changed is None:
                changed = _lock_changes(repo, locks) if repo is not None else {""}
            if "" in changed or any(_overlaps(spec.path, out) for out in changed):
                names.append(name)
    return names


def _overlaps(path: str, out: str) -> bool:
    return path == out or path.startswith(out + "/") or out.startswith(path + "/")


def _lock_changes(repo: Repo, locks: list[str]) -> set[str]:
    """The outputs whose record differs between HEAD's and the index's `dvc.lock`s; {""}
    (everything) when a lock cannot be read."""
    from mlci_tui.data.dvc import read_dvc_lock

    changed: set[str] = set()
    for lock in locks:
        records = []
        for spec in (f"HEAD:{lock}", f":{lock}"):
            proc = repo.run("cat-file", "blob", spec, check=False)
            try:
                text = proc.stdout.decode("utf-8") if proc.returncode == 0 else ""
                records.append({(p.path, p.hash, p.is_dir) for p in read_dvc_lock(text, lock)} if text else set())
            except (MlciError, UnicodeDecodeError):
                return {""}
        changed |= {path for path, _h, _d in records[0] ^ records[1]}
    return changed


def validate_staged(repo: Repo, datasets: dict[str, Any], staged: list[str]) -> int:
    names = affected(datasets, staged, repo)
    if not names:
        return 0
    # lazy: the engine and the ledger's read layer (~30 ms), once a staged file touches a dataset
    from mlci_tui.validate.report import dataset_lines
    from mlci_tui.validate.run import Validator

    v = Validator(repo, datasets, source.INDEX)
    specs = [v.specs[n] for n in names]
    # a dataset removed from the index (deleted, or only in the working tree) has nothing to check
    present = source.present(repo, source.INDEX, [s.path for s in specs])
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
