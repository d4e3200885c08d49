"""The page's answers, reported back to its server and appended to the request log.

The page runs the model in the browser; after each answer it posts what the model saw and
said to ``/answers``:

    {"model": "fp32", "image": [784 numbers 0..255], "probabilities": [10 numbers]}

The server checks the body (one line and a 4xx for anything else), and logs the answer
under the registry version of the model file it serves (``registry_identity``): the page
names which of the site's models answered, never which version that is.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from monitor.request_log import RequestLog, ServedModel

ANSWERS_PATH = "/answers"
# 784 numbers and 10 probabilities in JSON take under 20 KB however they are written
MAX_ANSWER_BYTES = 64 * 1024
PIXELS = 28 * 28
DIGITS = 10
# probabilities summing further than this from 1 are not a softmax's
SUM_TOLERANCE = 1e-3
UNREGISTERED = "unregistered"


class AnswerError(ValueError):
    """A reported answer the server refuses; the message is the one line sent back."""


def parse_answer(body: bytes, models: Mapping[str, ServedModel]) -> tuple[ServedModel, Any, Any]:
    """The model, the 28x28 image and the probabilities of a reported answer, checked."""
    try:
        report = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise AnswerError("the body is not JSON; expected an object") from None
    expected = {"model", "image", "probabilities"}
    if not isinstance(report, dict) or set(report) != expected:
        keys = sorted(report) if isinstance(report, dict) else type(report).__name__
        raise AnswerError(f"the body has {keys}; expected an object with keys {sorted(expected)}")
    name = report["model"]
    if not isinstance(name, str) or name not in models:
        raise AnswerError(f"model {name!r} is not one this page serves ({sorted(models)})")
    image = number_list(report["image"], PIXELS, "image")
    if not all(0 <= value <= 255 for value in image):
        raise AnswerError("image values must be pixel values 0..255")
    probabilities = number_list(report["probabilities"], DIGITS, "probabilities")
    if not all(0 <= value <= 1 for value in probabilities):
        raise AnswerError("probabilities must each be within 0..1")
    if abs(math.fsum(probabilities) - 1) > SUM_TOLERANCE:
        raise AnswerError(f"probabilities sum to {math.fsum(probabilities):.4f}; expected 1")
    return (
        models[name],
        np.asarray(image, dtype=np.float32).reshape(1, 28, 28),
        np.asarray(probabilities, dtype=np.float64).reshape(1, DIGITS),
    )


def number_list(value: object, count: int, what: str) -> list[float]:
    if not isinstance(value, list) or len(value) != count:
        size = len(value) if isinstance(value, list) else type(value).__name__
        raise AnswerError(f"{what} has {size} values; expected a list of {count} numbers")
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise AnswerError(f"{what} holds something that is not a finite number")
    return [float(v) for v in value]


class PageAnswers:
    """The site's models as the registry knows them, and the log their answers go to."""

    def __init__(self, log: RequestLog, models: Mapping[str, ServedModel]) -> None:
        self.log = log
        self.models = dict(models)

    def record(self, body: bytes) -> None:
        model, image, probabilities = parse_answer(body, self.models)
        self.log.record(image, probabilities, model)

    def close(self) -> None:
        self.log.close()


def registry_identity(
    model_file: Path, registered_name: str, precision: str, preferred: tuple[str, ...] = ()
) -> ServedModel:
    """The registry version made from ``model_file`` (by its training digest), with its
    alias (the first of ``preferred`` it has, else any); ``unregistered`` (and a warning
    line) when the store has none or is not there."""
    try:
        version, aliases = _lookup(model_file, registered_name, precision)
    except Exception as err:  # the page serves without a store; its log says so
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(
            f"demo: warning: the {precision} model's registry version is unknown ({message}); "
            f"its answers are logged as version {UNREGISTERED!r}",
            file=sys.stderr,
            flush=True,
        )
        return ServedModel(registered_name, UNREGISTERED, None)
    alias = next((a for a in preferred if a in aliases), aliases[0] if aliases else None)
    return ServedModel(registered_name, version, alias)


def _lookup(model_file: Path, registered_name: str, precision: str) -> tuple[str, list[str]]:
    import mlflow

    from digits_predict import Predictor
    from tracking.registry import versions_from_run
    from tracking.store import connect

    digest = Predictor(model_file).metadata["model_digest"]
    client = mlflow.MlflowClient(connect())
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.model_sha256 = '{digest}'", max_results=1)
    if not runs:
        raise LookupError(f"no run tagged model_sha256 = {digest[:12]}...")
    versions = versions_from_run(registered_name, runs[0].info.run_id, precision)
    if not versions:
        raise LookupError(f"run {runs[0].info.run_id} registered no {precision} version")
    version = versions[-1]
    return version, sorted(client.get_model_version(registered_name, version).aliases)
