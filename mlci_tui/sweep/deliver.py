"""Results of CI jobs and remote workers that contention cannot drop: per-trial incoming refs.

A trial job first pushes its ledger tip to a ref of its own on the remote,
`refs/mlci/incoming/<sweep id>/<trial id>-<attempt>`: no other job writes that ref, so
the push never races. It then tries the shared ledger ref (`ledger push`, with its
jittered retries); when that push wins, the incoming ref is deleted. When it loses (30
matrix jobs finishing at once), the result is still safe on the remote, and
`collect` (`mlci sweep collect`, the sweep workflow's last job) folds every incoming ref
into the ledger: each is checked as a pull checks a remote's ledger, union-merged, the
ledger pushed, and only then the folded refs deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo, git
from mlci_tui.ledger import sync
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.ledger.verify import incoming_verdict

INCOMING = "refs/mlci/incoming/"
_NO_ENV = {"GIT_TERMINAL_PROMPT": "0", "MLCI_NO_HOOKS": "1"}


def incoming_ref(sweep_id: str, tid: str, attempt: int) -> str:
    return f"{INCOMING}{sweep_id}/{tid}-{attempt}"


def _fetched_ref(remote: str, ref: str) -> str:
    """Where an incoming ref is fetched to in this clone (beside sync's refs/mlci-remote/<remote>/ledger)."""
    return f"refs/mlci-remote/{remote}/trials/{ref.removeprefix(INCOMING)}"


def push_incoming(repo: Repo, remote: str, ref: str) -> None:
    """The local ledger tip to `ref` on the remote (a ref no other job writes: no race)."""
    tip = LedgerStore(repo).tip()
    if tip is None:
        raise MlciError("no ledger to push")
    proc = git(
        ["push", "--no-verify", "--quiet", "--force", remote, f"{tip}:{ref}"], repo.root, env=_NO_ENV, check=False
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MlciError(f"pushing the trial's result to {remote} {ref} failed: {err[-1] if err else proc.returncode}")


def delete_remote_refs(repo: Repo, remote: str, refs: list[str]) -> bool:
    if not refs:
        return True
    proc = git(
        ["push", "--no-verify", "--quiet", remote, *[f":{r}" for r in refs]], repo.root, env=_NO_ENV, check=False
    )
    return proc.returncode == 0


def deliver(repo: Repo, remote: str, ref: str) -> list[str]:
    """Make a job's result durable on the remote, then try to land it in the shared ledger; what to say."""
    push_incoming(repo, remote, ref)
    try:
        result = sync.push(repo, remote)
    except MlciError as exc:
        return [
            f"ledger push to {remote} did not land ({exc}); the result is safe at {ref} "
            "and the sweep's collect job (`mlci sweep collect`) merges it"
        ]
    delete_remote_refs(repo, remote, [ref])
    return result.notices


@dataclass
class Collected:
    merged: list[str] = field(default_factory=list)  # incoming refs folded into the ledger
    refused: list[str] = field(default_factory=list)  # refs left on the remote, with why
    pushed: bool = False


def collect(repo: Repo, remote: str, sweep_id: str | None = None) -> Collected:
    """Fold the remote's incoming trial refs (of one sweep, or all) into the ledger (pulled first by
    the caller) and push it."""
    out = fold(repo, remote, sweep_id)
    out.pushed = sync.push(repo, remote).pushed  # fails (and keeps the refs) when the push does
    forget(repo, remote, out.merged)
    return out


def fold(repo: Repo, remote: str, sweep_id: str | None = None) -> Collected:
    """Fetch the remote's incoming trial refs (of one sweep, or all), check each as a pull checks a
    remote's ledger and union-merge the good ones into the local ledger; nothing is pushed or
    deleted (`ledger pull` stops here; `collect` and `ledger push` push, then `forget`)."""
    sync.check_remote_name(remote)
    pattern = f"{INCOMING}{sweep_id}/*" if sweep_id else f"{INCOMING}*"
    listed = git(["ls-remote", remote, pattern], repo.root, env=_NO_ENV, check=False)
    if listed.returncode != 0:
        raise MlciError(f"cannot list {pattern} on {remote}")
    refs = [line.split("\t", 1)[1] for line in listed.stdout.decode().splitlines() if "\t" in line]
    out = Collected()
    if refs:
        specs = [f"+{r}:{_fetched_ref(remote, r)}" for r in refs]
        git(["fetch", "--quiet", "--no-tags", remote, *specs], repo.root, env=_NO_ENV)
    store = LedgerStore(repo)
    for ref in refs:
        local = _fetched_ref(remote, ref)
        tip = repo.rev_parse(local)
        if tip is None or repo.text("cat-file", "-t", tip, check=False).strip() != "commit":
            out.refused.append(f"{ref}: not a commit")
            continue
        problems = incoming_verdict(store, tip).lines()
        if problems:
            out.refused.append(f"{ref}: {problems[0]}")
            continue
        store.union_merge(tip, f"mlci: merge {ref} from {remote}")
        out.merged.append(ref)
    return out


def forget(repo: Repo, remote: str, refs: list[str]) -> None:
    """Delete folded incoming refs on the remote and their fetched copies here: only once the
    remote's ledger holds them (after a push that landed)."""
    if refs:
        delete_remote_refs(repo, remote, refs)
        for ref in refs:
            repo.run("update-ref", "-d", _fetched_ref(remote, ref), check=False)
