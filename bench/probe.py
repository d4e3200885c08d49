"""Run a command; record its wall time and the peak RSS of it and its children as JSON.

Used as a prefix of each DVC stage command in the benchmark's copy of the project:
``python -m bench.probe --label train --out times/train.json -- python -m stages.train ...``
"""

from __future__ import annotations

import argparse
import json
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
    started = time.perf_counter()
    status = subprocess.call(command)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "label": args.label,
                "wall_seconds": wall,
                "peak_rss_mb": peak_kib / 1024,
                "status": status,
            }
        )
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
