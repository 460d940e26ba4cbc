"""Signed compactions: a compaction commit may carry an SSH signature over its tree, and a pull
takes the segments of a compaction signed by a key the team trusts as checked.

Checking every record a remote brings is what keeps a bad blob from a remote out of every
clone (verify.py), and it costs: a new clone of a million-run ledger checks a million rows
(about 70 s on 2 cores). A team that trusts whoever compacts (its CI, its own keys) lists their
keys in `ledger.trust.allowed_signers` for the namespace `mlci-compaction`; a compaction by a
clone with `ledger.trust.signing_key` signs `payload(tree)` and writes the signature into the
commit message (`trailer`). A pull then skips the segment files of the fetched ledger's root
commits that are such compactions (the same blob at the same path: anything added or changed
since is checked as always). The tree id binds every path and blob under it. `ledger fsck`
checks everything regardless (docs/ledger.md, "Signed compactions").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlci_tui.gitio import Repo
from mlci_tui.ledger.signing import sign_bytes, verifies
from mlci_tui.ledger.store import COMPACTION_SUBJECT, SEGMENTS_DIR

NAMESPACE = "mlci-compaction"
SIGNED_BY = "mlci-signed-by: "
_BEGIN, _END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"


def payload(tree: str) -> bytes:
    """What a compaction's signature covers: its tree (so every path and blob in it)."""
    return f"mlci compaction\ntree {tree}\n".encode()


def trailer(key: Path, principal: str) -> Callable[[str], str]:
    """For `LedgerStore.replace_tree`: the text a signed compaction's message ends with, given
    its tree: the principal and the armored signature."""

    def signed(tree: str) -> str:
        return f"\n\n{SIGNED_BY}{principal}\n{sign_bytes(payload(tree), key, NAMESPACE).strip()}\n"

    return signed


def signature_of(message: str) -> tuple[str, str] | None:
    """(principal, armored signature) a compaction commit's message carries, or None."""
    lines = message.splitlines()
    signers = [n for n, line in enumerate(lines) if line.startswith(SIGNED_BY)]
    if len(signers) != 1:
        return None
    first = signers[0]
    principal = lines[first][len(SIGNED_BY) :].strip()
    armored = lines[first + 1 :]
    if not principal or not armored or armored[0] != _BEGIN or _END not in armored:
        return None
    return principal, "\n".join(armored[: armored.index(_END) + 1]) + "\n"


def trusted_segment_files(
    repo: Repo, fetched: str, allowed_signers: Path
) -> tuple[set[tuple[str, str]], list[str], list[str]]:
    """The (path, blob) of every segment file in the tree of a root commit of `fetched` that is
    a compaction signed by a key `allowed_signers` lists for its principal and NAMESPACE; what
    to tell the user; warnings (a signed compaction whose signature does not verify: checked)."""
    from mlci_tui.sanitize import display  # a remote's principal reaches the terminal

    trusted: set[tuple[str, str]] = set()
    notices: list[str] = []
    warnings: list[str] = []
    for root in repo.text("rev-list", "--max-parents=0", fetched).split():
        header, _, message = repo.text("cat-file", "commit", root).partition("\n\n")
        tree = header.splitlines()[0].removeprefix("tree ") if header.startswith("tree ") else ""
        signed = signature_of(message) if message.startswith(COMPACTION_SUBJECT) else None
        if not tree or signed is None:
            continue
        principal, signature = signed
        if not verifies(payload(tree), signature, principal, allowed_signers, NAMESPACE):
            warnings.append(
                display(
                    f"the compaction {root[:12]} names the signer {principal!r}, but its signature does not verify "
                    "against ledger.trust.allowed_signers: its segments are checked"
                )
            )
            continue
        files = {(e.path, e.oid) for e in repo.ls_tree(root, [SEGMENTS_DIR])}
        trusted |= files
        notices.append(
            display(
                f"{len(files)} segment file(s) of the compaction {root[:12]} signed by {principal!r} taken as checked"
            )
        )
    return trusted, notices, warnings
