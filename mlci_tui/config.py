"""mlci.yaml (or `[tool.mlci]` in pyproject.toml): load, validate, explain errors by key path.

The schema is declarative: each top-level section is a `Struct` registered in `SECTIONS`,
so a later feature adds its section in one place and gets strict checking (unknown keys,
wrong types) and error messages naming file, key path and expected type for free.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod

from mlci_tui.constants import CONFIG_FILE as CONFIG_FILE  # re-exported: config_mod.CONFIG_FILE
from mlci_tui.constants import DEFAULT_METRICS_FILES, DEFAULT_PARAMS_FILES
from mlci_tui.errors import ConfigError
from mlci_tui.gitio import parse_cat_file_batch_ordered
from mlci_tui.values import Plain

TYPE_CHECKING = False  # not `from typing import ...`: both commit hooks build a Config
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


class Schema(ABC):
    expected = "value"

    @abstractmethod
    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        """The value, checked and normalised; `fail(path, why)` builds the error to raise."""


class Str(Schema):
    expected = "a string"

    def __init__(self, pattern: str | None = None, hint: str | None = None) -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.hint = hint

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if not isinstance(value, str):
            raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")
        if self.pattern and not self.pattern.fullmatch(value):
            raise fail(path, f"{value!r} is not valid: {self.hint or self.pattern.pattern}")
        return value


class Bool(Schema):
    expected = "true or false"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if not isinstance(value, bool):
            raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")
        return value


class Number(Schema):
    def __init__(self, *, integer: bool = False, minimum: float | None = None) -> None:
        self.integer = integer
        self.minimum = minimum
        self.expected = "an integer" if integer else "a number"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        ok = isinstance(value, int) if self.integer else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise fail(path, f"must be at least {self.minimum}, got {value!r}")
        return value


class Enum(Schema):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = "one of " + ", ".join(choices)

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if value not in self.choices or not isinstance(value, str):
            raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")
        return value


class ListOf(Schema):
    """A list; a single item is accepted in place of a one-item list."""

    def __init__(self, item: Schema) -> None:
        self.item = item
        self.expected = f"a list of {item.expected.removeprefix('a ').removeprefix('an ')}s"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if not isinstance(value, list):
            value = [value]
        return [self.item.check(v, f"{path}[{i}]", fail) for i, v in enumerate(value)]


class MapOf(Schema):
    expected = "a mapping"

    def __init__(self, value: Schema) -> None:
        self.value = value

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if not isinstance(value, dict):
            raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise fail(path, f"keys must be strings, got {_type_name(key)} {key!r}")
            out[key] = self.value.check(item, f"{path}.{key}", fail)
        return out


class Struct(Schema):
    def __init__(self, fields: dict[str, tuple[Schema, Any]], expected: str = "a mapping", doc: str = "") -> None:
        self.fields = fields
        self.expected = expected
        self.doc = doc

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in self.fields:
                known = ", ".join(sorted(self.fields))
                raise fail(f"{path}.{key}" if path else str(key), f"unknown key (known here: {known})")
            schema, _default = self.fields[key]
            out[key] = schema.check(item, f"{path}.{key}" if path else key, fail)
        for key, (_schema, default) in self.fields.items():
            if key not in out:
                out[key] = default() if callable(default) else default
        return out


class Probability(Schema):
    """A number strictly between 0 and 1: a confidence level."""

    expected = "a number between 0 and 1 (exclusive)"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")
        return float(value)


class OneOfKeys(Struct):
    """A Struct that also checks which of its keys go together (`rule(value) -> why or None`)."""

    def __init__(self, fields: dict[str, tuple[Schema, Any]], rule: Callable[[dict[str, Any]], str | None]) -> None:
        super().__init__(fields)
        self.rule = rule

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        out = super().check(value, path, fail)
        why = self.rule(out)
        if why:
            raise fail(path, why)
        return out


def _repeats_rule(value: dict[str, Any]) -> str | None:
    if value["seed_param"] and value["seed_env"]:
        return "give seed_param or seed_env, not both"
    if value["count"] > 1 and not (value["seed_param"] or value["seed_env"]):
        return "count > 1 needs seed_param (a params name) or seed_env (an environment variable) to vary the seed"
    return None


def _per_example_rule(value: dict[str, Any]) -> str | None:
    if not value["path"] or not value["key"]:
        return "needs path and key"
    pair = (value["label"], value["prediction"])
    if bool(value["score"]) == any(pair) or (any(pair) and not all(pair)):
        return "give score (a column), or label and prediction (two columns), not both"
    return None


# `train.repeats`: one commit trained `count` times, each with its own seed (`mlci record --repeat`, CI, sweeps)
REPEATS = OneOfKeys(
    {
        "count": (Number(integer=True, minimum=1), 1),
        "seed_param": (Str(), None),  # a params name set to the repeat's seed (0, 1, ...)
        "seed_env": (Str(), None),  # or an environment variable
    },
    _repeats_rule,
)
# `gate.per_example`: the evaluation's per-example results, read at each side's commit (gate.py)
PER_EXAMPLE = OneOfKeys(
    {
        "path": (Str(), None),  # a Parquet, CSV or JSON-lines file in the run's commit (git or a data pointer)
        "key": (Str(), None),  # the example id column: both sides must hold the same keys
        "score": (Str(), None),  # a per-example score column (0/1 correct: McNemar too)
        "label": (Str(), None),  # or a label and a prediction column: score = label == prediction
        "prediction": (Str(), None),
        "metric": (Str(), None),  # the gate rule it informs (default: the one rule with a confidence)
        "test": (Enum("auto", "bootstrap", "normal"), "auto"),  # auto: normal from 10,000 examples, else bootstrap
    },
    _per_example_rule,
)

METRIC_FIELD = Struct({"direction": (Enum("max", "min"), None)})
GATE_RULE = Struct(
    {
        "direction": (Enum("max", "min"), None),
        "max_drop": (Number(minimum=0), None),  # direction max: allowed absolute drop
        "max_drop_pct": (Number(minimum=0), None),  # direction max: allowed drop, % of the baseline
        "max_rise": (Number(minimum=0), None),  # direction min: allowed absolute rise
        "max_rise_pct": (Number(minimum=0), None),  # direction min: allowed rise, % of the baseline
        "min": (Number(), None),  # floor, whatever the baseline
        "max": (Number(), None),  # ceiling, whatever the baseline
        "required": (Bool(), False),  # a missing metric fails
        "confidence": (Probability(), None),  # with repeats or per-example results: a non-inferiority test
        "test": (Enum("auto", "welch", "bootstrap"), "auto"),  # repeats: Welch's t (auto) or a bootstrap
    }
)

TRUST = Struct({"signing_key": (Str(), None), "principal": (Str(), None), "allowed_signers": (Str(), None)})

# One entry per top-level section of mlci.yaml. Later features add theirs here.
SECTIONS: dict[str, Schema] = {
    "params": Struct({"files": (ListOf(Str()), None)}),
    "metrics": Struct({"files": (ListOf(Str()), None), "fields": (MapOf(METRIC_FIELD), dict)}),
    "ledger": Struct(
        {
            "remote": (Str(), "origin"),
            "auto_pull": (Bool(), False),
            # signed promotions (ledger/signing.py): the key `mlci promote` signs with, the
            # principal it signs as (default: git's author email), who is trusted
            "trust": (TRUST, lambda: dict.fromkeys(TRUST.fields)),
        }
    ),
    "train": Struct(
        {
            "command": (Str(), None),
            "deps": (ListOf(Str()), list),
            "repeats": (REPEATS, lambda: {"count": 1, "seed_param": None, "seed_env": None}),
        }
    ),
    "limits": Struct(
        {
            "max_file_mb": (Number(minimum=0), 64),
            "max_depth": (Number(integer=True, minimum=1), 64),
            "max_keys": (Number(integer=True, minimum=1), 100_000),
        }
    ),
    # the model file whose hash `mlci promote` records (a path in the repository)
    "model": Str(),
    "gate": Struct(
        {
            "baseline": (Str(), None),  # a stage, a branch or a commit-ish; default: the stage `deployed`
            "on_push": (Bool(), False),  # run the gate in the pre-push hook
            "require_baseline": (Bool(), False),  # no baseline at all fails instead of passing
            "require_signed_promotions": (Bool(), False),  # a stage baseline needs a verified signature
            "stale": (Enum("fail", "warn"), "warn"),  # a stale candidate fails or warns
            "eval_data": (ListOf(Str()), list),  # datasets the metrics were evaluated on
            "rules": (MapOf(GATE_RULE), dict),
            "per_example": (PER_EXAMPLE, None),  # absent: no per-example evaluation
        }
    ),
}


def register_section(name: str, schema: Schema) -> None:
    SECTIONS[name] = schema


_PLUGINS_LOADED = False


def load_plugin_sections() -> None:
    """Add the sections that feature packages declare in their own `config_schema.py`.

    A package (`mlci_tui/data/`, `mlci_tui/sweep/`, ...) owns the schema of its section, so
    adding a feature never edits this file; each module exposes `SECTIONS: dict[str, Schema]`.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    import importlib
    from pathlib import Path

    package_dir = Path(__file__).parent
    for child in sorted(package_dir.iterdir()):
        if (child / "config_schema.py").is_file():
            module = importlib.import_module(f"mlci_tui.{child.name}.config_schema")
            for name, schema in module.SECTIONS.items():
                register_section(name, schema)


