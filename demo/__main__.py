"""``python -m demo`` (what ``make demo`` runs): the current models into the site, then serve it.

The model files are the pipeline's, named by dvc.yaml's ``vars`` (``onnx_model`` and, if the
pipeline has it, ``int8_model``); the site must have been built (``python -m demo.build``).
The answers the page reports go to the request log in ``monitor.log_dir``, under the
registry version each model file was registered as (``--no-request-log`` turns it off), and
the corrections people make go to the feedback store, ``feedback.store``. This module reads
the arguments; ``demo.launch`` does the work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo.launch import PROJECT, launch
from demo.serve import port_number
from kernel.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=PROJECT / "demo" / "site")
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free one")
    parser.add_argument(
        "--no-request-log", action="store_true", help="do not log the page's answers"
    )
    args = parser.parse_args(argv)
    return launch(args.site, args.port, request_log=not args.no_request_log)


if __name__ == "__main__":
    sys.exit(run_command("demo", main, expected=(OSError,)))
