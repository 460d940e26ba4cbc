"""Search strategies: the params of each trial, from a sweep's params space.

Values are exact: a `range` is stepped in Decimal arithmetic, so 0.1, 0.2, 0.3 come out as
written (never 0.30000000000000004), and `stop` is excluded as in Python and Hydra.
grid and random produce every trial at create time; tpe asks Optuna for a few at a time,
given the results so far.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
from decimal import Decimal
from typing import Any

from mlci_tui.errors import ConfigError, InputError
from mlci_tui.sweep.spec import SweepSpec

Params = dict[str, Any]


def _dec(value: int | float) -> Decimal:
    return Decimal(str(value))


def range_values(start: int | float, stop: int | float, step: int | float) -> list[int | float]:
    """[start, stop) by step, exactly: integers stay integers, decimals keep their digits."""
    ints = all(isinstance(v, int) for v in (start, stop, step))
    s, e, d = _dec(start), _dec(stop), _dec(step)
    out: list[int | float] = []
    value = s
    while (value < e) if d > 0 else (value > e):
        out.append(int(value) if ints else float(value))
        value += d
        if len(out) > 100_000:
            raise InputError(f"range {[start, stop, step]} has more than 100,000 values")
    return out


def discrete(space: dict[str, list[Any]]) -> list[Any] | None:
    """Every value of a discrete space; None for a continuous one."""
    ((kind, spec),) = space.items()
    if kind == "values":
        return list(spec)
    if kind == "range":
        return range_values(*spec)
    if kind == "int":
        low, high = spec
        if high - low > 100_000:
            return None
        return list(range(low, high + 1))
    return None


def _nice(value: float) -> float:
    """A sampled float kept to 6 significant digits: readable in tables and params files."""
    return float(f"{value:.6g}")


def sample(space: dict[str, list[Any]], rng: random.Random) -> Any:
    ((kind, spec),) = space.items()
    if kind == "uniform":
        return _nice(rng.uniform(spec[0], spec[1]))
    if kind == "loguniform":
        return _nice(math.exp(rng.uniform(math.log(spec[0]), math.log(spec[1]))))
    if kind == "int":
        return rng.randint(spec[0], spec[1])
    values = discrete(space)
    assert values is not None
    return rng.choice(values)


def grid(spec: SweepSpec) -> list[Params]:
    names = list(spec.params)
    axes = []
    for name in names:
        values = discrete(spec.params[name])
        if values is None:
            raise ConfigError(
                f"sweeps.{spec.name}.params.{name}: grid needs discrete values (values, range or int); "
                "use method: random or tpe for uniform and loguniform"
            )
        axes.append(values)
    combos = itertools.islice(itertools.product(*axes), spec.max_trials)
    return [dict(zip(names, combo)) for combo in combos]


def random_trials(spec: SweepSpec, seed: int) -> list[Params]:
    rng = random.Random(seed)
    count = spec.max_trials or 10
    return [{name: sample(space, rng) for name, space in spec.params.items()} for _ in range(count)]


def initial_trials(spec: SweepSpec, seed: int) -> list[Params]:
    """The trials queued at create: all of them for grid and random, `parallel` for tpe."""
    if spec.method == "grid":
        return grid(spec)
    if spec.method == "random":
        return random_trials(spec, seed)
    return tpe_suggest(spec, seed, [], [], min(spec.parallel, spec.max_trials or spec.parallel))


def tpe_available() -> bool:
    return importlib.util.find_spec("optuna") is not None


def _distributions(spec: SweepSpec) -> dict[str, Any]:
    import optuna

    dists: dict[str, Any] = {}
    for name, space in spec.params.items():
        ((kind, bounds),) = space.items()
        if kind == "uniform":
            dists[name] = optuna.distributions.FloatDistribution(bounds[0], bounds[1])
        elif kind == "loguniform":
            dists[name] = optuna.distributions.FloatDistribution(bounds[0], bounds[1], log=True)
        elif kind == "int":
            dists[name] = optuna.distributions.IntDistribution(bounds[0], bounds[1])
        else:
            values = discrete(space)
            assert values is not None
            dists[name] = optuna.distributions.CategoricalDistribution(values)
    return dists


def tpe_suggest(spec: SweepSpec, seed: int, done: list[Params], values: list[float | None], count: int) -> list[Params]:
    """`count` new trials from Optuna's TPE sampler, told the results so far (None = failed)."""
    if not tpe_available():
        raise ConfigError(f"sweeps.{spec.name}.method: tpe needs Optuna (pip install 'mlci-tui[optuna]')")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(spec)
    sampler = optuna.samplers.TPESampler(seed=seed + len(done), n_startup_trials=max(2, spec.parallel))
    study = optuna.create_study(direction="maximize" if spec.direction == "max" else "minimize", sampler=sampler)
    for params, value in zip(done, values):
        try:
            state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
            study.add_trial(
                optuna.trial.create_trial(
                    params={k: params[k] for k in dists if k in params},
                    distributions=dists,
                    value=value,
                    state=state,
                )
            )
        except ValueError:
            continue  # a value outside the space (the spec changed): not evidence for TPE
    out = []
    for _ in range(count):
        trial = study.ask(dists)
        params = {
            k: (_nice(v) if isinstance(v, float) and not _in_values(spec, k) else v) for k, v in trial.params.items()
        }
        out.append(params)
    return out


def _in_values(spec: SweepSpec, name: str) -> bool:
    return next(iter(spec.params[name])) in ("values", "range")
