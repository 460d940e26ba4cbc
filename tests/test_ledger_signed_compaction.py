"""Signed compactions (issue 19, a new clone's first listing of a million runs under a minute):
a compaction by a clone with `ledger.trust.signing_key` signs its tree with a real ssh-keygen
ed25519 key; a pull takes the segments of a fetched root compaction signed by a key of
`ledger.trust.allowed_signers` as checked, and checks everything else as before: a signature
that does not verify, a key not listed, a segment file changed after the signed compaction."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import commit, git, run_mlci
from ledger_helpers import assert_clean_exit, make_run, mlci_ok
from test_ledger_segment_format import _applies, _forged, _segments, _stale_flipped

from mlci_tui.gitio import Repo
from mlci_tui.ledger import signed_compaction
from mlci_tui.ledger.store import LedgerStore


def _key(folder: Path, name: str) -> tuple[Path, str]:
    """A new ed25519 key pair: the private key's path, the public key as an allowed-signers key."""
    key = folder / f"{name}_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    kind, blob = (folder / f"{name}_key.pub").read_text().split()[:2]
    return key, f"{kind} {blob}"


@pytest.fixture
def team(tmp_path: Path, clone_of: Callable[..., Path]) -> tuple[Path, Path]:
    """Clone `ci` whose mlci.yaml (committed) signs compactions with CI's key and trusts it; the
    key. The upstream's main has that mlci.yaml, so every new clone trusts the same signers."""
    key, public = _key(tmp_path, "ci")
    ci = clone_of("ci")
    config = f"ledger:\n  trust:\n    signing_key: {key}\n    principal: ci@example.com\n    allowed_signers: .mlci-signers\n"
    signers = f'ci@example.com namespaces="mlci-compaction,mlci-promotion" {public}\n'
    commit(ci, {"mlci.yaml": config, ".mlci-signers": signers}, "trust CI's compactions")
    git(ci, "push", "-q", "origin", "main")
    return ci, key


def _records(root: Path, count: int) -> list[str]:
    runs = [make_run(name=f"r{i}", params={"lr": i / 10}, metrics={"acc": i / count}) for i in range(count)]
    LedgerStore(Repo.find(root)).append(runs)
    return sorted(r["id"] for r in runs)


def _listed(root: Path) -> list[str]:
    return sorted(r["run_id"] for r in json.loads(mlci_ok(root, "runs", "--json", "--limit", "0").stdout))


def test_a_new_clone_takes_a_signed_compactions_segments_as_checked(
    team: tuple[Path, Path], clone_of: Callable[..., Path]
) -> None:
    ci, _key_path = team
    ids = _records(ci, 40)
    compacted = mlci_ok(ci, "ledger", "compact")
    assert "compacted: 40 records" in compacted.stdout
    store = LedgerStore(Repo.find(ci))
    tip = store.tip()
    assert tip is not None
    message = git(ci, "cat-file", "commit", tip).split("\n\n", 1)[1]
    signed = signed_compaction.signature_of(message)
    assert signed is not None and signed[0] == "ci@example.com", message
    mlci_ok(ci, "ledger", "push")

    newcomer = clone_of("newcomer")
    pulled = mlci_ok(newcomer, "ledger", "pull")
    segment_files = len([e for e in store.entries(tip) if e.path.startswith("segments/")])
    assert (
        f"{segment_files} segment file(s) of the compaction {tip[:12]} signed by 'ci@example.com' taken as checked"
        in (pulled.stderr)
    ), pulled.stderr
    assert _listed(newcomer) == ids
    assert_clean_exit(run_mlci(newcomer, "ledger", "fsck"))  # fsck checks them all the same
    # a pull that brings no segment file does not look for signatures (a check costs ~10 ms)
    more = _records(ci, 2)
    mlci_ok(ci, "ledger", "push")
    again = mlci_ok(newcomer, "ledger", "pull")
    assert "taken as checked" not in again.stderr and "signature" not in again.stderr, again.stderr
    assert _listed(newcomer) == sorted(ids + more)


def _plant_signed_forgery(root: Path, key: Path, principal: str) -> str:
    """Compact `root` (unsigned), then replace one segment with one whose `stale` column says
    something else than its bodies (only the typed check sees it), in a compaction commit
    signed by `key`: what a trusted signer's buggy or stolen key could publish."""
    store = LedgerStore(Repo.find(root))
    _records(root, 40)
    mlci_ok(root, "ledger", "compact")
    tip = store.tip()
    assert tip is not None
    path, data = next((p, d) for p, d in _segments(store).items() if _applies(d, "stale", _stale_flipped))
    keep = [e for e in store.entries(tip) if e.path != path]
    forged = store.replace_tree(
        [(path, _forged(data, "stale", _stale_flipped))],
        "mlci: compact 40 records",
        tip,
        keep=keep,
        trailer=signed_compaction.trailer(key, principal),
    )
    assert forged is not None
    return path


