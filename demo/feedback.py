"""Corrections from the page: "that was a 4" (or "right"), kept once per image for review.

After an answer the page can say which digit it really was; it posts to ``/feedback``:

    {"page": "<the id the server gave the page>", "model": "fp32",
     "image": [784 numbers 0..255], "answer": 7, "label": 4}

The server checks it like an answer (``demo.answers``) and more: a page id it handed out
(``demo.pages``), a label and an answer 0..9, an image with ink (a blank one teaches
nothing), at most ``PER_PAGE_PER_MINUTE`` from one page id and ``ALL_PER_MINUTE`` from all
pages. Each bad submission is a 4xx and one line; nothing else is kept. A good one waits for
review in the store's ``pending/`` folder, one JSON file per image named by its digest
(``monitor.request_log.image_digest``) and naming the page id that sent it, so the same image
sent twice is kept once, whoever sends it: the first label stays.

Nothing a page sends reaches the training data unreviewed: a person lists what waits and
accepts or drops it (``demo.review``),

    python -m demo.feedback review                    # what waits: digest, label, answer, page
    python -m demo.feedback review accept DIGEST...   # or --page ID, or --all
    python -m demo.feedback review drop DIGEST...

and only accepted files, in the store's folder itself, are what the feedback stage
(``stages.feedback``) gathers into versioned data. ``pending/`` tells git and DVC to pass it
by (a ``.gitignore`` and a ``.dvcignore`` of ``*``), so waiting corrections change neither
``git status`` nor the stage's inputs.

In team mode (a team MLflow server for the store) each kept file is also copied to the
team's bucket, as an artifact of the page server's run in the ``feedback.experiment_name``
experiment (``monitor.shipping``); on the machine that trains,

    python -m demo.feedback pull

copies every member's corrections from there into its own ``pending/``, for review like its
own (those it has, accepted, waiting or dropped, are not copied again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo.answers import PIXELS, AnswerError, number_list, read_report, short
from demo.pages import PageIds, RateLimit
from kernel.cli import CommandError, run_command
from monitor.descriptors import INK_LEVEL
from monitor.request_log import ServedModel, image_digest
from monitor.shipping import ArtifactShipper, download_artifacts, is_team_store

FEEDBACK_PATH = "/feedback"
PER_PAGE_PER_MINUTE = 30
ALL_PER_MINUTE = 300
RECORD_SUFFIX = ".json"
# Records are people's drawings: readable by the one who serves the page only.
RECORD_MODE = 0o600
# Where corrections wait for review, and where those a reviewer dropped go (so a pull or
# the same drawing again does not bring them back).
PENDING = "pending"
DROPPED = "dropped"
# Corrections waiting at most (about 70 MB): past it nothing more is taken until a person
# has reviewed them, so a flood fills no disk.
MAX_PENDING = 10_000
# git and DVC pass by a folder holding a file of these names that says "*"
_IGNORED_BY = (".gitignore", ".dvcignore")
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
    """Every correction in the team's store that ``store`` has not seen, into its pending
    folder for review; how many came."""
    local = FeedbackStore(store)
    pending = local.pending_folder()
    count = download_artifacts(
        tracking_uri,
        experiment_name,
        pending,
        role=SHIP_ROLE,
        folder=SHIP_FOLDER,
        wanted=lambda name: (
            name.endswith(RECORD_SUFFIX)
            and len(name) == 32 + len(RECORD_SUFFIX)
            and not local.knows(name.removesuffix(RECORD_SUFFIX))
        ),
        skip_present=True,
    )
    for path in pending.glob(f"*{RECORD_SUFFIX}"):
        path.chmod(RECORD_MODE)  # downloads come with the umask's mode
    return count


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
    """The submission, checked; ``AnswerError`` (one line) for anything else. Whether the
    page id is one the server handed out is ``PageIds.check``'s to say."""
    report = read_report(body, {"page", "model", "image", "answer", "label"})
    page = report["page"]
    if not isinstance(page, str):
        raise AnswerError(f"page = {short(page)}: expected the id the server gave the page")
    name = report["model"]
    if not isinstance(name, str) or name not in models:
        raise AnswerError(f"model {short(name)} is not one this page serves ({sorted(models)})")
    for key in ("answer", "label"):
        value = report[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
            raise AnswerError(f"{key} = {short(value)}: expected a digit 0..9")
    image = np.asarray(number_list(report["image"], PIXELS, "image", 255), dtype=np.float32)
    if image.max() < INK_LEVEL:
        raise AnswerError("the image is blank (no pixel of half intensity): nothing to learn")
    return Correction(page, models[name], image.reshape(28, 28), report["answer"], report["label"])


class ReviewQueueFull(OSError):
    """``MAX_PENDING`` corrections wait already; answered 507."""


class FeedbackStore:
    """A folder of accepted corrections, one JSON file per image digest, and its ``pending/``
    folder of those waiting for review; each file written whole, readable by its owner only.
    With a ``shipper``, each new file is also copied to the team's store, off the request's
    thread."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        shipper: ArtifactShipper | None = None,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        self.folder = Path(folder)
        self.pending = self.folder / PENDING
        self.dropped = self.pending / DROPPED
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

    def pending_folder(self) -> Path:
        """The pending folder, made (owner only, passed by git and DVC) if it is not there."""
        for folder in (self.pending, self.dropped):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in _IGNORED_BY:
            if not (self.pending / name).exists():
                write_new(self.pending / name, b"*\n")
        return self.pending

    def knows(self, digest: str) -> bool:
        """Whether the image is accepted, waiting, or was dropped: the first word on it stays."""
        name = f"{digest}{RECORD_SUFFIX}"
        return any((folder / name).exists() for folder in (self.folder, self.pending, self.dropped))

    def add(self, correction: Correction) -> bool:
        """Keep ``correction`` for review; False when its image is known already."""
        digest = correction.digest
        if self.knows(digest):
            return False
        if self.pending_count() >= MAX_PENDING:
            raise ReviewQueueFull(
                f"{MAX_PENDING} corrections wait for review already; nothing more is kept "
                "until a person has reviewed them (python -m demo.feedback review)"
            )
        record = {
            "digest": digest,
            "label": correction.label,
            "answer": correction.answer,
            "model": correction.model.name,
            "version": correction.model.version,
            "alias": correction.model.alias,
            "page": correction.page,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "image": [round(float(v), 3) for v in correction.image.ravel()],
        }
        target = self.pending_folder() / f"{digest}{RECORD_SUFFIX}"
        if not write_new(target, (json.dumps(record, separators=(",", ":")) + "\n").encode()):
            return False
        if self._shipper is not None:
            self._copies.submit(self._copy, target)
        return True

    def count(self) -> int:
        """How many corrections were accepted: what the feedback stage gathers."""
        return _records_in(self.folder)

    def pending_count(self) -> int:
        """How many corrections wait for review."""
        return _records_in(self.pending)


def _records_in(folder: Path) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(
                1 for e in entries if e.name.endswith(RECORD_SUFFIX) and not e.name[0] == "."
            )
    except FileNotFoundError:
        return 0


def write_new(target: Path, data: bytes) -> bool:
    """Write ``target`` whole, mode ``RECORD_MODE``, unless it exists: never replaced, never
    half-written (a temporary file, linked to its name). False when it existed."""
    fd, partial = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    try:
        os.fchmod(fd, RECORD_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, target)  # never replaces: the first correction stays
        except FileExistsError:
            return False
    finally:
        os.unlink(partial)
    return True


class PageFeedback:
    """What the page's server does with ``POST /feedback``: check, limit, keep for review."""

    def __init__(
        self,
        store: FeedbackStore,
        models: Mapping[str, ServedModel],
        pages: PageIds | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        self.store = store
        self.models = dict(models)
        self.pages = pages or PageIds()
        self.limit = limit or RateLimit(PER_PAGE_PER_MINUTE, ALL_PER_MINUTE, "corrections")

    def submit(self, body: bytes) -> dict[str, object]:
        """Whether the correction was new, and how many are accepted and waiting now."""
        correction = parse_correction(body, self.models)
        self.limit.take(self.pages.check(correction.page))
        stored = self.store.add(correction)
        return {"stored": stored, **self.counts()}

    def counts(self) -> dict[str, int]:
        return {"count": self.store.count(), "pending": self.store.pending_count()}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 1, as every error here
        raise CommandError(f"{message} (python -m demo.feedback --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m demo.feedback",
        description="the team's corrections into this store, and their review",
    )
    parser.add_argument("--params", default="params.yaml")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("pull", help="the team's corrections, to review")
    review = commands.add_parser("review", help="list the corrections waiting, or decide")
    review.add_argument("action", nargs="?", choices=["accept", "drop"])
    review.add_argument("digests", nargs="*", metavar="DIGEST", help="or a unique start of one")
    review.add_argument("--page", help="every correction waiting from this page id")
    review.add_argument("--all", action="store_true", help="every correction waiting")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from demo import review
    from kernel.params import load_params

    args = _parser().parse_args(argv)
    params = load_params(args.params).feedback
    store = Path(params.store)
    if args.command == "review":
        return review.run(FeedbackStore(store), args.action, args.digests, args.page, args.all)
    from tracking.store import connect

    uri = connect()
    if not is_team_store(uri):
        raise CommandError(
            f"{uri} is no team server: the corrections are all in {params.store} already "
            "(set MLFLOW_TRACKING_URI to the team's server to pull theirs)"
        )
    added = pull(uri, params.experiment_name, store)
    local = FeedbackStore(store)
    print(
        f"feedback: {added} corrections pulled from {uri} for review; {store} holds "
        f"{local.count()} accepted, {local.pending_count()} waiting "
        "(python -m demo.feedback review)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command("feedback", main, any_error=True))