class Config(Plain):
    __slots__ = ("toplevel", "source", "data")

    def __init__(self, root: str | os.PathLike[str], source: str | None, data: dict[str, Any] | None = None) -> None:
        self.toplevel = os.fspath(root)  # a string: `root` makes the Path when asked (see gitio.Repo)
        self.source = source  # "mlci.yaml", "pyproject.toml" or None (defaults)
        self.data = {} if data is None else data

    @property
    def root(self) -> Path:
        from pathlib import Path  # lazy: the commit hooks build a Config and never ask for its root

        return Path(self.toplevel)

    def section(self, name: str) -> dict[str, Any]:
        return self.data[name]

    @property
    def params_files(self) -> list[str]:
        return self.data["params"]["files"] or list(DEFAULT_PARAMS_FILES)

    @property
    def metrics_files(self) -> list[str]:
        return self.data["metrics"]["files"] or list(DEFAULT_METRICS_FILES)

    def direction(self, metric: str) -> str | None:
        spec = self.data["metrics"]["fields"].get(metric)
        return spec["direction"] if spec else None

    def repeat_settings(self) -> tuple[int, str | None, str | None]:
        """`train.repeats: {count, seed_param | seed_env}` as (count, seed_param, seed_env):
        how CI's train step, bisect probes and sweeps train one commit several times."""
        repeats = self.section("train")["repeats"]
        return int(repeats["count"]), repeats["seed_param"], repeats["seed_env"]

    def gated_metrics(self) -> list[str]:
        """The metrics the gate's rules name (what a narrow listing keeps in sight first)."""
        return sorted(self.section("gate")["rules"])

    @property
    def model(self) -> str | None:
        return self.data.get("model")

    @property
    def remote(self) -> str:
        return str(self.data["ledger"]["remote"])

    @property
    def limits(self) -> dict[str, Any]:
        return self.data["limits"]