def test_only_a_listed_key_signing_that_tree_skips_the_check(
    team: tuple[Path, Path], clone_of: Callable[..., Path], tmp_path: Path
) -> None:
    """The forged segment is accepted where its signer is trusted (the check was skipped), and
    refused where the signature does not verify: another key, or a tree changed after signing."""
    ci, key = team
    writer = clone_of("writer")
    path = _plant_signed_forgery(writer, key, "ci@example.com")
    git(writer, "push", "-q", "--force", "origin", "refs/mlci/ledger:refs/mlci/ledger")

    trusting = clone_of("trusting")
    pulled = mlci_ok(trusting, "ledger", "pull")
    assert "signed by 'ci@example.com' taken as checked" in pulled.stderr
    fsck = run_mlci(trusting, "ledger", "fsck")  # the audit still checks every file
    assert fsck.returncode == 1 and f"{path}: its stale column differs from its bodies" in fsck.stdout, fsck.stdout

    # a clone whose allowed signers list another key for that principal: the segment is checked
    other = clone_of("other")
    _other_key, other_public = _key(tmp_path, "other")
    (other / ".mlci-signers").write_text(f'ci@example.com namespaces="mlci-compaction" {other_public}\n')
    refused = run_mlci(other, "ledger", "pull")
    assert_clean_exit(refused, 1)
    assert "signature does not verify" in refused.stderr and f"{path}: its stale column differs" in refused.stderr
    assert LedgerStore(Repo.find(other)).tip() is None  # nothing merged

    # the signed tree with one more file: a new root the signature does not cover
    store = LedgerStore(Repo.find(writer))
    tip = store.tip()
    assert tip is not None
    message = git(writer, "cat-file", "commit", tip).split("\n\n", 1)[1]
    moved = store.replace_tree([("segments/extra.ids", b"x\n")], message, tip, keep=store.entries(tip))
    assert moved is not None and signed_compaction.signature_of(git(writer, "log", "-1", "--format=%B", moved))
    git(writer, "push", "-q", "--force", "origin", "refs/mlci/ledger:refs/mlci/ledger")
    late = clone_of("late")
    refused = run_mlci(late, "ledger", "pull")
    assert_clean_exit(refused, 1)
    assert "signature does not verify" in refused.stderr and f"{path}: its stale column differs" in refused.stderr


def test_a_segment_changed_after_the_signed_compaction_is_checked(
    team: tuple[Path, Path], clone_of: Callable[..., Path]
) -> None:
    """The signed root holds the genuine segment; a later commit replaces its blob at the same
    path: that file is not the one signed, and is checked (and refused)."""
    ci, _key_path = team
    _records(ci, 40)
    mlci_ok(ci, "ledger", "compact")
    store = LedgerStore(Repo.find(ci))
    path, data = next((p, d) for p, d in _segments(store).items() if _applies(d, "stale", _stale_flipped))
    store.update(lambda _tip: {path: _forged(data, "stale", _stale_flipped)}, "a later change")
    git(ci, "push", "-q", "origin", "refs/mlci/ledger:refs/mlci/ledger")
    newcomer = clone_of("newcomer")
    refused = run_mlci(newcomer, "ledger", "pull")
    assert_clean_exit(refused, 1)
    assert "2 invalid file(s)" in refused.stderr and f"{path}: its stale column differs" in refused.stderr


def test_a_key_that_cannot_sign_stops_an_explicit_compaction_and_not_an_automatic_one(
    team: tuple[Path, Path],
) -> None:
    ci, key = team
    _records(ci, 30)
    store = LedgerStore(Repo.find(ci))
    before = store.tip()
    key.unlink()
    proc = run_mlci(ci, "ledger", "compact")
    assert_clean_exit(proc, 2)
    assert f"signing key {key}: ssh-keygen -Y sign failed" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert store.tip() == before  # nothing written
    _records(ci, 2000)  # past the automatic threshold
    auto = run_mlci(ci, "ledger", "compact", "--auto")
    assert_clean_exit(auto)
    assert "the compaction is not signed" in auto.stderr
    tip = store.tip()
    assert tip is not None and tip != before
    assert signed_compaction.signature_of(git(ci, "log", "-1", "--format=%B", tip)) is None
