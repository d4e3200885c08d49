"""The same 4-trial grid through ``dvc queue start -j 2`` and through ``python -m sweep``
on a local Ray with 2 workers, in the bench's project copy: wall times, their ratio, and
what a Ray trial spends outside ``dvc exp run`` (clone, pull, push).

The Ray sweep pushes to a DVC remote in a local folder; MLflow is the copy's SQLite store
for both. The queue's experiments run first, then the sweep's, on the same commit.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

GRID = ["-S", "train.dropout=0.2,0.3", "-S", "train.hidden_units=[256],[512]",
        "-S", "train.epochs=3"]  # fmt: skip
TRIALS = 4
WORKERS = 2


def bench_sweep(
    repo: Path, work: Path, log: Path, run: Callable[..., float], env: dict[str, str]
) -> dict:
    """``run(command, cwd, log)`` runs a command and returns its wall seconds."""
    remote = work / "sweep-remote"
    run(["dvc", "remote", "add", "--local", "-d", "bench", str(remote)], repo, log)
    run(["dvc", "push", "-q"], repo, log)  # what both start from; the sweep would push it

    started = time.perf_counter()
    run(["dvc", "exp", "run", "--queue", *GRID], repo, log)
    run(["dvc", "queue", "start", "-j", str(WORKERS)], repo, log)
    while _queue_busy(repo, env):
        time.sleep(2)
    queue_wall = time.perf_counter() - started
    failed = _queue_failed(repo, env)
    if failed:
        raise SystemExit(f"bench: the queued grid had failures: {failed}; see {log}")

    report = work / "sweep.json"
    ray_wall = run(
        [sys.executable, "-m", "sweep", *GRID, "--workers", str(WORKERS), "--name", "bench",
         "--report", str(report)],
        repo, log,
    )  # fmt: skip
    trials = json.loads(report.read_text())["trials"]
    if len(trials) != TRIALS or any(t["state"] != "finished" for t in trials):
        raise SystemExit(f"bench: the Ray sweep did not finish every trial; see {log}")
    figures = [t["figures"] for t in trials]

    def median(key: str) -> float:
        return statistics.median(f.get(key, 0.0) for f in figures)

    outside = [f["clone_seconds"] + f["pull_seconds"] + f["push_seconds"] for f in figures]
    result = {
        "trials": TRIALS,
        "workers": WORKERS,
        "grid": " ".join(GRID),
        "queue_wall_seconds": queue_wall,
        "ray_wall_seconds": ray_wall,
        "ratio": ray_wall / queue_wall,
        "ray_trial_median_seconds": {
            phase: median(f"{phase}_seconds") for phase in ("clone", "pull", "run", "push")
        },
        "ray_trial_outside_run_median_seconds": statistics.median(outside),
        # what the sweep spends beyond its trials' dvc exp run, per trial: Ray's start,
        # Tune's scheduling, clones, pulls, pushes, the fetch of the refs at the end
        "ray_overhead_per_trial_seconds": (ray_wall - _rounds(figures)) / TRIALS,
        "accuracy": {t["name"]: t["figures"]["test_accuracy"] for t in trials},
    }
    print(
        f"bench: sweep of {TRIALS} on Ray {ray_wall:.0f} s vs dvc queue {queue_wall:.0f} s "
        f"({result['ratio']:.2f} x)",
        file=sys.stderr,
    )
    return result


def _rounds(figures: list[dict]) -> float:
    """Wall time the trials' ``dvc exp run`` alone would take, ``WORKERS`` at a time."""
    runs = sorted((f["run_seconds"] for f in figures), reverse=True)
    lanes = [0.0] * WORKERS
    for seconds in runs:
        lanes[lanes.index(min(lanes))] += seconds
    return max(lanes)


def _queue_status(repo: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "queue", "status"], cwd=repo, env=env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout


def _queue_busy(repo: Path, env: dict[str, str]) -> bool:
    status = _queue_status(repo, env)
    return any(word in status for word in ("Queued", "Running"))


def _queue_failed(repo: Path, env: dict[str, str]) -> list[str]:
    return [line for line in _queue_status(repo, env).splitlines() if "Failed" in line]
