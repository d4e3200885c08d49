"""Stage processes as dvc.yaml runs them, and one command run in a repository, captured."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from kernel.paths import PIPELINE_FILE, PROJECT_ROOT, pipeline_vars


def stage_command(
    stage: str, paths: Mapping[str, str | os.PathLike[str]] | None = None, root: Path = PROJECT_ROOT
) -> list[str]:
    """The stage's ``cmd`` from dvc.yaml as an argv, with ``paths`` replacing some ``vars``."""
    pipeline = yaml.safe_load((root / PIPELINE_FILE).read_text(encoding="utf-8"))
    values = {**pipeline_vars(root), **{k: str(v) for k, v in (paths or {}).items()}}
    command = re.sub(
        r"\$\{(\w+)\}", lambda match: values[match.group(1)], pipeline["stages"][stage]["cmd"]
    )
    return shlex.split(command)


def run_in_repo(
    args: Sequence[str | os.PathLike[str]],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """One command in ``cwd``, its output captured, no stdin; the caller checks it.

    Ten minutes at most by default: a command that takes longer here has hung."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
