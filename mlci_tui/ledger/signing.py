"""Signed promotions: who promoted a model, proven by an SSH signature (optional provenance).

Anyone who can push the ledger ref can write a `promote` event; a signature made with a
key the team lists in an OpenSSH allowed-signers file cannot be forged that way. The
signature covers the promotion's canonical body without the `signature` field (the
`signer` principal included), signed by `ssh-keygen -Y sign` in the namespace
`mlci-promotion`. Verification runs `ssh-keygen -Y verify` (about 10 ms a call), so only
the gate calls it, and only when `gate.require_signed_promotions` asks.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci_tui.errors import ConfigError, InputError, first_line
from mlci_tui.ledger import records
from mlci_tui.scrub import scrub

if TYPE_CHECKING:
    from mlci_tui.gitio import Repo

NAMESPACE = "mlci-promotion"
SIGNATURE = "signature"  # the armored signature; every other field is signed
SIGNER = "signer"  # the principal, as named in the allowed-signers file


def signed_body(record: dict[str, Any]) -> bytes:
    """The bytes a promotion's signature covers: its canonical JSON without the signature."""
    return records.dumps({k: v for k, v in record.items() if k != SIGNATURE})


def sign(record: dict[str, Any], key: Path, principal: str) -> dict[str, Any]:
    """The promotion with `signer` and `signature` added. It is scrubbed first, as `append`
    will scrub it, so that the stored body is the one signed."""
    signed = scrub({**record, SIGNER: principal})
    signed[SIGNATURE] = sign_bytes(signed_body(signed), key, NAMESPACE)
    return signed


def sign_bytes(data: bytes, key: Path, namespace: str) -> str:
    """The armored SSH signature of `data` by `key` in `namespace` (`ssh-keygen -Y sign`)."""
    try:
        proc = subprocess.run(
            ["ssh-keygen", "-q", "-Y", "sign", "-n", namespace, "-f", str(key)],
            input=data,
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"signing key {key}: ssh-keygen could not run ({first_line(exc)})") from None
    if proc.returncode != 0 or b"BEGIN SSH SIGNATURE" not in proc.stdout:
        why = first_line(Exception(proc.stderr.decode("utf-8", "replace"))) or f"exit {proc.returncode}"
        raise InputError(f"signing key {key}: ssh-keygen -Y sign failed: {why}")
    return proc.stdout.decode()


def verify(record: dict[str, Any], allowed_signers: Path) -> str | None:
    """Why this promotion's signature does not verify against `allowed_signers`, or None."""
    signature, principal = record.get(SIGNATURE), record.get(SIGNER)
    if not isinstance(signature, str) or not isinstance(principal, str) or not principal:
        return "unsigned"
    if verifies(signed_body(record), signature, principal, allowed_signers, NAMESPACE):
        return None
    return f"signature by {principal!r} does not verify"


def verifies(data: bytes, signature: str, principal: str, allowed_signers: Path, namespace: str) -> bool:
    """Whether `signature` is `principal`'s over `data` in `namespace`, by a key `allowed_signers`
    (an OpenSSH allowed-signers file) lists for that principal and namespace."""
    if not allowed_signers.is_file():
        raise ConfigError(f"ledger.trust.allowed_signers: {allowed_signers} is not a file")
    with tempfile.NamedTemporaryFile("w", suffix=".sig") as sig:
        sig.write(signature)
        sig.flush()
        try:
            proc = subprocess.run(
                [
                    *("ssh-keygen", "-Y", "verify", "-f", str(allowed_signers)),
                    *("-I", principal, "-n", namespace, "-s", sig.name),
                ],
                input=data,
                capture_output=True,
                check=False,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return proc.returncode == 0


def principal_of(repo: Repo, configured: str | None) -> str:
    """The principal a signature names: `ledger.trust.principal`, else the email of git's author
    ident ('' when git has none)."""
    if configured:
        return configured
    ident = repo.text("var", "GIT_AUTHOR_IDENT", check=False)
    return ident.rsplit(">", 1)[0].rsplit("<", 1)[-1] if "<" in ident else ""


def allowed_signers(root: Path, trust: Mapping[str, Any]) -> Path | None:
    """`ledger.trust.allowed_signers` (the config's `trust` section) as a path, or None."""
    value = trust.get("allowed_signers")
    return key_path(root, value) if value else None


def key_path(root: Path, value: str) -> Path:
    """A key or allowed-signers path from mlci.yaml: `~` expanded, relative to the repository."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path
