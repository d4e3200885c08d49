"""The team server's cost to a member: the train stage logging to ``make team-up``'s MLflow
server (PostgreSQL, S3, basic-auth as a member) against the same stage on the local
SQLite store, same data and params, interleaved."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from bench.commands import timed
from harness.team_stack import team_stack


def bench_team_server(
    repo: Path, work: Path, log: Path, repeats: int, stage_cmd: Callable[[Path], list[str]],
    base_env: dict[str, str],
) -> dict:  # fmt: skip
    """``stage_cmd(out)``: the train stage writing into ``out``."""
    local_env = {k: v for k, v in base_env.items() if not k.startswith("MLFLOW_TRACKING_")}
    local, served = [], []
    with team_stack() as stack:
        server_env = {**local_env, **stack["members"]["alice"]}
        for round_ in range(repeats):  # interleaved, so drift in machine load hits both alike
            local.append(timed(stage_cmd(work / f"local-{round_}"), repo, log, local_env))
            served.append(timed(stage_cmd(work / f"team-{round_}"), repo, log, server_env))
    local_seconds, served_seconds = statistics.median(local), statistics.median(served)
    return {
        "repeats": repeats,
        "sqlite_seconds": local_seconds,
        "server_seconds": served_seconds,
        "ratio": served_seconds / local_seconds,
        "sqlite_runs": local,
        "server_runs": served,
        "server": "mlflow server --workers 1, PostgreSQL 15, SeaweedFS S3, basic-auth member",
        "os_user_is_root": os.geteuid() == 0,
        "python": sys.version.split()[0],
    }
