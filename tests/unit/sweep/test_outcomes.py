"""What a failed trial says: the stage's own error line, or what happened to its worker."""

from __future__ import annotations

import pytest

from sweep.engine import failure_line
from sweep.trial import TrialFailed, error_line


@pytest.mark.parametrize(
    ("output", "line"),
    [
        (
            "Reproducing 'train'\ntrain: error: params.yaml: train.dropout = 1.5: expected a "
            "number < 1.0\nERROR: failed to reproduce 'train': failed to run: python -m "
            "stages.train, exited with 1\n",
            "train: error: params.yaml: train.dropout = 1.5: expected a number < 1.0",
        ),
        ("export: interrupted\nERROR: failed to reproduce 'export'\n", "export: interrupted"),
        (
            "ERROR: failed to push data to the cloud - 1 files failed\n",
            "ERROR: failed to push data to the cloud - 1 files failed",
        ),  # fmt: skip
        (
            "Cloning...\nfatal: repository '/gone' does not exist\n",
            "fatal: repository '/gone' does not exist",
        ),  # fmt: skip
        ("something odd\n\n", "something odd"),
        ("", "no output"),
    ],
)
def test_the_error_line_of_a_failed_command(output: str, line: str) -> None:
    assert error_line(output) == line


class ActorDiedError(Exception):
    """Named as Ray names the error of a worker that died."""


class _Wrapped(Exception):
    """What Ray hands back: the trial's exception as ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("Traceback (most recent call last):\n  ...\nlong text")
        self.cause = cause


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (_Wrapped(TrialFailed("run: train: error: bad")), "run: train: error: bad"),
        (ActorDiedError("The actor died unexpectedly\nbefore finishing"), "its Ray worker died"),
        (_Wrapped(ValueError("first\nlast words")), "ValueError: last words"),
        (None, "ended without reporting its figures"),
    ],
)
def test_a_failed_trial_is_told_in_one_line(error: BaseException | None, line: str) -> None:
    said = failure_line(error)
    assert said.startswith(line) and "\n" not in said
