"""``python -m monitor`` (``make monitor``): has what the deployed model is asked drifted?

    python -m monitor [--last N | --since 24h] [--log-dir DIR] [--out reports/monitoring]

Reads a window of the request log (the last ``monitor.window`` answers by default; with a
team server for the tracking store, the log every member's server copied there), compares
it with the training data's descriptors and labels (``monitor.drift``), writes
``report.html`` (Evidently's) and ``summary.json`` into ``--out`` (both or neither), and logs
an MLflow run in the ``monitor.experiment_name`` experiment with the scores as metrics and
both files as artifacts (``monitor.drift_check`` does the work). Exit status 0: no drift;
1: drift past ``params.yaml``'s thresholds (one line naming what moved), or a window too
small to judge, or any other failure (one line each).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kernel.cli import positive_whole_number, run_command
from kernel.params import DEFAULT_PARAMS_FILE, load_params
from kernel.paths import artifact
from monitor.drift_check import check_drift
from stages.dataset.arrays import split_file

OUT_DIR = Path("reports/monitoring")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return check_drift(
        load_params(args.params).monitor,
        last=args.last,
        since=args.since,
        log_dir=args.log_dir,
        out=args.out,
        train=args.train,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitor", description=__doc__.splitlines()[0])
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--last", type=positive_whole_number, help="the last N answers (monitor.window)"
    )
    window.add_argument("--since", help="the answers of the last 30m, 24h, 7d, ...")
    parser.add_argument("--log-dir", type=Path, help="the request log (monitor.log_dir)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"default {OUT_DIR}")
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="the params file")
    # the training split the model learned from, where dvc.yaml's preprocess stage writes it
    train = split_file(artifact("prepared"), "train")
    parser.add_argument("--train", type=Path, default=train, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(run_command("monitor", main, any_error=True))
