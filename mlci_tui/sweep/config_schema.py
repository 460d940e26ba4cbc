"""The `sweeps:` section of mlci.yaml: one named sweep per key (see docs/sweeps.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlci_tui.config import Enum, ListOf, MapOf, Number, Schema, Str, Struct, _type_name
from mlci_tui.errors import ConfigError

KINDS = ("values", "range", "uniform", "loguniform", "int")


def as_number(value: Any) -> int | float | None:
    """A YAML number, or a string that is one: PyYAML reads `1e-5` (no dot) as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value)
        except ValueError:
            return None
    return None


class ParamSpace(Schema):
    """One param's space: exactly one of values, range, uniform, loguniform, int."""

    expected = "a mapping with one of " + ", ".join(KINDS)

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if isinstance(value, list):  # shorthand: a plain list is `values`
            value = {"values": value}
        if not isinstance(value, dict) or len(value) != 1:
            raise fail(path, f"expected {self.expected}, got {value!r}")
        ((kind, spec),) = value.items()
        if kind not in KINDS:
            raise fail(f"{path}.{kind}", f"unknown kind (known: {', '.join(KINDS)})")
        where = f"{path}.{kind}"
        if kind == "values":
            if not isinstance(spec, list) or not spec:
                raise fail(where, "expected a non-empty list of values")
            for i, item in enumerate(spec):
                if isinstance(item, (dict, list)):
                    raise fail(f"{where}[{i}]", "values must be scalars (numbers, strings, booleans)")
            return {"values": list(spec)}
        want = 3 if kind == "range" else 2
        shape = "[start, stop, step]" if kind == "range" else "[low, high]"
        if not isinstance(spec, list) or len(spec) != want:
            raise fail(where, f"expected {shape}, got {spec!r}")
        nums = [as_number(v) for v in spec]
        for i, num in enumerate(nums):
            if num is None:
                raise fail(f"{where}[{i}]", f"expected a number, got {spec[i]!r}")
        if kind == "int" and not all(isinstance(n, int) for n in nums):
            raise fail(where, f"int bounds must be integers, got {spec!r}")
        if kind == "range":
            start, stop, step = nums
            assert start is not None and stop is not None and step is not None
            if step == 0 or (stop - start) * step <= 0:
                raise fail(where, f"range {spec!r} is empty (stop is excluded; step must move start toward stop)")
        else:
            low, high = nums
            assert low is not None and high is not None
            if low > high or (kind != "int" and low == high):
                raise fail(where, f"low must be below high, got {spec!r}")
            if kind == "loguniform" and low <= 0:
                raise fail(where, f"loguniform bounds must be positive, got {spec!r}")
        return {kind: nums}


class AnyMap(Schema):
    """A mapping with string keys and any YAML values: keyword arguments handed to a cluster manager."""

    expected = "a mapping"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise fail(path, f"expected {self.expected} with string keys, got {_type_name(value)} {value!r}")
        return dict(value)


class PushSetting(Schema):
    """`push:` auto (push when a ledger remote exists), true or false."""

    expected = "auto, true or false"

    def check(self, value: Any, path: str, fail: Callable[[str, str], ConfigError]) -> Any:
        if value in ("auto", True, False):
            return value
        raise fail(path, f"expected {self.expected}, got {_type_name(value)} {value!r}")


RESOURCES = Struct(
    {
        "gpus": (Number(integer=True, minimum=0), None),  # per trial: CUDA_VISIBLE_DEVICES, Dask resource GPU
        "gpu_share": (Number(integer=True, minimum=1), None),  # trials per GPU (local); default 1
        "memory": (Str(r"[0-9.]+\s*[KMGT]i?B?", "a size such as 8GiB or 500MB"), None),  # Dask resource MEMORY
        "runner": (ListOf(Str()), None),  # CI: the trial jobs' runner labels (GitHub runs-on, GitLab tags)
    }
)
BUDGET = Struct(
    {
        "max_trials": (Number(integer=True, minimum=1), None),  # trials started, then dispatch stops
        "max_time": (Number(minimum=0), None),  # seconds since the sweep's first trial started
        "max_cost": (Number(minimum=0), None),  # trial-hours x price_per_hour
    }
)
CLUSTER = Struct(
    {
        "manager": (Str(), None),  # import path of a Dask cluster manager class (docs/sweeps.md#clusters)
        "kwargs": (AnyMap(), dict),  # handed to the manager (EC2Cluster(**kwargs), Gateway(address=..., auth=...))
        "options": (AnyMap(), dict),  # Gateway cluster options (gateway.new_cluster(**options))
        "adapt": (AnyMap(), None),  # adaptive scaling instead of scale(-j): {minimum, maximum} (default 0..-j)
    }
)

SWEEP = Struct(
    {
        "command": (Str(), None),  # default: train.command
        "params": (MapOf(ParamSpace()), dict),
        "params_file": (Str(), None),  # where plain param names are written; default: the first params file
        "method": (Enum("grid", "random", "tpe"), "grid"),
        "max_trials": (Number(integer=True, minimum=1), None),
        "seed": (Number(integer=True), None),
        "metric": (Str(), None),
        "direction": (Enum("max", "min"), None),
        "parallel": (Number(integer=True, minimum=1), 1),
        "executor": (Enum("local", "dask", "ci"), "local"),
        "scheduler": (Str(), None),  # dask scheduler address; default: a LocalCluster
        "retries": (Number(integer=True, minimum=0), 1),
        "timeout": (Number(minimum=0), None),  # seconds per trial; none by default
        "resources": (RESOURCES, None),
        "pruner": (Enum("median", "hyperband"), None),  # Optuna's pruners, on the metric's dvclive steps
        "prune_after": (Number(integer=True, minimum=0), None),  # median: finished trials before pruning starts
        "budget": (BUDGET, None),
        "price_per_hour": (Number(minimum=0), None),  # per trial-hour, for budget.max_cost
        "cluster": (CLUSTER, None),  # a Dask cluster mlci creates for the sweep (executor dask)
        "repeats": (Number(integer=True, minimum=1), None),  # trainings per trial (default train.repeats.count)
        "checkpoint_interval": (Number(minimum=0), None),  # s between uploads of a running trial's checkpoints (60)
        "push": (PushSetting(), "auto"),  # push the ledger as trials finish
    }
)

SECTIONS: dict[str, Schema] = {"sweeps": MapOf(SWEEP)}
