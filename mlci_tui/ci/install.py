"""The install line of the generated jobs, and why it is what it is.

`ci.install` in mlci.yaml wins: a shell line used as written, or a requirement (`mlci-tui==1.2`,
`git+URL@REV`, a wheel's path or URL) handed to pip. Without it the jobs install the mlci that
is generating them, found the way pip records where a distribution came from (PEP 610's
`direct_url.json`): a VCS URL at the commit it was installed from, an archive URL, or, with no
record, the index version. A local folder or file is somewhere no CI runner can reach: the
line then falls back to the index version and says so.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIST = "mlci-tui"
# a PEP 508 requirement: a name, extras, version specifiers or `@ URL`, a marker; no shell words
_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\s*\[[A-Za-z0-9._,\s-]*\])?"
    r"(?:\s*(?:(?:===|==|!=|~=|>=|<=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)+|\s*@\s*\S+)?"
    r"(?:\s*;.*)?$"
)
_ARCHIVE = (".whl", ".tar.gz", ".zip")


@dataclass(frozen=True)
class Pin:
    line: str  # the shell line every job runs
    why: str  # one line for `mlci ci init`: where it came from
    warning: str | None = None  # said when the line may not work on a runner


def is_requirement(value: str) -> bool:
    """A requirement pip takes (as opposed to a shell line such as `pip install -e .[ml]`)."""
    text = value.strip()
    if text.startswith(("git+", "hg+", "svn+", "bzr+")) or re.match(r"^[a-z][a-z0-9+.-]*://", text):
        return " " not in text
    if text.endswith(_ARCHIVE) and " " not in text:
        return True
    return bool(_REQUIREMENT.match(text))


def pip_line(requirement: str, root: Path) -> str:
    """`python -m pip install REQ`, plus the project's requirements.txt when it has one."""
    extra = " -r requirements.txt" if (root / "requirements.txt").is_file() else ""
    return f"python -m pip install {shlex.quote(requirement)}{extra}"


def pin(root: Path, ci_cfg: Mapping[str, Any]) -> Pin:
    """The install line for the workflows generated in `root`."""
    configured = str(ci_cfg.get("install") or "").strip()
    if configured:
        if is_requirement(configured):
            return Pin(pip_line(configured, root), f"ci.install in mlci.yaml ({configured})")
        return Pin(configured, "ci.install in mlci.yaml, a shell line used as written")
    return running_pin(root)


def running_pin(root: Path) -> Pin:
    """The mlci running now, as a runner can install it (see the module's docstring)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return Pin(pip_line(DIST, root), f"{DIST} from the package index (no installed distribution found)")
    raw = dist.read_text("direct_url.json")
    location = _location(dist)
    return from_direct_url(json.loads(raw) if raw else None, dist.version, location, root)


def _location(dist: Any) -> str | None:
    path = getattr(dist, "_path", None)  # the .dist-info / .egg-info folder
    return str(Path(path).resolve().parent) if path else None


def from_direct_url(doc: Any, version: str, location: str | None, root: Path) -> Pin:
    """The pin for a distribution whose `direct_url.json` is `doc` (None: none), installed under `location`."""
    index = pip_line(f"{DIST}=={version}", root)
    if isinstance(doc, dict) and isinstance(doc.get("url"), str):
        url = doc["url"]
        vcs = doc.get("vcs_info")
        if isinstance(vcs, dict) and not _local(url):
            rev = vcs.get("commit_id") or vcs.get("requested_revision")
            sub = (doc.get("subdirectory") or "").strip()
            spec = (
                f"{vcs.get('vcs', 'git')}+{url}" + (f"@{rev}" if rev else "") + (f"#subdirectory={sub}" if sub else "")
            )
            return Pin(pip_line(f"{DIST} @ {spec}", root), f"the mlci running here: {url} at {str(rev)[:12]}")
        if isinstance(doc.get("archive_info"), dict) and not _local(url):
            return Pin(pip_line(f"{DIST} @ {url}", root), f"the mlci running here: {url}")
        return Pin(index, f"{DIST}=={version} from the package index", _unreachable(url, version))
    if location and not re.search(r"[/\\](site|dist)-packages$", location):
        return Pin(index, f"{DIST}=={version} from the package index", _unreachable(location, version))
    return Pin(index, f"the mlci running here: {DIST}=={version} from the package index")


def _local(url: str) -> bool:
    return url.startswith("file:") or "://" not in url


def _unreachable(where: str, version: str) -> str:
    return (
        f"this mlci was installed from {where.removeprefix('file://')}, which no CI runner can reach; "
        f"the jobs install {DIST}=={version} from the index instead: set ci.install in mlci.yaml "
        "(git+URL@REV or a requirement) if the index does not serve it, then `mlci ci init --force`"
    )
