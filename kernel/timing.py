"""Wall-clock seconds per named phase of a stage, so its cost beyond the real work has names."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


class PhaseTimer:
    """Collects seconds per phase; ``startup`` is the interpreter start and imports before it.

    A phase that runs twice adds up; a phase whose body raises is still counted.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"startup": seconds_since_process_start()}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def summary(self) -> str:
        return ", ".join(f"{name} {value:.1f}" for name, value in self.seconds.items())


def seconds_since_process_start() -> float:
    """Seconds since this process started, from /proc; 0 where /proc is absent."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


# A file to which each stage appends one JSON line when its real work starts:
# {"stage": ..., "fixed_seconds": process start to that moment}. Set by ``make bench``.
WORK_STARTED_LOG = "PIPELINE_WORK_STARTED_LOG"


def note_work_started(stage: str) -> None:
    """Record this stage's fixed cost (interpreter, imports, params, store) when it is asked for."""
    target = os.environ.get(WORK_STARTED_LOG)
    if not target:
        return
    line = json.dumps({"stage": stage, "fixed_seconds": seconds_since_process_start()})
    with open(target, "a", encoding="utf-8") as log:
        log.write(line + "\n")
