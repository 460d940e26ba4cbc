"""Dataset versions of an imported commit, from its `.dvc` files and `dvc.lock` outputs.

The readers of those files belong to `mlci_tui.data.dvc` (data as code); this module only
feeds them the blobs the importer already holds (no extra git process per commit), and the
result has the shape of `mlci_tui.data.tree.dataset_hashes`: path → content hash.
"""

from __future__ import annotations

from typing import Any

from mlci_tui.data.dvc import read_dvc_pointers
from mlci_tui.errors import MlciError


def read(importer: Any, root: str, declared: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in declared.stage_files:
        if not (path.endswith(".dvc") or path.rsplit("/", 1)[-1] == "dvc.lock"):
            continue
        entry = importer.objects.lookup(root, path)
        data = importer.objects.blob(entry.oid) if entry is not None else None
        if data is None:
            continue
        try:
            pointers = read_dvc_pointers(data.decode("utf-8", "replace"), path)
        except MlciError:
            continue  # a bad pointer file is the data commands' concern; the run keeps its values
        found.update((p.path, p.content_id) for p in pointers)
    return dict(sorted(found.items()))
