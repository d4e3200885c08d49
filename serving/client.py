"""Classify digits with the served model, through NVIDIA's Open Inference Protocol client.

    .venv-serve/bin/python -m serving.client [--url 127.0.0.1:8080] [--json] INPUT...

INPUT is an image file or a .npy array, read as ``digits-predict`` reads it. Any server
that speaks the protocol answers: MLServer (``make serve``), Triton, KServe. ``--url`` is
``host:port`` (``http://`` or ``https://`` in front is taken too). Exit status: 0 all
answered, 1 the server refused an input, 2 the server cannot be reached, is not ready or
does not know the model (one line naming the URL tried).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tritonclient.http as oip
from tritonclient.utils import InferenceServerException

from digits_predict.contract import INPUT_NAME, OUTPUT_NAME
from digits_predict.errors import PredictError
from digits_predict.images import load_input
from kernel.cli import report_error, run_command

PROG = "serving.client"
DEFAULT_URL = "127.0.0.1:8080"
DEFAULT_MODEL = "mnist-digits"
CONNECT_SECONDS = 10
# the protocol's readiness route, the first request the client sends
READY_PATH = "/v2/health/ready"


class DigitsClient:
    """One served digit classifier: its readiness, its metadata, its answers."""

    def __init__(self, url: str = DEFAULT_URL, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        self.base_url, address, ssl = server_address(url)
        self._client = oip.InferenceServerClient(
            address, ssl=ssl, connection_timeout=CONNECT_SECONDS, network_timeout=60
        )

    def ready(self) -> bool:
        return self._client.is_server_ready() and self._client.is_model_ready(self.model)

    def metadata(self) -> dict[str, Any]:
        return self._client.get_model_metadata(self.model)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, 10] for a [N, 28, 28] batch of raw 0..255 pixels.

        Sent as FP32 (exact for 0..255), the one datatype every protocol server takes:
        MLServer also accepts UINT8, Triton only what its config names.
        """
        images = np.ascontiguousarray(images, dtype=np.float32)
        tensor = oip.InferInput(INPUT_NAME, list(images.shape), "FP32")
        # JSON data: MLServer 1.7 does not read the protocol's binary extension in requests
        tensor.set_data_from_numpy(images, binary_data=False)
        wanted = oip.InferRequestedOutput(OUTPUT_NAME, binary_data=False)
        result = self._client.infer(self.model, [tensor], outputs=[wanted])
        return result.as_numpy(OUTPUT_NAME)

    def close(self) -> None:
        self._client.close()


def server_address(url: str) -> tuple[str, str, bool]:
    """``url`` (``host:port``, or with ``http://`` / ``https://`` in front) as the base URL to
    name in messages, the ``host:port`` tritonclient takes, and whether it is TLS."""
    scheme, found, rest = url.partition("://")
    if found and scheme.lower() not in ("http", "https"):
        raise ValueError(f"{url!r}: expected host:port, or http://host:port")
    scheme = scheme.lower() if found else "http"
    address = (rest if found else url).rstrip("/")
    if not address or "/" in address:
        raise ValueError(f"{url!r}: expected host:port, or http://host:port (no path)")
    return f"{scheme}://{address}", address, scheme == "https"


def unreachable(url: str, err: OSError) -> str:
    """One line for a server that cannot be reached at ``url``: why, and what to do."""
    if isinstance(err, socket.gaierror):
        reason = f"unknown host ({err.strerror or err})"
    elif isinstance(err, TimeoutError):
        reason = f"no connection within {CONNECT_SECONDS} s"
    else:
        reason = (err.strerror or str(err) or type(err).__name__).lower()
    return f"cannot reach {url}: {reason}; start it with make serve or point --url at the server"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    client = DigitsClient(args.url, args.model)
    try:
        try:
            ready = client.ready()
        except OSError as err:  # refused connection, unknown host, no answer
            _report(unreachable(client.base_url + READY_PATH, err))
            return 2
        if not ready:
            _report(f"model {args.model!r} at {client.base_url} is not ready")
            return 2
        answers, failed = [], False
        for path in args.inputs:
            try:
                loaded = load_input(path)
                probabilities = client.probabilities(loaded.images)
            except (PredictError, OSError, InferenceServerException) as err:
                failed = True
                _report(f"{path}: {_message(err)}")
                continue
            for name, row in zip(loaded.names, probabilities, strict=True):
                answers.append(
                    {"input": name, "digit": int(row.argmax()), "probabilities": row.tolist()}
                )
                if not args.json:
                    print(f"{name}: digit {row.argmax()} (p={row.max():.3f})", flush=True)
        if args.json:
            print(json.dumps({"metadata": client.metadata(), "answers": answers}))
        return 1 if failed else 0
    except InferenceServerException as err:
        _report(f"{client.base_url}: {_message(err)}")
        return 2
    except OSError as err:  # the server went away after it answered
        _report(unreachable(client.base_url, err))
        return 2
    finally:
        client.close()


# MLServer's answers to the protocol's binary tensor extension, which it does not read: the
# raw bytes after the JSON header fail its JSON parser one way or the other
BINARY_REFUSED = ("not valid UTF-8", "JSON decode error")


def _message(err: BaseException) -> str:
    if isinstance(err, InferenceServerException):
        status = f"HTTP {err.status()}: " if err.status() else ""
        text = f"{status}{err.message()}"
        if str(err.status()) == "422" and any(marker in text for marker in BINARY_REFUSED):
            text += (
                " (the server reads JSON tensors only: send them with binary_data=False, "
                "as DigitsClient does)"
            )
        return text
    return str(err)


def _report(message: str) -> None:
    report_error(PROG, message)


def _url(text: str) -> str:
    try:
        server_address(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        type=_url,
        default=DEFAULT_URL,
        help=f"the server, host:port or http://host:port (default {DEFAULT_URL})",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    parser.add_argument("--json", action="store_true", help="print metadata and answers as JSON")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="an image file or a .npy array")
    return parser


if __name__ == "__main__":
    sys.exit(run_command(PROG, main))
