"""Share the ledger: fetch into `refs/mlci-remote/<remote>/ledger`, union-merge, push.

Never sets `remote.*.push` (that would stop a plain `git push` from pushing the branch),
never force-fetches over local records, and pushes with `--no-verify` so the user's own
pre-push hooks do not run again for the ledger ref.
"""

from __future__ import annotations

import random
import re
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlci_tui.errors import CheckFailed, MlciError
from mlci_tui.gitio import Repo, git
from mlci_tui.ledger.records import target_of
from mlci_tui.ledger.store import LEDGER_REF, LedgerStore, remote_ref
from mlci_tui.ledger.verify import incoming_verdict

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

PUSH_ATTEMPTS = 8  # with the backoff below: about 13 s of waiting at most, on average
_NO_ENV = {"GIT_TERMINAL_PROMPT": "0", "MLCI_NO_HOOKS": "1"}


class RewrittenLedger(MlciError):
    exit_code = 1


@dataclass
class SyncResult:
    remote: str
    fetched: str | None = None
    local_tip: str | None = None
    pushed: bool = False
    notices: list[str] = field(default_factory=list)


def _incoming_ref(remote: str) -> str:
    return f"refs/mlci-remote/{remote}/incoming"


def check_remote_name(remote: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", remote) or ".." in remote:
        raise MlciError(f"remote {remote!r}: not a remote name (see `git remote`)")
    return remote


def fetch(repo: Repo, remote: str) -> str | None:
    """The remote's ledger tip (fetched), or None when the remote has no ledger yet.

    Fetched into a ref of this process's own, then shown at `refs/mlci-remote/<remote>/incoming`:
    two pulls of one clone at once (a sweep's push and the user's) each read the tip they
    fetched, never the other's older one (which read as a remote that lost records)."""
    import os

    own = f"{_incoming_ref(remote)}-{os.getpid()}"
    proc = git(
        ["fetch", "--no-tags", "--no-recurse-submodules", "--quiet", remote, f"+{LEDGER_REF}:{own}"],
        repo.root,
        env=_NO_ENV,
        check=False,
    )
    try:
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            if "couldn't find remote ref" in err or "could not find remote ref" in err.lower():
                return None
            last = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
            raise MlciError(f"ledger fetch from {remote} failed: {last}")
        kind = repo.text("cat-file", "-t", own, check=False).strip()
        if kind != "commit":  # a blob or a tree would become this clone's ledger, and every write would fail
            raise CheckFailed(
                f"ledger of {remote}: {LEDGER_REF} is a {kind or 'missing object'}, not a commit; refused"
            )
        tip = repo.rev_parse(own)
        if tip is not None:  # for `git log` when a pull is refused; another pull may write it too
            git(["update-ref", _incoming_ref(remote), tip], repo.root, check=False)
        return tip
    finally:
        git(["update-ref", "-d", own], repo.root, check=False)


class Configured:
    """`allowed_signers` as the repository's mlci.yaml says (`ledger.trust.allowed_signers`)."""


CONFIGURED = Configured()


def pull(
    repo: Repo, remote: str, *, force_merge: bool = False, allowed_signers: Path | None | Configured = CONFIGURED
) -> SyncResult:
    """Fetch the remote's ledger, check what it brings, union-merge it. `allowed_signers`: the
    allowed-signers file whose keys' signed compactions have their segments taken as checked
    (docs/ledger.md, "Signed compactions"); None: every file is checked."""
    check_remote_name(remote)
    store = LedgerStore(repo)
    result = SyncResult(remote)
    # read before fetching: another process of this clone may push meanwhile and record a tip
    # newer than the one fetched here, which would read as a remote that lost records
    last_seen = repo.rev_parse(remote_ref(remote))
    fetched = fetch(repo, remote)
    result.fetched = fetched
    if fetched is None:
        result.local_tip = store.tip()
        return result
    if last_seen and last_seen != fetched and not repo.is_ancestor(last_seen, fetched):
        _check_only_grew(store, remote, last_seen, fetched, force_merge, result)

    def trusted() -> set[tuple[str, str]]:  # asked only when segment files come: a signature check costs ~10 ms
        signers = _configured_signers(repo) if isinstance(allowed_signers, Configured) else allowed_signers
        if signers is None:
            return set()
        from mlci_tui.ledger.signed_compaction import trusted_segment_files

        files, said, warnings = trusted_segment_files(repo, fetched, signers)
        result.notices.extend(said)
        for line in warnings:
            warn(line)
        return files

    _refuse_invalid(store, fetched, remote, trusted)  # whatever --force-merge says
    result.local_tip = store.union_merge(fetched, f"mlci: merge ledger from {remote}")
    repo.run("update-ref", remote_ref(remote), fetched)
    return result


def _configured_signers(repo: Repo) -> Path | None:
    from mlci_tui import config as config_mod
    from mlci_tui.ledger.signing import allowed_signers

    cfg = config_mod.load(repo.root)
    return allowed_signers(cfg.root, cfg.section("ledger")["trust"])


def _check_only_grew(
    store: LedgerStore, remote: str, last_seen: str, fetched: str, force_merge: bool, result: SyncResult
) -> None:
    """The remote's ledger no longer descends from the one last seen there: it was compacted (a
    compaction drops the history) or rewritten. Compacted is fine when every record the last
    seen ledger held is still there (as an event file, in a segment, or moved aside by
    `fsck --repair`), or was redacted by a tombstone the new ledger holds; otherwise records
    were dropped, and nothing is merged unless `--force-merge`."""
    if not store.repo.has_object(last_seen):  # a shallow or pruned clone: nothing to compare with
        result.notices.append("the remote ledger's previous tip is not here: skipped the check that it only grew")
        return
    lost = store.record_ids(last_seen) - store.record_ids(fetched)
    if lost:  # a compaction drops a redacted record and what refers to it (its tags, notes)
        redacted = store.redacted_ids(fetched)
        lost -= redacted
        bodies = store.bodies(last_seen, lost) if lost else {}
        lost -= {rid for rid, body in bodies.items() if target_of(body) in redacted}
    if not lost:
        result.notices.append(f"the ledger on {remote} was compacted; every record seen there before is still there")
        return
    if force_merge:
        result.notices.append(f"the ledger on {remote} dropped {len(lost)} record(s); merged anyway (--force-merge)")
        return
    example = min(lost)
    raise RewrittenLedger(
        f"the ledger on {remote} was rewritten: {len(lost)} record(s) seen there at {last_seen[:12]} are gone "
        f"from {fetched[:12]} (e.g. {example}) and were not redacted. Nothing was merged; inspect it with "
        f"`git log {_incoming_ref(remote)}` and rerun with --force-merge to union it anyway"
    )


def _refuse_invalid(store: LedgerStore, fetched: str, remote: str, trusted: Callable[[], set[tuple[str, str]]]) -> None:
    """Every file the remote would add or change is checked as fsck checks it, before the merge:
    one bad file from a remote would otherwise reach every clone that pulls. Bad files this
    clone already holds do not block the pull (`ledger fsck` names them); warnings (records of
    a newer mlci) are printed and the pull goes on."""
    from mlci_tui.sanitize import display  # a remote's paths reach the terminal

    verdict = incoming_verdict(store, fetched, trusted)
    for line in verdict.warnings[:5]:
        warn(display(f"ledger of {remote}: {line}"))
    problems = verdict.lines()
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CheckFailed(f"ledger of {remote} refused, nothing merged: {len(problems)} invalid file(s): {shown}")


def push(
    repo: Repo, remote: str, *, force_merge: bool = False, allowed_signers: Path | None | Configured = CONFIGURED
) -> SyncResult:
    """Pull, merge, push; a rejected push (someone pushed meanwhile) fetches and retries."""
    check_remote_name(remote)
    store = LedgerStore(repo)
    result = SyncResult(remote)
    for attempt in range(PUSH_ATTEMPTS):
        pulled = pull(repo, remote, force_merge=force_merge, allowed_signers=allowed_signers)
        result.notices.extend(pulled.notices)
        tip = store.tip()
        result.local_tip = tip
        if tip is None or tip == pulled.fetched:
            return result
        # after a compaction the tip no longer descends from the remote's: replace it, but only
        # if the remote still holds what was just merged (a lease), never a push seen by no one
        lease = (
            []
            if pulled.fetched is None or repo.is_ancestor(pulled.fetched, tip)
            else [f"--force-with-lease={LEDGER_REF}:{pulled.fetched}"]
        )
        proc = git(
            ["push", "--no-verify", "--porcelain", "--quiet", *lease, remote, f"{tip}:{LEDGER_REF}"],
            repo.root,
            env=_NO_ENV,
            check=False,
        )
        if proc.returncode == 0:
            repo.run("update-ref", remote_ref(remote), tip)
            result.pushed = True
            return result
        out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        refused = [line.split("\t")[-1] for line in out.splitlines() if "[remote rejected]" in line]
        if refused and any(word in refused[0] for word in ("declined", "denied", "prohibited", "not allowed")):
            # a hook or a permission refuses the ref itself: retrying cannot help ("failed to update
            # ref" is a race with another pusher, retried below)
            raise MlciError(f"ledger push to {remote} failed: {refused[0]}")
        if "rejected" in out or "fetch first" in out or "non-fast-forward" in out or "stale info" in out:
            _backoff(attempt)  # many pushers at once (a CI matrix): spread the retries out
            continue
        last = out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}"
        raise MlciError(f"ledger push to {remote} failed: {last}")
    raise MlciError(f"ledger push to {remote}: still rejected after {PUSH_ATTEMPTS} attempts")


def _backoff(attempt: int) -> None:
    """Jittered, growing sleep between push attempts (0.1-0.3 s, then doubling, at most ~5 s)."""
    time.sleep(random.uniform(0.1, 0.3) * min(2**attempt, 16))


def warn(message: str) -> None:
    print(f"mlci: warning: {message}", file=sys.stderr)
