"""Stage processes as dvc.yaml runs them: the command lines, read from dvc.yaml itself."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def pipeline_vars(root: Path = REPO_ROOT) -> dict[str, str]:
    """dvc.yaml's ``vars``: the one place each artifact's path is written."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    merged: dict[str, str] = {}
    for entry in pipeline.get("vars", []):
        merged.update(entry)
    return merged


def stage_command(
    stage: str, paths: Mapping[str, str | os.PathLike[str]] | None = None, root: Path = REPO_ROOT
) -> list[str]:
    """The stage's ``cmd`` from dvc.yaml as an argv, with ``paths`` replacing some ``vars``."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    values = {**pipeline_vars(root), **{k: str(v) for k, v in (paths or {}).items()}}
    command = re.sub(
        r"\$\{(\w+)\}", lambda match: values[match.group(1)], pipeline["stages"][stage]["cmd"]
    )
    return shlex.split(command)


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
    stage: str, paths: Mapping[str, str | os.PathLike[str]] | None = None, root: Path = REPO_ROOT
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
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
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
