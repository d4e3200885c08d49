"""Classify digits with the served model, through NVIDIA's Open Inference Protocol client.

    .venv-serve/bin/python -m serving.client [--url 127.0.0.1:8080] [--json] INPUT...

INPUT is an image file or a .npy array, read as ``digits-predict`` reads it. Any server
that speaks the protocol answers: MLServer (``make serve``), Triton, KServe. Exit status:
0 all answered, 1 the server refused an input, 2 the server is not ready or unknown.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tritonclient.http as oip
from tritonclient.utils import InferenceServerException

from digits_predict.contract import INPUT_NAME, OUTPUT_NAME
from digits_predict.errors import PredictError
from digits_predict.images import load_input
from kernel.cli import report_error

PROG = "serving.client"
DEFAULT_URL = "127.0.0.1:8080"
DEFAULT_MODEL = "mnist-digits"


class DigitsClient:
    """One served digit classifier: its readiness, its metadata, its answers."""

    def __init__(self, url: str = DEFAULT_URL, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        self._client = oip.InferenceServerClient(url, connection_timeout=10, network_timeout=60)

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    client = DigitsClient(args.url, args.model)
    try:
        if not client.ready():
            _report(f"model {args.model!r} at {args.url} is not ready")
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
        _report(f"{args.url}: {_message(err)}")
        return 2
    except OSError as err:  # refused connection, unknown host
        _report(f"{args.url}: cannot reach the server ({err})")
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"host:port (default {DEFAULT_URL})")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    parser.add_argument("--json", action="store_true", help="print metadata and answers as JSON")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="an image file or a .npy array")
    return parser


if __name__ == "__main__":
    sys.exit(main())
