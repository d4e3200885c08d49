"""Run a command; record its wall time, the peak RSS of it and its children, and its fixed
cost (process start to its first useful work, as the stage notes it) as JSON.

Used as a prefix of each DVC stage command in the benchmark's copy of the project:
``python -m bench.probe --label train --out times/train.json -- python -m stages.train ...``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    from kernel.timing import WORK_STARTED_LOG

    args.out.parent.mkdir(parents=True, exist_ok=True)
    noted = args.out.with_suffix(".work-started.jsonl")
    noted.unlink(missing_ok=True)
    started = time.perf_counter()
    status = subprocess.call(command, env={**os.environ, WORK_STARTED_LOG: str(noted)})
    wall = time.perf_counter() - started
    fixed = [json.loads(line)["fixed_seconds"] for line in _lines(noted)]
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    args.out.write_text(
        json.dumps(
            {
                "label": args.label,
                "wall_seconds": wall,
                "peak_rss_mb": peak_kib / 1024,
                "fixed_seconds": fixed[0] if fixed else None,
                "status": status,
            }
        )
    )
    return status


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    sys.exit(main())
