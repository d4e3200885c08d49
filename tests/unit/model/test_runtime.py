"""import_tensorflow: TensorFlow's loading noise is dropped, anything else on stderr is kept."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from kernel.paths import PROJECT_ROOT
from stages.model.runtime import LOAD_NOISE, _stderr_filtered

FIT_ONE_EPOCH = """
from stages.model.runtime import import_tensorflow
import_tensorflow()
import keras, numpy as np
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
model.compile("adam", "mse")
model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0)
import os  # what a process this one starts would inherit
print("fitted", os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
"""


def _fit_one_epoch(**extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "CUDA"))}
    return subprocess.run(
        [sys.executable, "-c", FIT_ONE_EPOCH],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": str(PROJECT_ROOT), **extra_env},
        check=False,
    )


def test_a_cpu_training_process_logs_nothing_from_tensorflow() -> None:
    done = _fit_one_epoch()
    assert done.returncode == 0, done.stderr
    # the level set for the import is not left for the processes this one starts, which
    # would take it for their user's own and show the loading noise
    assert done.stdout.strip() == "fitted None"
    assert done.stderr.strip() == "", done.stderr


def test_a_quiet_level_set_by_a_parent_still_drops_the_loading_noise() -> None:
    done = _fit_one_epoch(TF_CPP_MIN_LOG_LEVEL="3")  # e.g. a process that imported TF itself
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fitted 3"
    assert done.stderr.strip() == "", done.stderr


def test_a_log_level_of_the_users_own_shows_tensorflows_log() -> None:
    done = _fit_one_epoch(TF_CPP_MIN_LOG_LEVEL="0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fitted 0"
    assert LOAD_NOISE.search(done.stderr), "nothing held back: the loading lines are there"


@pytest.mark.parametrize(
    "line",
    [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795589480.999094   27073 port.cc:153] oneDNN custom operations are on. You",
        "I0000 00:00:1795589480.999355   27073 cudart_stub.cc:31] Could not find cuda drivers on",
        "E0000 00:00:1795588301.474903   15344 cuda_platform.cc:52] failed call to cuInit: INTER",
    ],
)
def test_the_noise_patterns_match_what_tensorflow_prints(line: str) -> None:
    assert LOAD_NOISE.search(line)


def test_other_lines_written_to_the_descriptor_pass_through(capfd: pytest.CaptureFixture) -> None:
    with _stderr_filtered(re.compile("noise")):
        os.write(2, b"some noise here\na real problem\n")
        print("also from Python", file=sys.stderr)
    err = capfd.readouterr().err
    assert "a real problem" in err and "also from Python" in err
    assert "noise" not in err
