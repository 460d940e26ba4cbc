"""Remotes: names from mlci.yaml (`data.remotes`), credentials from the environment or the
gitignored `.mlci/config.local.yaml`, opened through fsspec (imported only here, lazily)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui.data.config_schema import LOCAL_CONFIG
from mlci_tui.errors import ConfigError


@dataclass
class Remote:
    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self) -> tuple[Any, str]:
        """(fsspec filesystem, base path without protocol)."""
        import fsspec

        url = self.url
        if "://" not in url:  # a plain folder, relative to the repository root
            url = "file://" + os.path.abspath(url)
        try:
            fs, base = fsspec.core.url_to_fs(url, **self.options)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"data.remotes.{self.name}: cannot open {url.split('?')[0]}: {exc}") from None
        return fs, base.rstrip("/")


def load_local(root: Path) -> dict[str, Any]:
    """`.mlci/config.local.yaml`: per-clone remote options (credentials) never committed."""
    path = root / LOCAL_CONFIG
    if not path.is_file():
        return {}
    from mlci_tui.config import parse_yaml_no_aliases
    from mlci_tui.gitio import git

    tracked = git(["ls-files", "--error-unmatch", "--", LOCAL_CONFIG], root, check=False)
    if tracked.returncode == 0:
        raise ConfigError(f"{LOCAL_CONFIG} is tracked by git; it holds credentials: `git rm --cached {LOCAL_CONFIG}`")
    doc = parse_yaml_no_aliases(path.read_text(encoding="utf-8"), LOCAL_CONFIG) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("remotes", {}), dict):
        raise ConfigError(f"{LOCAL_CONFIG}: expected `remotes: {{NAME: {{url, options}}}}`")
    return doc


def resolve(root: Path, section: dict[str, Any], name: str | None) -> Remote:
    """The remote called `name` (default: data.remote, else the only one declared)."""
    local = load_local(root)
    remotes: dict[str, Any] = dict(section.get("remotes") or {})
    local_remotes = local.get("remotes") or {}
    for key, value in local_remotes.items():
        if key not in remotes and isinstance(value, dict) and value.get("url"):
            remotes[key] = {"url": value["url"], "options": {}}
    name = name or local.get("remote") or section.get("remote")
    if not name:
        if len(remotes) == 1:
            name = next(iter(remotes))
        elif not remotes:
            raise ConfigError(
                "no data remote: declare one in mlci.yaml under data.remotes, e.g. "
                "`data: {remote: storage, remotes: {storage: {url: s3://bucket/path}}}`"
            )
        else:
            raise ConfigError(f"several data remotes ({', '.join(sorted(remotes))}): pick one with -r or data.remote")
    if name not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        raise ConfigError(f"data remote {name!r} is not declared in mlci.yaml data.remotes (known: {known})")
    spec = remotes[name]
    options = dict(spec.get("options") or {})
    extra = local_remotes.get(name) or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{LOCAL_CONFIG}: remotes.{name}: expected a mapping")
    options.update(extra.get("options") or {})
    url = extra.get("url") or spec["url"]
    if not url:
        raise ConfigError(f"data.remotes.{name}: no url")
    url = str(url)
    if "://" not in url:  # a plain folder: relative to the repository root
        url = "file://" + str((root / url).resolve())
    return Remote(name, url, options)
