"""``python -m serving``: serve a registered version of the model on 127.0.0.1.

    python -m serving [--alias champion] [--port 8080] [--server mlserver|mlflow]
    python -m serving reload [--alias champion] [--port 8080]

Downloads ``models:/<registered model>@<alias>`` from the project's store into
``.serve/<port>/`` and replaces this process with the server:

- ``mlserver`` (default): MLServer from ``.venv-serve`` with ``serving.runtime``, speaking
  the Open Inference Protocol (``/v2/health/ready``, ``/v2/models/<name>``,
  ``/v2/models/<name>/infer``); its gRPC twin listens on the next port. It starts through
  ``serving.mlserver_app``, which caps request bodies, checks the Host and closes the
  model-repository API to all but this folder's owner (see ``serving.guard``): the key in
  ``.serve/<port>/control.key`` lets ``reload`` (``serving.reload``) switch the running
  server to the version the alias names now, without a restart. Every answered image is
  appended to the request log in ``monitor.log_dir`` (``monitor.request_log``, opened from
  ``params.yaml``'s ``monitor`` section as ``monitor.log_settings`` hands it across;
  ``--no-request-log`` turns it off).
- ``mlflow``: ``mlflow models serve`` from this environment (``/invocations``), with this
  environment's ``bin`` on PATH, where MLflow looks for ``uvicorn``.

This module reads the arguments; ``serving.start`` and ``serving.reload`` do the work, on
the files ``serving.serve_folder`` describes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kernel.cli import OneLineArgumentParser, positive_whole_number, run_command
from serving.guard import MAX_QUEUED_REQUESTS
from serving.reload import reload
from serving.start import SERVERS, start

SERVE_DIR = Path(".serve")
MLSERVER = Path(".venv-serve/bin/mlserver")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reload"]:
        args = _reload_parser().parse_args(argv[1:])
        reload(args.alias, args.port, args.serve_dir)
        return
    args = _parser().parse_args(argv)
    start(
        args.alias,
        args.port,
        args.server,
        args.serve_dir,
        args.mlserver,
        request_log=not args.no_request_log,
        max_queued=args.max_queued,
    )


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m serving",
        name="serving",
        description=__doc__.splitlines()[0],
        epilog="python -m serving reload --help: switch a running server to the version the "
        "alias names now, without a restart",
    )
    parser.add_argument("--alias", default="champion", help="registry alias (default: champion)")
    parser.add_argument("--port", type=_port, default=8080, help="HTTP port (default: 8080)")
    parser.add_argument("--server", choices=SERVERS, default="mlserver")
    parser.add_argument(
        "--no-request-log", action="store_true", help="do not log answers (monitor.log_dir)"
    )
    parser.add_argument(
        "--max-queued",
        type=positive_whole_number,
        default=MAX_QUEUED_REQUESTS,
        help="MLServer: HTTP requests in hand (answered or waiting) before the next is refused "
        f"with 503 and Retry-After (default: {MAX_QUEUED_REQUESTS})",
    )
    parser.add_argument("--serve-dir", type=Path, default=SERVE_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--mlserver", type=Path, default=MLSERVER, help=argparse.SUPPRESS)
    return parser


def _reload_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m serving reload",
        name="serving",
        description="Switch a running `make serve` to the version the alias names now, "
        "without a restart.",
    )
    parser.add_argument("--alias", default="champion", help="registry alias (default: champion)")
    parser.add_argument(
        "--port", type=_port, default=8080, help="the server's HTTP port (default: 8080)"
    )
    parser.add_argument("--serve-dir", type=Path, default=SERVE_DIR, help=argparse.SUPPRESS)
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1024 <= port <= 65534:
        raise argparse.ArgumentTypeError(f"{text!r} is no port; expected 1024..65534")
    return port


if __name__ == "__main__":
    sys.exit(run_command("serving", main))
