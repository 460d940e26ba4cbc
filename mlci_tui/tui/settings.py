"""The TUI's remembered choices (columns, sort, baseline) in `.git/mlci/tui.json`: local, never committed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlci_tui.gitio import Repo

SETTINGS_FILE = "tui.json"


def settings_path(repo: Repo) -> Path:
    return repo.state_dir / SETTINGS_FILE


def load_settings(repo: Repo) -> dict[str, Any]:
    try:
        data = json.loads(settings_path(repo).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(repo: Repo, settings: dict[str, Any]) -> None:
    path = settings_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
