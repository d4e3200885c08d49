"""One trial, as a Ray worker runs it: a clone of the base commit, the pipeline through
``dvc exp run``, and the experiment pushed (``dvc exp push``: its ref to git, its outputs
to the DVC remote). The same stages, params validation and gates as any experiment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sweep.plan import Trial
from sweep.workspace import command_line

# a stage's own error line ("train: error: ..."), else DVC's
_STAGE_ERROR = re.compile(r"^[a-z_]+: (error|interrupted)\b")


class TrialFailed(Exception):
    """A trial that did not end in a pushed experiment: one line saying why."""


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares; handed to Ray, not logged (it holds keys)."""

    sweep: str
    repo_url: str  # where the base commit is and where experiments are pushed
    base_commit: str
    dvc_config_local: str  # the DVC remote's settings and keys
    parent_run_id: str
    scratch: str | None = None  # where clones go on a node; None: its temporary folder


def run_trial(config: dict, context: SweepContext) -> None:
    """Ray Tune's function trainable: run the trial ``config`` names and report its figures."""
    from ray import tune

    name, overrides = config["trial"]["name"], list(config["trial"]["overrides"])
    log = Path(tune.get_context().get_trial_dir()) / "trial.log"
    figures = run_experiment(context, name, overrides, log)
    tune.report(figures)


def run_experiment(
    context: SweepContext, name: str, overrides: list[str], log: Path
) -> dict[str, object]:
    """Clone, pull, ``dvc exp run``, ``dvc exp push``; the test metrics and phase timings."""
    log.parent.mkdir(parents=True, exist_ok=True)
    clone = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=context.scratch))
    seconds: dict[str, float] = {}
    env = _trial_env(context, clone)
    try:
        with open(log, "a", encoding="utf-8") as out:

            def step(phase: str, args: list[str], cwd: Path = clone) -> None:
                start = time.monotonic()
                _run(args, cwd, env, out, phase)
                seconds[phase] = seconds.get(phase, 0.0) + time.monotonic() - start

            step("clone", ["git", "clone", "-q", "--no-checkout", context.repo_url, str(clone)])
            step("clone", ["git", "checkout", "-q", "--detach", context.base_commit])
            if context.dvc_config_local:
                local = clone / ".dvc" / "config.local"
                local.write_text(context.dvc_config_local, encoding="utf-8")
                local.chmod(0o600)
            # what the base commit's outputs the remote has (the data, at least); the rest
            # the experiment makes
            step("pull", ["dvc", "pull", "-q", "--allow-missing"])
            message = Trial(name, tuple(overrides)).message(context.sweep)  # resume checks it
            sets = [arg for override in overrides for arg in ("-S", override)]
            step("run", ["dvc", "exp", "run", "-q", "-n", name, "-m", message, *sets])
            step("push", ["dvc", "exp", "push", "-q", "origin", name])
            metrics = json.loads((clone / "reports" / "metrics.json").read_text())
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    return {
        "test_accuracy": float(metrics["accuracy"]),
        **{f"test_{key}": float(value) for key, value in metrics.items() if key != "accuracy"},
        **{f"{phase}_seconds": value for phase, value in seconds.items()},
        "experiment": name,
    }


def _trial_env(context: SweepContext, clone: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)  # the stages' `python` is this one
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONHASHSEED": "0",
        "DVC_NO_ANALYTICS": "1",
        "PIPELINE_SWEEP_NAME": context.sweep,
        "PIPELINE_SWEEP_PARENT_RUN_ID": context.parent_run_id,
        # the trials of one node share the registry lock their clones would each have
        "PIPELINE_REGISTRY_LOCK": str(
            Path(context.scratch or tempfile.gettempdir()) / "mnist-pipeline.registry-lock"
        ),
    }


def _run(args: list[str], cwd: Path, env: dict[str, str], out: object, phase: str) -> None:
    args = command_line(args)
    out.write(f"$ {' '.join(args)}\n")
    out.flush()
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    out.write(done.stdout + done.stderr)
    out.flush()
    if done.returncode != 0:
        raise TrialFailed(f"{phase}: {error_line(done.stderr + done.stdout)}")


def error_line(output: str) -> str:
    """The line of a failed command that says why: a stage's own, else DVC's or git's last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    stage = [line for line in lines if _STAGE_ERROR.match(line)]
    if stage:
        return stage[-1]
    errors = [line for line in lines if line.startswith(("ERROR:", "fatal:", "error:"))]
    return (errors or lines or ["no output"])[-1]
