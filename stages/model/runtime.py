"""TensorFlow, imported quietly: no CUDA, oneDNN or absl lines in a CPU machine's log.

TensorFlow's C++ runtime writes several lines to the stderr file descriptor while it
loads, before its own log level applies, and reports a missing GPU at ERROR level on
every CPU machine. ``import_tensorflow`` sets the log level first, holds the process's
stderr while the import runs, and passes on every line that is not one of those.
Problems that matter still surface as Python exceptions, which are untouched.

It also keeps Keras from importing scikit-learn, which it loads only for wrappers the
pipeline never uses (about a second of every TensorFlow stage's start).

Setting ``TF_CPP_MIN_LOG_LEVEL`` yourself to ``0`` or ``1`` (INFO lines wanted) turns both
off: TensorFlow then logs at that level and nothing is held or dropped. A level of ``2`` or
``3``, whoever set it (a parent process for its own import), still drops the noise.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# What TensorFlow 2.21 prints while loading on a CPU-only machine: nothing a user can act on.
LOAD_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|cudart_stub\.cc.*Could not find cuda drivers"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .*rebuild TensorFlow"
    r"|cuda_platform\.cc.*failed call to cuInit"
)


def import_tensorflow() -> ModuleType:
    """``import tensorflow`` with the log level set and the loading noise dropped."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    chosen = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    # a level of 0 or 1 asks for TensorFlow's INFO lines: show them all, nothing held; 2 or 3
    # (a user's, or one a parent process set for its own import) wants no loading noise
    verbose = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1")
    if not chosen:
        # 3: errors too, as a missing GPU is logged as one at the first op; real errors raise
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        with (
            contextlib.nullcontext() if verbose else _stderr_filtered(LOAD_NOISE),
            _without_scikit_learn(),
        ):
            import keras  # noqa: F401 - loads TensorFlow and its Keras backend while filtered
            import tensorflow
    finally:
        if not chosen:
            # TensorFlow has read and kept the level while loading; left in the environment,
            # every process this one starts (a test's stage, a sweep's trial) would take it
            # for its user's own choice and show the loading noise
            del os.environ["TF_CPP_MIN_LOG_LEVEL"]
    return tensorflow


@contextlib.contextmanager
def _without_scikit_learn() -> Iterator[None]:
    """Keras imports scikit-learn (and SciPy's stats) only for its sklearn wrappers, which
    it defines without them when the import fails; the pipeline never uses them, and the
    import costs about a second. Blocked only while Keras loads: ``import sklearn`` works after.
    """
    if "sklearn" in sys.modules:
        yield
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment] - makes `import sklearn` fail
    try:
        yield
    finally:
        if sys.modules.get("sklearn", False) is None:
            del sys.modules["sklearn"]


@contextlib.contextmanager
def _stderr_filtered(noise: re.Pattern[str]) -> Iterator[None]:
    """Hold what is written to file descriptor 2 in the block; replay the lines not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not noise.search(line):
                    print(line, file=sys.stderr)
