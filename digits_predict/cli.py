"""``digits-predict``: classify digit images and .npy arrays with the exported ONNX model.

Every input is answered on its own: a bad input costs one line on stderr and exit status 1
at the end, never the answers for the others. Usage errors and a model that cannot be
loaded exit with status 2 before any input is read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from digits_predict.errors import PredictError
from digits_predict.images import load_input
from digits_predict.predictor import Predictor
from kernel.cli import one_line, report_error, run_command

PROG = "digits-predict"
DEFAULT_MODEL = "models/model.onnx"
EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (argparse exits 2 on usage errors)."""
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda _: _run(args.model, args.inputs, as_json=args.json))


def _run(model_path: str, input_paths: Sequence[str], *, as_json: bool) -> int:
    try:
        predictor = Predictor(model_path)
    except PredictError as err:
        _report(str(err))
        return EXIT_USAGE
    answers: list[dict[str, Any]] = []
    failed = False
    for input_path in input_paths:
        for answer in _answers_for(predictor, input_path):
            if "error" in answer:
                failed = True
                _report(f"{answer['input']}: {answer['error']}")
            if as_json:
                answers.append(answer)
            elif "error" not in answer:
                print(
                    f"{one_line(answer['input'])}: digit {answer['digit']} "
                    f"(p={answer['probability']:.3f})",
                    flush=True,
                )
    if as_json:
        print(json.dumps(answers, indent=2))
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _answers_for(predictor: Predictor, input_path: str) -> list[dict[str, Any]]:
    """One answer per image in the input, or a single error answer for the whole input."""
    try:
        loaded = load_input(input_path)
    except (PredictError, OSError) as err:
        # OSError: the file vanished or became unreadable between the checks and the read.
        return [{"input": input_path, "error": str(err) or type(err).__name__}]
    prediction = predictor.predict(loaded.images)
    return [
        {
            "input": name,
            "digit": int(digit),
            "probability": _rounded(probabilities[digit]),
            "probabilities": [_rounded(p) for p in probabilities],
        }
        for name, digit, probabilities in zip(
            loaded.names, prediction.digits, prediction.probabilities, strict=True
        )
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Classify handwritten digits with the exported ONNX model (onnxruntime only). "
            "Image files of any size are brought to MNIST form first; a .npy file must "
            "hold MNIST-form pixels already: shape (28, 28) or (N, 28, 28), values 0..255, "
            "white digit on black."
        ),
        epilog=(
            "Exit status: 0 all inputs answered, 1 some input could not be read, "
            "2 usage error or the model cannot be loaded."
        ),
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="PATH",
        help=f"the ONNX model written by the export stage (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list of {input, digit, probability, probabilities} or "
        "{input, error} instead of one line per image (errors still go to stderr too)",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="an image file or a .npy array")
    return parser


def _report(message: str) -> None:
    report_error(PROG, message)


def _rounded(probability: float) -> float:
    # float32 digits beyond the sixth are noise; JSON readers need not see them.
    return round(float(probability), 6)


if __name__ == "__main__":
    sys.exit(main())
