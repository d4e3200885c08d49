"""Stage processes as the tests start them: a stage's arguments, ``python -m`` on this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from harness.processes import stage_command
from kernel.paths import PROJECT_ROOT


def empty_feedback() -> Path:
    """A feedback stage's file with nobody's corrections in it (both parts empty), made once."""
    import tempfile

    import numpy as np

    from kernel.atomic import write_npz

    path = Path(tempfile.gettempdir()) / f"empty-feedback-{os.getuid()}.npz"
    if not path.exists():
        empty = {"x": np.zeros((0, 28, 28), np.uint8), "y": np.zeros(0, np.uint8)}
        write_npz(path, {f"{part}_{k}": v for part in ("train", "drawn") for k, v in empty.items()})
    return path


def stage_args(
    stage: str, paths: Mapping[str, str | os.PathLike[str]] | None = None, root: Path = PROJECT_ROOT
) -> list[str]:
    """The arguments dvc.yaml gives ``python -m stages.<stage>``: what its ``main`` parses.

    A stage that reads the feedback set gets an empty one unless ``paths`` names another:
    what a project without corrections has."""
    paths = {"feedback_data": empty_feedback(), **(paths or {})}
    command = stage_command(stage, paths, root)
    assert command[:3] == ["python", "-m", f"stages.{stage}"], command
    return command[3:]


def run_module(
    module: str,
    *args: str | os.PathLike[str],
    cwd: Path,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args`` with this checkout's code, from ``cwd``; ``env`` added."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]
