"""Signed promotions: `mlci promote --sign` signs with a real ssh-keygen ed25519 key, and with
`gate.require_signed_promotions` the gate's stage baseline is the newest promotion whose
signature verifies; unsigned and tampered ones are skipped, naming them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import commit, git, metrics_json, run_mlci
from ledger_helpers import assert_clean_exit

from mlci_tui.gitio import Repo
from mlci_tui.ledger import records
from mlci_tui.ledger.store import LedgerStore

CONFIG = """\
gate:
  require_signed_promotions: true
  rules:
    acc: {direction: max, max_drop: 0.5}
ledger:
  trust:
    allowed_signers: .mlci-signers
"""


@pytest.fixture
def signed_repo(repo: Path, tmp_path: Path) -> Path:
    """A repository whose allowed signers name Ada's new ed25519 key (git's user.signingkey)."""
    key = tmp_path / "ada_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ada", "-f", str(key)], check=True)
    public = (tmp_path / "ada_key.pub").read_text().split()
    (repo / ".mlci-signers").write_text(f'ada@example.com namespaces="mlci-promotion" {public[0]} {public[1]}\n')
    git(repo, "config", "user.signingkey", str(key))
    return repo


def _run(root: Path, acc: float) -> str:
    sha = commit(root, {"mlci.yaml": CONFIG, "metrics.json": metrics_json(acc=acc)}, f"acc {acc}")
    assert_clean_exit(run_mlci(root, "capture"))
    return records.derived_id("commit", sha)


def _gate(root: Path, code: int = 0) -> dict[str, Any]:
    proc = run_mlci(root, "gate", "--format", "json")
    assert_clean_exit(proc, code)
    return dict(json.loads(proc.stdout))


def _promotions(root: Path) -> list[dict[str, Any]]:
    found = [r for r in LedgerStore(Repo.find(root)).read_records() if r["type"] == "promote"]
    return sorted(found, key=lambda r: str(r["time"]))


def test_a_signed_promotion_is_the_baseline_and_unsigned_or_tampered_ones_are_skipped(signed_repo: Path) -> None:
    root = signed_repo
    first = _run(root, 0.5)
    promoted = run_mlci(root, "promote", first, "--sign")
    assert_clean_exit(promoted)
    assert "signed by ada@example.com" in promoted.stdout
    signed = _promotions(root)[-1]
    assert signed["signer"] == "ada@example.com" and "BEGIN SSH SIGNATURE" in signed["signature"]
    head = _run(root, 0.6)
    assert _gate(root)["base"] == first

    # an unsigned promotion (anyone with push access can write one) is not a baseline
    second = _run(root, 0.7)
    assert_clean_exit(run_mlci(root, "promote", second))
    # nor is a signed one whose body was changed: the signature of `first`'s promotion, another target
    third = _run(root, 0.9)
    forged = dict(signed, target=third, id=records.new_id(), time=records.now_iso())
    LedgerStore(Repo.find(root)).append([forged])
    commit(root, {"metrics.json": metrics_json(acc=0.6)}, "candidate")
    assert_clean_exit(run_mlci(root, "capture"))

    verdict = _gate(root)
    assert verdict["base"] == first
    skipped = [w for w in verdict["warnings"] if "skipped" in w]
    assert len(skipped) == 2, verdict["warnings"]
    assert forged["id"][:8] in skipped[0] and "does not verify" in skipped[0]
    assert second[:8] in skipped[1] and "unsigned" in skipped[1]
    assert head  # the earlier candidate stays in the ledger

    # without the setting, the newest promotion (the forged one) is the baseline, as before
    git(root, "config", "--unset", "user.signingkey")
    (root / "mlci.yaml").write_text(
        CONFIG.replace("require_signed_promotions: true", "require_signed_promotions: false")
    )
    assert _gate(root)["base"] == third


def test_no_verifiable_promotion_is_an_error_when_signatures_are_required(signed_repo: Path) -> None:
    root = signed_repo
    run_id = _run(root, 0.5)
    assert_clean_exit(run_mlci(root, "promote", run_id))
    _run(root, 0.6)
    proc = run_mlci(root, "gate")
    assert_clean_exit(proc, 2)
    assert "no promotion to 'deployed' has a signature that verifies" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_promote_sign_without_a_key_is_an_input_error(repo: Path) -> None:
    run_id = _run(repo, 0.5)
    proc = run_mlci(repo, "promote", run_id, "--sign")
    assert_clean_exit(proc, 2)
    assert "ledger.trust.signing_key" in proc.stderr
    assert [r for r in LedgerStore(Repo.find(repo)).read_records() if r["type"] == "promote"] == []
