"""How the benchmark runs the commands it measures: in the project copy, output to its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def bench_env() -> dict[str, str]:
    """This environment without a tracking store or experiment of its own, this venv first."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def start_logged(
    command: Sequence[str], cwd: Path, log: Path, env: Mapping[str, str]
) -> subprocess.Popen:
    """Start ``command``, its output appended to ``log`` under the command line."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


def timed(
    command: Sequence[str],
    cwd: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> float:
    """Run ``command`` (in ``bench_env()`` unless ``env`` is given); return its wall seconds.
    A failure, when ``check``, ends the benchmark naming the log."""
    started = time.perf_counter()
    status = start_logged(command, cwd, log, bench_env() if env is None else env).wait()
    wall = time.perf_counter() - started
    if check and status != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed with status {status}; see {log}")
    return wall


def json_of(command: Sequence[str], cwd: Path, env: Mapping[str, str], what: str) -> dict:
    """The JSON object the last line of ``command``'s output holds; a failure ends the
    benchmark with the last line ``what`` said on stderr."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench: {what} failed: {last}")
    return json.loads(result.stdout.strip().splitlines()[-1])