def validate(raw: Any, source: str) -> dict[str, Any]:
    def fail(path: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {path}: {why}" if path else f"{source}: {why}")

    load_plugin_sections()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise fail("", f"expected a mapping of sections at the top level, got {_type_name(raw)}")
    for key in raw:
        if key not in SECTIONS:
            raise fail(str(key), f"unknown key (known here: {', '.join(sorted(SECTIONS))})")
    # every section is checked once; absent ones get their defaults
    try:
        return _check_sections(raw, fail)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None


def _check_sections(raw: dict[str, Any], fail: Any) -> dict[str, Any]:
    return {
        name: (
            None
            if raw.get(name) is None and not isinstance(schema, Struct)
            else schema.check(raw.get(name), name, fail)
        )
        for name, schema in SECTIONS.items()
    }


def parse_yaml_no_aliases(text: str, source: str) -> Any:
    """`yaml.safe_load` that refuses anchors and aliases (no alias bombs in a config)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                mark = event.start_mark
                raise ConfigError(f"{source}:{mark.line + 1}: YAML aliases are not allowed in mlci config")
            event = self.peek_event()
            if getattr(event, "anchor", None):
                mark = event.start_mark
                raise ConfigError(f"{source}:{mark.line + 1}: YAML anchors are not allowed in mlci config")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


def load(root: Path) -> Config:
    """The repo's config: mlci.yaml, else `[tool.mlci]` in pyproject.toml, else defaults."""
    path = root / CONFIG_FILE
    if path.is_file():
        return Config(root, CONFIG_FILE, validate(_load_yaml_file(path), CONFIG_FILE))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        raw = _read_text(pyproject, "pyproject.toml")
        if "mlci" in raw:  # `[tool.mlci]`, or `mlci = {...}` / `mlci.x = ...` under `[tool]`
            import tomllib

            try:
                tool = _tool_mlci(tomllib.loads(raw))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"pyproject.toml: invalid TOML: {exc}") from None
            if tool is not None:
                return Config(root, "pyproject.toml", validate(tool, "pyproject.toml [tool.mlci]"))
    return Config(root, None, validate({}, CONFIG_FILE))


