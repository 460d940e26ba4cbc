"""The `file:name` rule: a param or metric name is plain unless a run has it in two files.

Then `file:name` (`results/eval/metrics.json:dice`) names one, and the plain name is
ambiguous wherever a single value is needed (gate rules, sort keys, sweep metrics).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlci_tui.errors import InputError
from mlci_tui.sanitize import display

# The same rule over the `params`/`metrics` rows of one run, for the cache's maps.
SQL_MAP_KEY = "CASE WHEN count(*) OVER (PARTITION BY run_id, name) > 1 THEN file || ':' || name ELSE name END"


def qualified(file: str, name: str) -> str:
    return f"{file}:{name}"


def map_keys(per_file: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Values keyed as the `runs` view keys them: plain when unique in the run, `file:name` when in two files."""
    seen: dict[str, int] = {}
    for values_of_file in per_file.values():
        for name in values_of_file:
            seen[name] = seen.get(name, 0) + 1
    return {
        (name if seen[name] == 1 else qualified(file, name)): value
        for file, values_of_file in per_file.items()
        for name, value in values_of_file.items()
    }


def candidates(keys: Iterable[str], name: str) -> list[str]:
    """The keys `name` may stand for: itself, else every `file:name` ending in it."""
    keys = list(keys)
    if name in keys:
        return [name]
    return [k for k in keys if k.endswith(f":{name}")]


def find_key(keys: Iterable[str], name: str, what: str = "metric") -> str | None:
    """The one key `name` stands for, None when absent; an error naming the files when ambiguous."""
    found = candidates(keys, name)
    if len(found) > 1:
        files = ", ".join(k[: -len(name) - 1] for k in found[:5])
        raise InputError(
            f"{what} {display(name)!r} is in several files ({display(files)}); name one as file:{display(name)}"
        )
    return found[0] if found else None


def plain_name(key: str, known: set[str]) -> str:
    """The name part of a key: `file:name` → `name` when the whole key is not itself a known name."""
    return key if key in known else key.rpartition(":")[2]
