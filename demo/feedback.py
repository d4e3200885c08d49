"""Corrections from the page: "that was a 4" (or "right"), stored once per image.

After an answer the page can say which digit it really was; it posts to ``/feedback``:

    {"page": "<the page's id>", "model": "fp32", "image": [784 numbers 0..255],
     "answer": 7, "label": 4}

The server checks it like an answer (``demo.answers``) and more: a label and an answer
0..9, an image with ink (a blank one teaches nothing), at most ``PER_PAGE_PER_MINUTE``
from one page and ``ALL_PER_MINUTE`` from all pages. Each bad submission is a 4xx and one
line; nothing else is stored. A good one is written to the feedback store, one JSON file
per image named by its digest (``monitor.request_log.image_digest``), so the same image
sent twice is stored once, whoever sends it: the first label stays. The feedback stage
(``stages.feedback``) gathers the store into versioned data.

In team mode (a team MLflow server for the store) each stored file is also copied to the
team's bucket, as an artifact of the page server's run in the ``feedback.experiment_name``
experiment (``monitor.shipping``); on the machine that trains,

    python -m demo.feedback pull

copies every member's corrections from there into its own store (those it has are kept).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo.answers import PIXELS, AnswerError, number_list
from kernel.cli import CommandError, run_command
from monitor.descriptors import INK_LEVEL
from monitor.request_log import ServedModel, image_digest
from monitor.shipping import ArtifactShipper, download_artifacts, is_team_store

FEEDBACK_PATH = "/feedback"
PER_PAGE_PER_MINUTE = 30
ALL_PER_MINUTE = 300
_PAGE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
RECORD_SUFFIX = ".json"
# how the copies in the team's store are found: runs of this role, artifacts in this folder
SHIP_ROLE = "feedback-store"
SHIP_FOLDER = "feedback"


def _warn(message: str) -> None:
    print(f"demo: warning: {message}", file=sys.stderr, flush=True)


def team_shipper(
    tracking_uri: str, experiment_name: str, model: ServedModel
) -> ArtifactShipper | None:
    """What copies the store's files to the team's bucket; None when the store is local."""
    if not is_team_store(tracking_uri):
        return None
    return ArtifactShipper(
        tracking_uri, experiment_name, "page", model, 0.0, role=SHIP_ROLE, folder=SHIP_FOLDER
    )


def pull(tracking_uri: str, experiment_name: str, store: Path) -> int:
    """Every correction in the team's store that ``store`` lacks, copied into it."""
    return download_artifacts(
        tracking_uri,
        experiment_name,
        store,
        role=SHIP_ROLE,
        folder=SHIP_FOLDER,
        wanted=lambda name: name.endswith(RECORD_SUFFIX) and len(name) == 32 + len(RECORD_SUFFIX),
        skip_present=True,
    )


class TooMany(AnswerError):
    """More submissions than the limits allow; answered 429."""


@dataclass(frozen=True)
class Correction:
    page: str
    model: ServedModel
    image: np.ndarray  # 28 x 28 float32, 0..255, the input the model saw
    answer: int
    label: int

    @property
    def digest(self) -> str:
        return image_digest(self.image)


