"""Remotes: names from mlci.yaml (`data.remotes`), credentials from the environment or the
gitignored `.mlci/config.local.yaml`, opened through fsspec (imported only here, lazily).

A cloud filesystem's failure to authenticate or to connect comes back as one mlci error
(exit 2: no usable credentials; exit 1: the endpoint cannot be reached) instead of one
traceback or one retry storm per object: `Guarded` translates it where it is raised.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui.config import parse_yaml_no_aliases
from mlci_tui.data.add import data_settings
from mlci_tui.data.config_schema import LOCAL_CONFIG
from mlci_tui.errors import CheckFailed, ConfigError, MlciError, first_line
from mlci_tui.gitio import git

# exception classes (by name, so that no SDK is imported to recognise its errors)
AUTH_ERRORS = {
    "NoCredentialsError",  # botocore
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "GoogleAuthError",  # google.auth: DefaultCredentialsError, RefreshError
    "ClientAuthenticationError",  # azure.core
}
CONNECT_ERRORS = {
    "EndpointConnectionError",  # botocore
    "ConnectTimeoutError",
    "ClientConnectionError",  # aiohttp (s3fs, gcsfs, http)
    "ServerTimeoutError",
    "ServiceRequestError",  # azure.core: the request never reached the service
    "ConnectionError",  # requests, and the builtin (refused, reset)
    "gaierror",  # a host name that does not resolve
}


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
        if url.startswith(("gs://", "gcs://")) and (self.options.get("endpoint_url") or os.environ.get(EMULATOR)):
            # gcsfs probes each bucket's layout over gRPC, which no emulator answers (60 s per call)
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        try:
            fs, base = fsspec.core.url_to_fs(url, **self.options)
        except MlciError:
            raise
        except Exception as exc:
            raise translate(exc, self) or ConfigError(
                f"data.remotes.{self.name}: cannot open {self.where}: {first_line(exc, with_type=True)}"
            ) from None
        if _protocol(fs) not in ("file", "local", "memory"):
            fs = Guarded(fs, self)
            for logger in QUIET_LOGGERS:  # their give-up messages carry tracebacks; mlci says it in one line
                logging.getLogger(logger).addHandler(logging.NullHandler())
        return fs, base.rstrip("/")

    @property
    def where(self) -> str:
        return self.url.split("?")[0]


EMULATOR = "STORAGE_EMULATOR_HOST"
QUIET_LOGGERS = ("gcsfs", "adlfs", "s3fs", "fsspec", "azure")


def _protocol(fs: Any) -> str:
    return str(fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0])


def translate(exc: BaseException, remote: Remote) -> MlciError | None:
    """The mlci error a credential or connection failure stands for (its cause chain included), or None."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        names = {cls.__name__ for cls in type(seen).__mro__}
        if names & AUTH_ERRORS:
            return ConfigError(
                f"data remote {remote.name} ({remote.where}): no usable credentials: {first_line(seen, with_type=True)}; "
                f"set them in the environment or under remotes.{remote.name}.options in {LOCAL_CONFIG}"
            )
        if names & CONNECT_ERRORS:
            return CheckFailed(
                f"data remote {remote.name} ({remote.where}) cannot be reached: {first_line(seen, with_type=True)}"
            )
        seen = seen.__cause__ or seen.__context__
    return None


class Guarded:
    """A cloud filesystem whose methods raise `translate`d errors; everything else passes through."""

    def __init__(self, fs: Any, remote: Remote) -> None:
        self._fs, self._remote = fs, remote

    def __getattr__(self, name: str) -> Any:
        if name in ("_fs", "_remote"):  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        value = getattr(self._fs, name)
        if name.startswith("_") or not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except Exception as exc:
                mlci_error = translate(exc, self._remote)
                if mlci_error is None:
                    raise
                raise mlci_error from None

        return call


def load_local(root: Path) -> dict[str, Any]:
    """`.mlci/config.local.yaml`: per-clone remote options (credentials) never committed."""
    path = root / LOCAL_CONFIG
    if not path.is_file():
        return {}
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
            raise NoDataRemote(
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


class NoDataRemote(ConfigError):
    """The config declares no data remote at all (other remote errors stay ConfigError)."""


def open_default_remote(root: Path) -> tuple[Any, str, str] | None:
    """The default data remote opened, or None when none is declared: what the hooks, trial
    logs and a diff's fetch use quietly (a remote declared wrongly still raises ConfigError)."""
    try:
        return open_remote(root, None)
    except NoDataRemote:
        return None


def open_remote(root: Path, name: str | None, settings: dict[str, Any] | None = None) -> tuple[Any, str, str]:
    """The data remote `name` (default: data.remote) opened: (fsspec filesystem, base path, its name).

    `settings`: the `data:` section to read it from (default the working tree's; a pull request's CI
    job passes its base branch's, so the PR cannot choose where data comes from)."""
    remote = resolve(root, settings if settings is not None else data_settings(root), name)
    fs, base = remote.open()
    return fs, base, remote.name
