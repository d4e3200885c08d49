"""The page's answers, reported back to its server and appended to the request log.

The page runs the model in the browser; after each answer it posts what the model saw and
said to ``/answers``:

    {"page": "<the id the server gave the page>", "model": "fp32",
     "image": [784 numbers 0..255], "probabilities": [10 numbers]}

The server checks the body (one line and a 4xx for anything else: a number that is no pixel
value, however large, is a 400 like any other), takes at most ``PER_PAGE_PER_MINUTE``
answers a minute from one page id (``demo.pages``: ids the server handed out) and
``ALL_PER_MINUTE`` from all, and logs the answer under the registry version of the model
file it serves (``registry_identity``): the page names which of the site's models answered,
never which version that is. The page's log writes at most ``LOG_BYTES_PER_DAY`` a day.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from demo.pages import PageIds, RateLimit
from kernel.params import MonitorParams
from monitor.log_settings import open_request_log
from monitor.request_log import RequestLog, ServedModel

ANSWERS_PATH = "/answers"
# A person draws a stroke a second or two at most; a page reporting faster is no person's.
PER_PAGE_PER_MINUTE = 120
ALL_PER_MINUTE = 600
# What the page's request log may write a day (about 150,000 answers without pixels): at
# ALL_PER_MINUTE all day it would write about 400 MB; past this the answers go unlogged,
# counted, until the day (UTC) ends.
LOG_BYTES_PER_DAY = 64 * 2**20
# An integer of more digits than this is no pixel value or probability; Python refuses to
# read one of more than 4300 digits at all, so the JSON reader must not try.
_MAX_DIGITS = 32
# 784 numbers and 10 probabilities in JSON take under 20 KB however they are written
MAX_ANSWER_BYTES = 64 * 1024
PIXELS = 28 * 28
DIGITS = 10
# probabilities summing further than this from 1 are not a softmax's
SUM_TOLERANCE = 1e-3
UNREGISTERED = "unregistered"
# what the page's records name as their ``source``
SOURCE = "page"


class AnswerError(ValueError):
    """A reported answer the server refuses; the message is the one line sent back."""


def read_report(body: bytes, expected: set[str]) -> dict[str, Any]:
    """The JSON object of a post with exactly the ``expected`` keys, else ``AnswerError``."""
    try:
        report = json.loads(body, parse_int=_bounded_int)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AnswerError("the body is not JSON; expected an object") from None
    if not isinstance(report, dict) or set(report) != expected:
        keys = sorted(report) if isinstance(report, dict) else type(report).__name__
        raise AnswerError(
            f"the body has {short(keys)}; expected an object with keys {sorted(expected)}"
        )
    return report


class _HugeNumber(float):
    """An integer of too many digits to be read: out of every range, and said as such."""

    def __new__(cls, text: str) -> _HugeNumber:
        number = super().__new__(cls, "-inf" if text.startswith("-") else "inf")
        number.digits = len(text.lstrip("-"))
        return number

    def __repr__(self) -> str:
        return f"a {'negative ' if self < 0 else ''}number of {self.digits} digits"


def _bounded_int(text: str) -> int | float:
    # Python refuses to read an integer of more than 4300 digits (a ValueError deep in the
    # decoder), and one of fewer is no value the page sends either
    return _HugeNumber(text) if len(text.lstrip("-")) > _MAX_DIGITS else int(text)


def short(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message quoting what a client sent
    stays short whatever it sent."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long for Python to write out
        return "a number of thousands of digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_answer(
    body: bytes, models: Mapping[str, ServedModel]
) -> tuple[object, ServedModel, Any, Any]:
    """The page id, the model, the 28x28 image and the probabilities of a reported answer."""
    report = read_report(body, {"page", "model", "image", "probabilities"})
    name = report["model"]
    if not isinstance(name, str) or name not in models:
        raise AnswerError(f"model {short(name)} is not one this page serves ({sorted(models)})")
    image = number_list(report["image"], PIXELS, "image", 255)
    probabilities = number_list(report["probabilities"], DIGITS, "probabilities", 1)
    if abs(math.fsum(probabilities) - 1) > SUM_TOLERANCE:
        raise AnswerError(f"probabilities sum to {math.fsum(probabilities):.4f}; expected 1")
    return (
        report["page"],
        models[name],
        np.asarray(image, dtype=np.float32).reshape(1, 28, 28),
        np.asarray(probabilities, dtype=np.float64).reshape(1, DIGITS),
    )


def number_list(value: object, count: int, what: str, top: int) -> list[float]:
    """``count`` numbers within 0..``top``, as floats; ``AnswerError`` for anything else.

    Each is checked before it becomes a float: an integer too large for a float is out of
    range, not a crash, and ``true`` is no number.
    """
    if not isinstance(value, list) or len(value) != count:
        size = len(value) if isinstance(value, list) else type(value).__name__
        raise AnswerError(f"{what} has {size} values; expected a list of {count} numbers")
    unit = "pixel values" if top == 255 else "within"
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise AnswerError(f"{what} holds {short(v)}, which is not a number")
        # an int is compared as it is: made a float first, a large one would overflow
        if not (isinstance(v, int) or math.isfinite(v)) or not 0 <= v <= top:
            raise AnswerError(f"{what} values must be {unit} 0..{top}; found {short(v)}")
    return [float(v) for v in value]


class PageAnswers:
    """The site's models as the registry knows them, and the log their answers go to."""

    def __init__(
        self,
        log: RequestLog,
        models: Mapping[str, ServedModel],
        pages: PageIds | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        self.log = log
        self.models = dict(models)
        self.pages = pages or PageIds()
        self.limit = limit or RateLimit(PER_PAGE_PER_MINUTE, ALL_PER_MINUTE, "answers")

    def record(self, body: bytes) -> None:
        """Check, limit and log one reported answer (``AnswerError``, ``UnknownPage`` or
        ``TooMany`` when it is not logged)."""
        page, model, image, probabilities = parse_answer(body, self.models)
        self.limit.take(self.pages.check(page))
        self.log.record(image, probabilities, model)

    def close(self) -> None:
        self.log.close()


def open_page_answers(
    monitor: MonitorParams,
    folder: Path,
    models: Mapping[str, ServedModel],
    pages: PageIds,
    *,
    run_model: ServedModel,
    tracking_uri: str,
) -> PageAnswers:
    """The page's answers for ``models``, logged to ``folder`` (at most ``LOG_BYTES_PER_DAY`` a
    day) and, in team mode, copied to one run of the team's store that names ``run_model``."""
    log = open_request_log(
        monitor,
        folder,
        SOURCE,
        run_model,
        tracking_uri=tracking_uri,
        max_day_bytes=LOG_BYTES_PER_DAY,
    )
    return PageAnswers(log, models, pages)


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
