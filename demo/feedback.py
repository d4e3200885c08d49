"""Corrections from the page: "that was a 4" (or "right"), kept once per image for review.

After an answer the page can say which digit it really was; it posts to ``/feedback``:

    {"page": "<the id the server gave the page>", "model": "fp32",
     "image": [784 numbers 0..255], "answer": 7, "label": 4}

The server checks it like an answer (``demo.answers``) and more: a page id it handed out
(``demo.pages``), a label and an answer 0..9, an image with ink (a blank one teaches
nothing), at most ``PER_PAGE_PER_MINUTE`` from one page id and ``ALL_PER_MINUTE`` from all
pages. Each bad submission is a 4xx and one line; nothing else is kept. A good one becomes a
correction record (``feedback.record``: named by the image's digest, naming the page id that
sent it) and waits for review in the feedback store's ``pending/`` folder (``feedback.store``),
so the same image sent twice is kept once, whoever sends it: the first label stays.

Nothing a page sends reaches the training data unreviewed: a person lists what waits and
accepts or drops it (``demo.review``),

    python -m demo.feedback review                    # what waits: digest, label, answer, page
    python -m demo.feedback review accept DIGEST...   # or --page ID, or --all
    python -m demo.feedback review drop DIGEST...

and only accepted records, in the store's folder itself, are what the feedback stage
(``stages.feedback``) gathers into versioned data.

In team mode (a team MLflow server for the store) each kept file is also copied to the
team's bucket, as an artifact of the page server's run in the ``feedback.experiment_name``
experiment (``tracking.team_copies``); on the machine that trains,

    python -m demo.feedback pull

copies every member's corrections from there into its own ``pending/``, for review like its
own (those it has, accepted, waiting or dropped, are not copied again).

    python -m demo.feedback move-store

moves corrections left where the store used to be (the project's ``feedback/`` folder) into
``feedback.store``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo.answers import PIXELS, AnswerError, number_list, read_report, short
from demo.pages import PageIds, RateLimit
from feedback.record import CorrectionRecord, RecordError, check_digit, digest_of, make_record
from feedback.store import (
    OLD_STORE,
    RECORD_MODE,
    FeedbackStore,
    MoveIncomplete,
    move_old_store,
    old_store_problem,
)
from kernel.cli import CommandError, run_command
from monitor.descriptors import INK_LEVEL
from monitor.request_log import ServedModel
from tracking.team_copies import ArtifactShipper, download_artifacts, is_team_store

FEEDBACK_PATH = "/feedback"
PER_PAGE_PER_MINUTE = 30
ALL_PER_MINUTE = 300
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

    def wanted(name: str) -> bool:
        digest = digest_of(name)
        return digest is not None and not local.knows(digest)

    count = download_artifacts(
        tracking_uri,
        experiment_name,
        pending,
        role=SHIP_ROLE,
        folder=SHIP_FOLDER,
        wanted=wanted,
        skip_present=True,
    )
    for path in pending.glob("*"):
        if path.is_file() and digest_of(path.name):
            path.chmod(RECORD_MODE)  # downloads come with the umask's mode
    return count


@dataclass(frozen=True)
class Correction:
    """A page's submission, checked: what the page says, before it is a record."""

    page: str
    model: ServedModel
    image: np.ndarray  # 28 x 28 float32, 0..255, the input the model saw
    answer: int
    label: int

    def record(self) -> CorrectionRecord:
        """The correction record the store keeps, stamped with the time now."""
        return make_record(
            self.image,
            self.label,
            self.answer,
            model=self.model.name,
            version=self.model.version,
            alias=self.model.alias,
            page=self.page,
        )


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
        try:
            check_digit(report[key], key)  # what a record holds, said as a record says it
        except RecordError as err:
            raise AnswerError(str(err)) from None
    image = np.asarray(number_list(report["image"], PIXELS, "image", 255), dtype=np.float32)
    if image.max() < INK_LEVEL:
        raise AnswerError("the image is blank (no pixel of half intensity): nothing to learn")
    return Correction(page, models[name], image.reshape(28, 28), report["answer"], report["label"])


