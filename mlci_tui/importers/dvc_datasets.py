"""Dataset versions of an imported commit, from its `.dvc` files and `dvc.lock` outputs.

The readers of those files belong to `mlci_tui.data.dvc` (data as code); this module only
adapts them to the importer and is inert while that module is absent.
"""

from __future__ import annotations

from typing import Any


def available() -> bool:
    try:
        import mlci_tui.data.dvc  # noqa: F401
    except ImportError:
        return False
    return True


def read(importer: Any, root: str, declared: Any) -> dict[str, str]:
    return {}
