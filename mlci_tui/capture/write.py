"""Capture commits into the ledger: the post-commit hook, pre-push back-fill, `mlci capture`.

Each commit is read from its own blobs with the config it carried, gets a deterministic id,
and is skipped when the ledger already has it; the new runs go in as one ledger commit.
"""

from __future__ import annotations

import sys

from mlci_tui.capture.build import current_branch
from mlci_tui.capture.commit import capture_commit, load_config, read_commit, resolve_commit
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.importers.objects import ObjectReader
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.values import Plain

TYPE_CHECKING = False  # not `from typing import ...`: the post-commit hook's path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class CaptureReport(Plain):
    __slots__ = ("added", "present", "empty", "warnings")

    def __init__(
        self,
        added: list[dict[str, Any]] | None = None,
        present: list[str] | None = None,  # commits the ledger already had
        empty: list[str] | None = None,  # commits with no params or metrics
        warnings: list[str] | None = None,
    ) -> None:
        self.added = [] if added is None else added
        self.present = [] if present is None else present
        self.empty = [] if empty is None else empty
        self.warnings = [] if warnings is None else warnings


def display(text: str) -> str:
    """`sanitize.display`, imported when there is something to show: its patterns cost the
    post-commit hook ~2 ms when the capture has no warning."""
    from mlci_tui.sanitize import display as shown

    return shown(text)


def warn(message: str) -> None:
    print(f"mlci: warning: {display(message)}", file=sys.stderr)


def expand_revs(
    repo: Repo, revs: Sequence[str], range_spec: str | None = None, objects: ObjectReader | None = None
) -> list[str]:
    shas: list[str] = []
    for rev in revs:
        sha = resolve_commit(objects, rev) if objects is not None else repo.commit_of(rev)
        if sha is None:
            raise InputError(f"{display(rev)!r}: not a commit in this repository")
        shas.append(sha)
    if range_spec:
        if ".." not in range_spec:
            raise InputError(f"--range {display(range_spec)!r}: expected A..B")
        proc = repo.run("rev-list", "--reverse", range_spec, "--", check=False)
        if proc.returncode != 0:
            raise InputError(f"--range {display(range_spec)!r}: not a valid range of commits")
        shas += proc.stdout.decode().split()
    return list(dict.fromkeys(shas))


def run_ids(sha: str) -> tuple[str, str]:
    """The ids a commit's run may have: its capture's (which `mlci import dvc` writes too),
    then the one imports wrote before they shared it (`derived_id("import", sha)`)."""
    return records.derived_id("commit", sha), records.derived_id("import", sha)


def captured(
    store: LedgerStore, shas: Sequence[str], objects: ObjectReader | None = None, tip: str | None = None
) -> set[str]:
    """The commits among `shas` that already have their run, captured or imported (looked up
    through `objects` when given; `tip`: the ledger's, already read)."""
    ids = {sha: run_ids(sha) for sha in shas}
    if tip is None:
        tip = resolve_commit(objects, store.ref) if objects is not None else store.tip()
    if tip is None:
        return set()  # no ledger yet
    present = store.has_ids([i for pair in ids.values() for i in pair], tip, objects.read if objects else None)
    return {sha for sha, pair in ids.items() if present.intersection(pair)}


def capture_shas(
    repo: Repo,
    shas: Sequence[str],
    *,
    branch: str | None = None,
    quiet: bool = False,
    head: str | None = None,
    objects: ObjectReader | None = None,
) -> CaptureReport:
    """Capture each of `shas` the ledger lacks, as one append; every read goes through `objects`
    (one `git cat-file --batch`; opened here when not given)."""
    if objects is None:
        with ObjectReader(repo) as own:
            return capture_shas(repo, shas, branch=branch, quiet=quiet, head=head, objects=own)
    store = LedgerStore(repo)
    report = CaptureReport()
    tip = resolve_commit(objects, store.ref)  # one read: the lookups and the append's first attempt build on it
    present = captured(store, shas, objects, tip)
    new_records = []
    for sha in shas:
        if sha in present:
            report.present.append(sha)
            continue
        cfg, config_warnings = load_config(repo, objects, sha)
        report.warnings.extend(config_warnings)
        info = read_commit(repo, objects, sha)
        record, warnings = capture_commit(repo, objects, cfg, info, branch=branch if sha == head else None)
        report.warnings.extend(f"{sha[:12]}: {w}" for w in warnings)
        if record is None:
            report.empty.append(sha)
        else:
            new_records.append(record)
    if new_records:
        store.append(new_records, expected_tip=tip)
        report.added = new_records
    if not quiet or report.warnings:
        for message in report.warnings:
            warn(message)
    return report


def capture_revs(
    repo: Repo, revs: Sequence[str], *, range_spec: str | None = None, branch_of_head: bool = False, quiet: bool = False
) -> CaptureReport:
    with ObjectReader(repo) as objects:
        shas = expand_revs(repo, revs, range_spec, objects)
        head = resolve_commit(objects, "HEAD")
        branch = current_branch(repo) if head in shas else None
        return capture_shas(repo, shas, branch=branch, quiet=quiet, head=head, objects=objects)


def backfill(
    repo: Repo, local_shas: Sequence[str], remote: str, remote_shas: Sequence[str], *, limit: int
) -> CaptureReport:
    """Commits being pushed (and local branch commits the remote lacks) that have no run yet.

    The pre-commit framework passes only the first pushed ref, so besides the pushed shas we
    walk every local branch down to what the remote is known to have.
    """
    args = [
        "rev-list",
        "--ignore-missing",
        f"--max-count={limit}",
        *local_shas,
        "--branches",
        "--not",
        *remote_shas,
        f"--remotes={remote}",
    ]
    proc = repo.run(*args, check=False)
    shas = list(reversed(proc.stdout.decode().split()))
    if not shas:
        return CaptureReport()
    present = captured(LedgerStore(repo), shas)
    missing = [sha for sha in shas if sha not in present]
    if not missing:
        return CaptureReport(present=shas)
    return capture_shas(repo, missing, quiet=True)