class TeamCopies:
    """Copies each file the store keeps to the team's store, off the request's thread; one
    warning when copying fails, one when it works again (the local store is the record)."""

    def __init__(self, shipper: ArtifactShipper, warn: Callable[[str], None] = _warn) -> None:
        self._shipper = shipper
        self._warn = warn
        self._copies = ThreadPoolExecutor(1, thread_name_prefix="feedback-copy")
        self._problem = False

    def submit(self, path: Path) -> None:
        self._copies.submit(self._copy, path)

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
                    f"{text}); corrections go on being kept in {path.parent}"
                )
            return
        if self._problem:
            self._problem = False
            self._warn("copying corrections to the team's store again")


class PageFeedback:
    """What the page's server does with ``POST /feedback``: check, limit, keep for review
    (and, in team mode, copy to the team's store)."""

    def __init__(
        self,
        store: FeedbackStore,
        models: Mapping[str, ServedModel],
        pages: PageIds | None = None,
        limit: RateLimit | None = None,
        copies: TeamCopies | None = None,
    ) -> None:
        self.store = store
        self.models = dict(models)
        self.pages = pages or PageIds()
        self.limit = limit or RateLimit(PER_PAGE_PER_MINUTE, ALL_PER_MINUTE, "corrections")
        self.copies = copies

    def submit(self, body: bytes) -> dict[str, object]:
        """Whether the correction was new, and how many are accepted and waiting now."""
        correction = parse_correction(body, self.models)
        self.limit.take(self.pages.check(correction.page))
        kept = self.store.keep(correction.record())
        if kept is not None and self.copies is not None:
            self.copies.submit(kept)
        return {"stored": kept is not None, **self.counts()}

    def counts(self) -> dict[str, int]:
        return {"count": self.store.count(), "pending": self.store.pending_count()}

    def close(self) -> None:
        """Wait for the copies to the team's store still on their way."""
        if self.copies is not None:
            self.copies.close()


def open_store(root: Path, store: Path) -> FeedbackStore:
    """The store at ``store``; ``CommandError`` (one line, naming the command that moves
    them) while corrections are still where the store used to be under ``root``."""
    problem = old_store_problem(root, store)
    if problem is not None:
        raise CommandError(problem)
    return FeedbackStore(store)


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
    commands.add_parser("move-store", help="corrections where the store used to be, into it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from demo import review
    from kernel.params import load_params

    args = _parser().parse_args(argv)
    params = load_params(args.params).feedback
    # the store's path is the project's (params.yaml's folder's), as the stage reads it
    root, store = Path(args.params).parent, Path(params.store)
    if args.command == "move-store":
        return _move_store(root, store)
    local = open_store(root, store)
    if args.command == "review":
        return review.run(local, args.action, args.digests, args.page, args.all)
    from tracking.store import connect

    uri = connect()
    if not is_team_store(uri):
        raise CommandError(
            f"{uri} is no team server: the corrections are all in {params.store} already "
            "(set MLFLOW_TRACKING_URI to the team's server to pull theirs)"
        )
    added = pull(uri, params.experiment_name, store)
    print(
        f"feedback: {added} corrections pulled from {uri} for review; {store} holds "
        f"{local.count()} accepted, {local.pending_count()} waiting "
        "(python -m demo.feedback review)"
    )
    return 0


def _move_store(root: Path, store: Path) -> int:
    if old_store_problem(root, store) is None:
        print(f"feedback: nothing to move: {root / OLD_STORE} holds no corrections")
        return 0
    try:
        print(f"feedback: {move_old_store(root, store)}")
    except MoveIncomplete as err:
        raise CommandError(str(err)) from None
    return 0


if __name__ == "__main__":
    sys.exit(run_command("feedback", main, any_error=True))
