"""Ray Tune schedules the trials: on the cluster ``RAY_ADDRESS`` names, else on a Ray
started in this process on 127.0.0.1 for the sweep alone. One CPU per trial, at most
``workers`` at once; a trial that fails (its experiment, or its worker killed) is
reported and the others go on.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.plan import SweepError, Trial
from sweep.trial import SweepContext, TrialFailed, run_trial

# Ray's switch for a runtime on this machine alone: without it, Ray replaces 127.0.0.1 by
# the machine's address and its GCS listens on every interface (ray-project/ray#26293)
LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Outcome:
    name: str
    overrides: tuple[str, ...]
    metrics: Mapping[str, object] = field(default_factory=dict)
    error: str | None = None  # one line; None when the experiment was pushed
    earlier: bool = False  # finished by an earlier start of the sweep
    log: str | None = None  # the trial's commands and their output

    @property
    def finished(self) -> bool:
        return self.error is None

    @property
    def state(self) -> str:
        if self.error is not None:
            return "failed"
        return "kept" if self.earlier else "finished"

    @property
    def accuracy(self) -> float:
        return float(self.metrics["test_accuracy"])


def start(address: str | None, env: Mapping[str, str]) -> str:
    """Connect to the cluster at ``address``, or start one on loopback; where it runs.

    ``env`` reaches every worker (the tracking server's address and credentials).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to the internet
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    local = address is None or address.rsplit(":", 1)[0] in _LOOPBACK
    if local:
        os.environ.update(LOCAL_ONLY)
    if address is None and "RAY_AUTH_TOKEN" not in os.environ:
        # a token of this sweep's own, in memory: Ray would otherwise write one to ~/.ray
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    import ray

    options = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "runtime_env": {"env_vars": dict(env)},
    }
    try:
        if address is None:
            ray.init(address="local", _node_ip_address="127.0.0.1", **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = f"RAY_ADDRESS={address}" if address else "a local Ray"
        hint = "" if address is None else (
            "; expected a running cluster there (a cluster with token authentication also "
            "needs RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN)"
        )  # fmt: skip
        raise SweepError(f"cannot start the sweep on {where}: {first}{hint}") from None
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = int(sum(node.get("Resources", {}).get("CPU", 0) for node in nodes))
    where = f"Ray at {address}" if address else "a local Ray on 127.0.0.1"
    return f"{where}: {len(nodes)} node(s), {cpus} CPU(s)"


def stop() -> None:
    import ray

    ray.shutdown()


def run(
    trials: Sequence[Trial], context: SweepContext, workers: int, storage: Path
) -> list[Outcome]:
    """Run ``trials`` as one Ray Tune experiment; one outcome per trial, in trial order."""
    from ray import tune

    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the outcomes are ours to tell
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": 1}),
        param_space={
            "trial": tune.grid_search(
                [{"name": t.name, "overrides": list(t.overrides)} for t in trials]
            )
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=workers,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{context.sweep}-{int(time.time())}",
            storage_path=str(storage),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[_progress(len(trials))],
        ),
    )
    results = tuner.fit()
    by_name: dict[str, Outcome] = {}
    for result in results:
        trial = result.config["trial"]
        log = str(Path(result.path) / "trial.log") if result.path else None
        if result.error is None and result.metrics and "test_accuracy" in result.metrics:
            figures = dict(result.metrics)
            outcome = Outcome(trial["name"], tuple(trial["overrides"]), figures, log=log)
        else:
            error = failure_line(result.error)
            outcome = Outcome(trial["name"], tuple(trial["overrides"]), error=error, log=log)
        by_name[trial["name"]] = outcome
    return [by_name[t.name] for t in trials]


def _trial_name(trial: object) -> str:
    return trial.config["trial"]["name"]


def failure_line(error: BaseException | None) -> str:
    """One line for a failed trial: the trial's own reason, or what happened to its worker."""
    if error is None:
        return "ended without reporting its figures"
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, TrialFailed):
        return str(cause)
    kind = type(cause).__name__
    if "ActorDied" in kind or "ActorError" in kind or "WorkerCrashed" in kind:
        return "its Ray worker died (killed, or out of memory) before the experiment was pushed"
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{kind}: {lines[-1].strip() if lines else 'no message'}"


def _progress(total: int) -> object:
    """A Tune callback saying when a trial starts, finishes or fails (Tune's tables are off)."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self) -> None:
            self.done = 0

        def on_trial_start(self, iteration: int, trials: list, trial: object, **info: Any) -> None:
            spec = trial.config["trial"]
            _say(f"trial {spec['name']} started: {' '.join(spec['overrides'])}")

        def on_trial_result(
            self, iteration: int, trials: list, trial: object, result: dict, **info: Any
        ) -> None:
            self.done += 1
            _say(
                f"trial {result['experiment']} finished ({self.done} of {total}): test accuracy "
                f"{result['test_accuracy']:.4f}, experiment run in {result['run_seconds']:.0f} s"
            )

        def on_trial_error(self, iteration: int, trials: list, trial: object, **info: Any) -> None:
            self.done += 1
            _say(f"trial {trial.config['trial']['name']} failed ({self.done} of {total})")

    return Progress()


def _say(line: str) -> None:
    print(f"sweep: {line}", file=sys.stderr, flush=True)