def parse_correction(body: bytes, models: Mapping[str, ServedModel]) -> Correction:
    """The submission, checked; ``AnswerError`` (one line) for anything else."""
    try:
        report = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise AnswerError("the body is not JSON; expected an object") from None
    expected = {"page", "model", "image", "answer", "label"}
    if not isinstance(report, dict) or set(report) != expected:
        keys = sorted(report) if isinstance(report, dict) else type(report).__name__
        raise AnswerError(f"the body has {keys}; expected an object with keys {sorted(expected)}")
    page = report["page"]
    if not isinstance(page, str) or not _PAGE_ID.match(page):
        raise AnswerError("page must be the page's id: 8 to 64 letters, digits, - or _")
    name = report["model"]
    if not isinstance(name, str) or name not in models:
        raise AnswerError(f"model {name!r} is not one this page serves ({sorted(models)})")
    for key in ("answer", "label"):
        value = report[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
            raise AnswerError(f"{key} = {value!r}: expected a digit 0..9")
    image = np.asarray(number_list(report["image"], PIXELS, "image"), dtype=np.float32)
    if image.min() < 0 or image.max() > 255:
        raise AnswerError("image values must be pixel values 0..255")
    if image.max() < INK_LEVEL:
        raise AnswerError("the image is blank (no pixel of half intensity): nothing to learn")
    return Correction(page, models[name], image.reshape(28, 28), report["answer"], report["label"])


class RateLimit:
    """At most ``per_key`` events a minute per key and ``total`` a minute in all."""

    def __init__(self, per_key: int = PER_PAGE_PER_MINUTE, total: int = ALL_PER_MINUTE) -> None:
        self.per_key, self.total = per_key, total
        self._times: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._all: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for times in (self._all, self._times[key]):
                while times and times[0] <= now - 60:
                    times.popleft()
            if len(self._times[key]) >= self.per_key:
                raise TooMany(f"more than {self.per_key} corrections a minute from this page")
            if len(self._all) >= self.total:
                raise TooMany(f"more than {self.total} corrections a minute in all")
            self._times[key].append(now)
            self._all.append(now)
            if len(self._times) > 10_000:  # ids of pages long gone
                for stale in [k for k, v in self._times.items() if not v]:
                    del self._times[stale]


class FeedbackStore:
    """A folder of corrections, one JSON file per image digest, each written whole; with a
    ``shipper``, each new file is also copied to the team's store, off the request's thread."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        shipper: ArtifactShipper | None = None,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        self.folder = Path(folder)
        self._shipper = shipper
        self._warn = warn
        self._copies = ThreadPoolExecutor(1, thread_name_prefix="feedback-copy")
        self._problem = False

    def close(self) -> None:
        """Wait for the copies still on their way."""
        self._copies.shutdown(wait=True)

    def _copy(self, path: Path) -> None:
        try:
            self._shipper.ship(path)
        except Exception as err:  # the local store is the record; the copy can wait
            if not self._problem:
                self._problem = True
                text = str(err).strip().splitlines()[0] if str(err).strip() else ""
                self._warn(
                    f"cannot copy {path.name} to the team's store ({type(err).__name__}: "
                    f"{text}); corrections go on being stored in {self.folder}"
                )
            return
        if self._problem:
            self._problem = False
            self._warn("copying corrections to the team's store again")

    def add(self, correction: Correction) -> bool:
        """Store ``correction``; False when its image is stored already (the first stays)."""
        record = {
            "digest": correction.digest,
            "label": correction.label,
            "answer": correction.answer,
            "model": correction.model.name,
            "version": correction.model.version,
            "alias": correction.model.alias,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "image": [round(float(v), 3) for v in correction.image.ravel()],
        }
        target = self.folder / f"{correction.digest}{RECORD_SUFFIX}"
        if target.exists():
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=".partial-", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(record, out, separators=(",", ":"))
                out.write("\n")
            os.chmod(partial, 0o644)
            try:
                os.link(partial, target)  # never replaces: the first correction stays
            except FileExistsError:
                return False
        finally:
            os.unlink(partial)
        if self._shipper is not None:
            self._copies.submit(self._copy, target)
        return True

    def count(self) -> int:
        if not self.folder.is_dir():
            return 0
        return sum(1 for _ in self.folder.glob(f"*{RECORD_SUFFIX}"))


class PageFeedback:
    """What the page's server does with ``POST /feedback``: check, limit, store."""

    def __init__(
        self,
        store: FeedbackStore,
        models: Mapping[str, ServedModel],
        limit: RateLimit | None = None,
    ) -> None:
        self.store = store
        self.models = dict(models)
        self.limit = limit or RateLimit()

    def submit(self, body: bytes) -> tuple[bool, int]:
        """Whether the correction was new, and how many the store holds now."""
        correction = parse_correction(body, self.models)
        self.limit.take(correction.page)
        stored = self.store.add(correction)
        return stored, self.store.count()


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from kernel.params import load_params
    from tracking.store import connect

    parser = argparse.ArgumentParser(
        prog="python -m demo.feedback", description="the team's corrections into this store"
    )
    parser.add_argument("command", choices=["pull"])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = load_params(args.params).feedback
    uri = connect()
    if not is_team_store(uri):
        raise CommandError(
            f"{uri} is no team server: the corrections are all in {params.store} already "
            "(set MLFLOW_TRACKING_URI to the team's server to pull theirs)"
        )
    store = Path(params.store)
    added = pull(uri, params.experiment_name, store)
    total = FeedbackStore(store).count()
    print(f"feedback: {added} corrections pulled from {uri}; {store} holds {total}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("feedback", main, any_error=True))
