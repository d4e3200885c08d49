"""Which trials a sweep runs: ``-S`` settings expanded the way ``dvc exp run --queue`` does.

A grid is every combination (DVC's own Hydra expansion: ``key=a,b``, ``choice(a,b)``,
``range(1,4)``). A random search draws ``samples`` of them with a seed, and may also draw
from ``interval(a,b)`` or ``tag(log, interval(a,b))``. Pure: no git, no DVC, no Ray.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kernel.cli import CommandError

PARAMS_FILE = "params.yaml"
# an experiment's name is a git ref's last part: DVC refuses the rest
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,40}")


class SweepError(CommandError):
    """A sweep that cannot start: one line saying what was wrong and what was expected."""


@dataclass(frozen=True)
class Trial:
    """One experiment of the sweep: its DVC name and its ``-S`` overrides."""

    name: str
    overrides: tuple[str, ...]

    def describe(self) -> str:
        return " ".join(self.overrides)

    def message(self, sweep: str) -> str:
        """The experiment's commit message: what a resumed sweep checks it against."""
        return f"sweep {sweep}: {self.describe()}"


@dataclass(frozen=True)
class Plan:
    name: str
    base_commit: str
    settings: tuple[str, ...]  # the -S arguments as given
    samples: int | None  # None: the whole grid
    seed: int
    trials: tuple[Trial, ...]

    @property
    def swept_keys(self) -> tuple[str, ...]:
        """The params whose value differs between trials (the MLflow UI's axes)."""
        values: dict[str, set[str]] = {}
        for trial in self.trials:
            for override in trial.overrides:
                key, _, value = override.partition("=")
                values.setdefault(key, set()).add(value)
        return tuple(key for key, seen in values.items() if len(seen) > 1)


def make_plan(
    settings: Sequence[str],
    params: Mapping[str, object],
    base_commit: str,
    *,
    samples: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> Plan:
    """The trials of ``settings`` (``key=a,b`` …) over ``params`` (params.yaml, loaded)."""
    if not settings:
        raise SweepError("no params to sweep: give at least one -S key=a,b (e.g. train.dropout)")
    overrides = _parse(settings)
    for override in overrides:
        _check_key(override.key_or_group, params)
    if samples is None:
        combos = _grid(overrides)
    else:
        combos = _random(overrides, samples, seed)
    if name is None:
        digest = hashlib.sha256("\n".join([base_commit, *map(" ".join, combos)]).encode())
        name = f"sweep-{digest.hexdigest()[:7]}"
    elif not _NAME.fullmatch(name):
        raise SweepError(
            f"sweep name {name!r}: expected letters, digits, '-' or '_' (at most 41, "
            "a letter or digit first): it prefixes each trial's DVC experiment name"
        )
    trials = tuple(
        Trial(name=f"{name}-{index}", overrides=combo) for index, combo in enumerate(combos, 1)
    )
    return Plan(name, base_commit, tuple(settings), samples, seed, trials)


def _parse(settings: Sequence[str]) -> list:
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import to_hydra_overrides
    from hydra.errors import HydraException

    for setting in settings:
        path, colon, _ = setting.partition("=")[0].rpartition(":")
        if colon and path != PARAMS_FILE:
            raise SweepError(
                f"-S {setting!r}: the pipeline's params are in {PARAMS_FILE}; "
                f"expected key=values (or {PARAMS_FILE}:key=values)"
            )
    grouped = to_path_overrides(settings).get(PARAMS_FILE, [])
    try:
        return to_hydra_overrides(grouped)
    except HydraException as err:
        first = str(err).strip().splitlines()[0]
        raise SweepError(
            f"-S: cannot read the settings ({first}); expected key=value or key=a,b,c"
        ) from None


def _check_key(key: str, params: Mapping[str, object]) -> None:
    node: object = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise SweepError(f"-S {key}: {PARAMS_FILE} has no key {key}; expected one of its keys")
        node = node[part]


def _grid(overrides: list) -> list[tuple[str, ...]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if any(override.is_interval_sweep() for override in overrides):
        raise SweepError(
            "-S: interval(...) has no grid; add --samples N for a random search over it"
        )
    return [tuple(combo) for combo in BasicSweeper.split_arguments(overrides, None)[0]]


def _random(overrides: list, samples: int, seed: int) -> list[tuple[str, ...]]:
    if samples < 1:
        raise SweepError(f"--samples {samples}: expected at least 1 trial")
    rng = np.random.default_rng(seed)
    if not any(override.is_interval_sweep() for override in overrides):
        grid = _grid(overrides)  # discrete: draw distinct combinations
        if samples > len(grid):
            raise SweepError(
                f"--samples {samples}: the grid has {len(grid)} combinations; "
                f"expected at most {len(grid)} (or drop --samples for the whole grid)"
            )
        return [grid[i] for i in sorted(rng.choice(len(grid), size=samples, replace=False))]
    return [tuple(_draw(o, rng) for o in overrides) for _ in range(samples)]


def _draw(override: object, rng: np.random.Generator) -> str:
    key = override.key_or_group
    if override.is_interval_sweep():
        interval = override.value()
        low, high = float(interval.start), float(interval.end)
        if "log" in interval.tags:
            if low <= 0:
                raise SweepError(f"-S {key}: a log interval needs a start above 0, got {low}")
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return f"{key}={value:.6g}"
    if override.is_sweep_override():
        choices = list(override.sweep_string_iterator())
        return f"{key}={choices[rng.integers(len(choices))]}"
    return f"{key}={override.get_value_element_as_str()}"
