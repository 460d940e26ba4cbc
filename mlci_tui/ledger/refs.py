"""The ledger's ref names: a module of constants so the hook path can name them cheaply."""

LEDGER_REF = "refs/mlci/ledger"
REMOTE_REF_PREFIX = "refs/mlci-remote"


def remote_ref(remote: str) -> str:
    """Where the last seen state of `remote`'s ledger is kept."""
    return f"{REMOTE_REF_PREFIX}/{remote}/ledger"
