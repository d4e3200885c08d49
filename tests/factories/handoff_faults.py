"""Failures injected at each step of a hand-off (``stages.handoff.registration``).

Export and quantize hand off the same way, so both are tested against one table: each
entry makes one step fail, and the hand-off must leave the previous files, versions and
alias as they were.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from factories.trained import Workspace
from kernel import atomic
from stages.run_record.runs import MODEL_DIGEST_TAG, RunFile, file_sha256
from tracking import registry


class Injected(RuntimeError):
    """The failure a test makes happen at one step of the hand-off."""


def _fail(*args: object, **kwargs: object) -> None:
    raise Injected("injected failure")


def _failing_second_swap(error: BaseException):
    """The second file swap of the commit fails: the first must be undone."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        real_replace, swaps = os.replace, []

        def replace(source, target):
            if str(source).endswith(".staged"):
                swaps.append(target)
                if len(swaps) == 2:
                    raise error
            return real_replace(source, target)

        monkeypatch.setattr(atomic.os, "replace", replace)

    return patch


def _after_the_real(name: str, error: BaseException):
    """Patch the registry's ``name`` to do its real work, then fail: the step took effect."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        real = getattr(registry, name)

        def done_then_fail(*args: object, **kwargs: object) -> None:
            real(*args, **kwargs)
            raise error

        monkeypatch.setattr(registry, name, done_then_fail)

    return patch


FAILING_STEPS = {
    "registering the version": (
        lambda mp: mp.setattr(registry, "register_version", _fail),
        Injected,
    ),
    "after the version exists": (_after_the_real("register_version", Injected("late")), Injected),
    "staging a file": (lambda mp: mp.setattr(atomic.StagedFiles, "write_json", _fail), Injected),
    "swapping the files in": (_failing_second_swap(Injected("disk full")), Injected),
    # Ctrl-C (or SIGTERM, which the stages turn into the same) between two renames
    "an interrupt between two renames": (
        _failing_second_swap(KeyboardInterrupt()),
        KeyboardInterrupt,
    ),
    "moving the alias": (lambda mp: mp.setattr(registry, "set_alias", _fail), Injected),
    "the alias moved but the call failed": (
        _after_the_real("set_alias", Injected("timeout")),
        Injected,
    ),
}


def run_of_its_own(ws: Workspace, folder: Path) -> tuple[str, Path]:
    """A finished run to hand off into, so the session's run stays as train left it."""
    import mlflow

    client = mlflow.MlflowClient(ws.uri)
    # a digest of its own: the stages find this run through its run file, and the session's
    # run file still finds the run train left
    digest = hashlib.sha256(f"{file_sha256(ws.model)} {folder}".encode()).hexdigest()
    tags = {"data_digest": "d" * 64, MODEL_DIGEST_TAG: digest}
    run_id = client.create_run(ws.ref.experiment_id, tags=tags).info.run_id
    client.set_terminated(run_id, status="FINISHED")
    run_file = folder / "run.json"
    experiment = client.get_experiment(ws.ref.experiment_id).name
    RunFile(experiment_name=experiment, model_sha256=digest).write(run_file)
    return run_id, run_file


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
