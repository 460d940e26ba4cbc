"""A sweep definition: read from `sweeps.NAME` in mlci.yaml or from a file, checked, normalised."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.errors import ConfigError, InputError
from mlci_tui.scrub import scrub
from mlci_tui.sweep import repeats
from mlci_tui.sweep.config_schema import SWEEP

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_RANDOM_TRIALS = 10


@dataclass
class SweepSpec:
    """Everything a worker needs to run a trial, stored whole in the `sweep` event."""

    name: str
    command: str
    params: dict[str, dict[str, list[Any]]]
    params_file: str
    method: str = "grid"
    max_trials: int | None = None
    seed: int | None = None
    metric: str | None = None
    direction: str = "max"
    parallel: int = 1
    executor: str = "local"
    scheduler: str | None = None
    retries: int = 1
    timeout: float | None = None
    resources: dict[str, Any] | None = None
    pruner: str | None = None
    prune_after: int | None = None
    budget: dict[str, Any] | None = None
    price_per_hour: float | None = None
    cluster: dict[str, Any] | None = None
    checkpoint_interval: float | None = None  # seconds between two uploads of a running trial's checkpoints
    repeats: int = 1  # trainings per trial, seeds 0..K-1 through seed_param or seed_env (sweep/repeats.py)
    seed_param: str | None = None
    seed_env: str | None = None
    push: Any = False  # sweeps from mlci.yaml or a file default to "auto" (build); others (bisect probes) never push
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "extra"}
        return cls(**known)


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InputError(
            f"sweep name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def from_config(root: Path, name: str, file: str | None = None) -> SweepSpec:
    """The sweep NAME from mlci.yaml (`sweeps.NAME`), or the definition in FILE."""
    check_name(name)
    cfg = config_mod.load(root)
    if file:
        raw = _read_file(Path(file))
        if isinstance(raw, dict) and "sweeps" in raw and isinstance(raw["sweeps"], dict):
            if name not in raw["sweeps"]:
                raise ConfigError(f"{file}: sweeps.{name}: no such sweep (defined: {', '.join(raw['sweeps'])})")
            raw, where = raw["sweeps"][name], f"sweeps.{name}"
        else:
            where = ""

        def fail(path: str, why: str) -> ConfigError:
            return ConfigError(f"{file}: {path}: {why}" if path else f"{file}: {why}")

        data = SWEEP.check(raw, where, fail)
    else:
        sweeps = cfg.data.get("sweeps") or {}
        if name not in sweeps:
            defined = ", ".join(sorted(sweeps)) or "none"
            raise ConfigError(
                f"{cfg.source or config_mod.CONFIG_FILE}: sweeps.{name}: no such sweep (defined: {defined})"
            )
        data = sweeps[name]
    return build(cfg, name, data, source=file or f"{cfg.source or config_mod.CONFIG_FILE}: sweeps.{name}")


def build(cfg: config_mod.Config, name: str, data: dict[str, Any], *, source: str) -> SweepSpec:
    """A checked section entry → SweepSpec, with the defaults that come from the rest of the config."""
    command = data.get("command") or cfg.data["train"]["command"]
    if not command:
        raise ConfigError(f"{source}: command: not set, and train.command is not set either")
    if not data.get("params"):
        raise ConfigError(f"{source}: params: a sweep needs at least one param")
    params_file = data.get("params_file") or cfg.params_files[0]
    if any(ch in params_file for ch in "*?["):
        raise ConfigError(f"{source}: params_file: {params_file!r} is a pattern; name the file to write params into")
    metric = data.get("metric")
    direction = data.get("direction") or (cfg.direction(metric) if metric else None) or "max"
    method = data.get("method") or "grid"
    max_trials = data.get("max_trials")
    if method in ("random", "tpe") and max_trials is None:
        max_trials = DEFAULT_RANDOM_TRIALS
    if method == "tpe" and not metric:
        raise ConfigError(f"{source}: metric: tpe needs the metric it optimises")
    if data.get("pruner") and not metric:
        raise ConfigError(f"{source}: pruner: pruning needs the metric whose steps it compares (metric:)")
    if (data.get("budget") or {}).get("max_cost") is not None and data.get("price_per_hour") is None:
        raise ConfigError(f"{source}: budget.max_cost: needs price_per_hour (the price of one trial-hour)")
    if data.get("cluster") and not (data["cluster"] or {}).get("manager"):
        raise ConfigError(f"{source}: cluster.manager: name the Dask cluster manager (e.g. dask_gateway.Gateway)")
    _no_credentials(data.get("cluster") or {}, source)
    return SweepSpec(
        name=name,
        command=command,
        params=data["params"],
        params_file=params_file,
        method=method,
        max_trials=max_trials,
        seed=data.get("seed"),
        metric=metric,
        direction=direction,
        parallel=int(data.get("parallel") or 1),
        executor=data.get("executor") or "local",
        scheduler=data.get("scheduler"),
        retries=int(data["retries"]) if data.get("retries") is not None else 1,
        timeout=data.get("timeout"),
        resources=_present(data.get("resources")),
        pruner=data.get("pruner"),
        prune_after=data.get("prune_after"),
        budget=_present(data.get("budget")),
        price_per_hour=data.get("price_per_hour"),
        cluster=_present(data.get("cluster")),
        checkpoint_interval=data.get("checkpoint_interval"),
        push=data.get("push", "auto"),
        **repeats.settings(cfg, data, source),
    )


def _no_credentials(cluster: dict[str, Any], source: str) -> None:
    """Credentials come from the environment only: a cluster argument the ledger's scrubber would
    mask (a password, a token, a key) is refused before it reaches the sweep event."""
    for part in ("kwargs", "options", "adapt"):
        given = cluster.get(part) or {}
        masked = scrub(given)
        for key, value in given.items():
            if masked.get(key, value) != value or key not in masked:
                raise ConfigError(
                    f"{source}: cluster.{part}.{key}: looks like a credential; credentials come from the "
                    "environment only (the cluster manager's own variables or files), never mlci.yaml"
                )


def _present(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """A sub-mapping without its unset keys; None when nothing in it is set."""
    kept = {k: v for k, v in (section or {}).items() if v not in (None, {}, [])}
    return kept or None


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    return config_mod.parse_yaml_no_aliases(text, str(path))
