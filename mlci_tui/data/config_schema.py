"""The `data:` section of mlci.yaml: remotes (no secrets), default remote, link mode, hash, jobs.

Credentials never go in committed config: a URL with user info or a signed query, or an
option named like a key, secret, token or password, is refused with a pointer to the
environment and the gitignored `.mlci/config.local.yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mlci_tui.config import Bool, Enum, MapOf, Number, Schema, Str, Struct
from mlci_tui.errors import ConfigError

LOCAL_CONFIG = ".mlci/config.local.yaml"
SECRET_KEY = re.compile(
    r"(^|[_-])(key|keys|secret|token|password|passwd|pwd|credential|credentials|sas|signature|auth)($|[_-])",
    re.IGNORECASE,
)
# a credential in a value whatever its key: Azure connection strings carry the account key or a SAS
SECRET_VALUE = re.compile(r"(^|;)\s*(AccountKey|SharedAccessSignature|SharedAccessKey)\s*=", re.IGNORECASE)
SIGNED_QUERY = re.compile(r"[?&](x-amz-signature|x-amz-credential|x-goog-signature|sig|token|access_token)=", re.I)
SECRET_HINT = (
    "credentials do not belong in committed config; set them in the environment "
    f"(e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or under remotes.NAME.options in {LOCAL_CONFIG} (gitignored)"
)


def secret_in_url(url: str) -> str | None:
    """Why `url` holds a credential, or None."""
    scheme, sep, rest = url.partition("://")
    if sep:
        netloc = rest.split("/", 1)[0]
        if "@" in netloc:
            return "the URL holds user info (user:password@)"
    if SIGNED_QUERY.search(url):
        return "the URL holds a signature or token in its query"
    return None


def secret_keys(options: Any, path: str = "") -> list[str]:
    """Key paths in `options` (nested mappings) whose names, or string values, say they hold a credential."""
    found: list[str] = []
    if isinstance(options, dict):
        for key, value in options.items():
            where = f"{path}.{key}" if path else str(key)
            named = isinstance(key, str) and SECRET_KEY.search(key) and value not in (None, "", False)
            if named or (isinstance(value, str) and SECRET_VALUE.search(value)):
                found.append(where)
            found.extend(secret_keys(value, where))
    return found


class RemoteUrl(Str):
    expected = "a URL (file://, s3://, gs://, az://, http(s)://, memory://) or a local folder"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        value = super().check(value, path, fail)
        why = secret_in_url(value)
        if why:
            raise fail(path, f"{why}: {SECRET_HINT}")
        return value


class Options(Schema):
    """fsspec storage options, passed through as given, minus anything that looks like a secret."""

    expected = "a mapping of fsspec options"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail(path, f"expected {self.expected}")
        bad = secret_keys(value)
        if bad:
            raise fail(f"{path}.{bad[0]}", SECRET_HINT)
        return value


REMOTE = Struct({"url": (RemoteUrl(), None), "options": (Options(), dict)})

SECTIONS: dict[str, Schema] = {
    "data": Struct(
        {
            "remote": (Str(), None),  # the default remote's name (default: the only one declared)
            "remotes": (MapOf(REMOTE), dict),
            "link": (Enum("auto", "reflink", "copy", "hardlink", "symlink"), "auto"),  # auto: reflink, else copy
            "hash": (Enum("blake3", "md5"), "blake3"),
            "jobs": (Number(integer=True, minimum=1), None),  # parallel transfers (default 4 x cores, max 32)
            # pre-push: datasets a push carries are validated (default fail when `datasets:` is declared)
            "on_push": (Enum("fail", "warn", "off"), "fail"),
            "push_scope": (Enum("tip", "all"), "tip"),  # tip: each dataset as each pushed tip has it
            "push_with_git": (Bool(), True),  # pre-push uploads the pushed versions the data remote lacks
        }
    )
}