def _tool_mlci(doc: dict[str, Any]) -> Any:
    tool = doc.get("tool")
    return tool.get("mlci") if isinstance(tool, dict) else None


def load_text(root: str | os.PathLike[str], text: str, source: str = CONFIG_FILE) -> Config:
    """Validate config text that is not (yet) on disk: a staged mlci.yaml, say."""
    return Config(root, source, validate(parse_yaml_no_aliases(text, source) or {}, source))


def _read_text(path: Path, name: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None


def _load_yaml_file(path: Path) -> Any:
    text = _read_text(path, path.name)
    data = parse_yaml_no_aliases(text, path.name)
    return {} if data is None else data


def load_from_git(repo: Any, treeish: str) -> Config:
    """The config as a commit (or the index, treeish ':') holds it: hooks read what git holds."""
    spec = (lambda name: f":{name}") if treeish in (":", ":index") else (lambda name: f"{treeish}:{name}")
    proc = repo.run("cat-file", "--batch", input=f"{spec(CONFIG_FILE)}\n{spec('pyproject.toml')}\n".encode())
    blobs = parse_cat_file_batch_ordered(proc.stdout)
    return load_from_blobs(repo.root, blobs[0], blobs[1])


def load_from_blobs(root: str | os.PathLike[str], yaml_blob: bytes | None, pyproject_blob: bytes | None) -> Config:
    """The config from a commit's `mlci.yaml` and `pyproject.toml` bytes (None: absent), for a
    caller that read them already (capture, through its one `git cat-file` process)."""
    if yaml_blob is not None:
        try:
            text = yaml_blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{CONFIG_FILE}: not UTF-8 text (offset {exc.start})") from None
        return load_text(root, text)
    if pyproject_blob is not None and b"mlci" in pyproject_blob:
        import tomllib

        try:
            tool = _tool_mlci(tomllib.loads(pyproject_blob.decode("utf-8", "replace")))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"pyproject.toml: invalid TOML: {exc}") from None
        if tool is not None:
            return Config(root, "pyproject.toml", validate(tool, "pyproject.toml [tool.mlci]"))
    return Config(root, None, validate({}, CONFIG_FILE))
