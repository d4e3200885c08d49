"""Stage ``feedback``: the corrections people made on the page, as versioned data.

Reads the accepted corrections in the feedback store (the folder ``feedback.store`` of
params.yaml; its parts and its records are the modules ``feedback.store`` and
``feedback.record``, which the page's server writes with) and writes one ``.npz`` with a
training part and a held-out "drawn" test part, and a report of what it holds. The split is
by image digest and ``feedback.seed``: an image is on one side whatever else the store holds,
and the same image drawn twice is one image (the store keeps it once). With an empty store
both parts are empty and train and evaluate do what they did without feedback, bytes
included.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from feedback.record import CorrectionRecord, RecordError
from feedback.store import FeedbackStore, old_store_problem
from kernel.atomic import StagedFiles
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import FeedbackParams, load_params, stage_argument_parser
from kernel.signals import deferred_signals
from stages.dataset.feedback import PARTS, feedback_digest, per_digit

# in ten-thousandths: fine enough for any drawn_share a person writes
_BUCKETS = 10_000


def read_store(store: Path, root: Path = Path()) -> list[CorrectionRecord]:
    """The store's accepted records, by digest; a file that is no record is one line and
    stops, and so do corrections left where the store used to be (under ``root``)."""
    problem = old_store_problem(root, store)
    if problem is not None:
        raise CommandError(problem)
    if not store.is_dir():
        raise CommandError(f"{store}: no feedback store there; expected the folder feedback.store")
    try:
        return FeedbackStore(store).accepted()
    except RecordError as err:
        raise CommandError(str(err)) from None


def is_drawn(digest: str, params: FeedbackParams) -> bool:
    """Whether the image with this digest is held out: the same answer on every machine."""
    bucket = int(hashlib.sha256(f"{params.seed}:{digest}".encode()).hexdigest(), 16) % _BUCKETS
    return bucket < round(params.drawn_share * _BUCKETS)


def gather(records: list[CorrectionRecord], params: FeedbackParams) -> dict[str, np.ndarray]:
    """``{train,drawn}_{x,y}``: uint8 images (rounded pixel values) and labels, by digest."""
    arrays = {}
    for part in PARTS:
        chosen = [r for r in records if is_drawn(r.digest, params) == (part == "drawn")]
        images = [np.clip(np.rint(r.image), 0, 255).reshape(28, 28) for r in chosen]
        arrays[f"{part}_x"] = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
        arrays[f"{part}_y"] = np.asarray([r.label for r in chosen], dtype=np.uint8)
    return arrays


def describe(records: list[CorrectionRecord], arrays: dict[str, np.ndarray]) -> dict:
    """The report: the data's digest, and per part how many images of each digit."""
    parts = {part: (arrays[f"{part}_x"], arrays[f"{part}_y"]) for part in PARTS}
    return {
        "digest": feedback_digest(parts),
        "corrections": sum(r.label != r.answer for r in records),
        "confirmations": sum(r.label == r.answer for r in records),
        **{
            part: {
                "images": int(len(arrays[f"{part}_y"])),
                "per_digit": per_digit(arrays[f"{part}_y"]),
            }
            for part in PARTS
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the feedback .npz")
    parser.add_argument("--report", required=True, help="what it holds (JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params).feedback
    # the store's path is the project's: params.yaml's folder is the project root
    records = read_store(Path(params.store), Path(args.params).parent)
    arrays = gather(records, params)
    report = describe(records, arrays)
    with StagedFiles() as staged:
        staged.write_npz(args.out, arrays)
        staged.write_json(args.report, report)
        with deferred_signals():
            staged.commit()
    print(
        f"feedback: {len(records)} corrected or confirmed images in {params.store}: "
        f"{report['train']['images']} for training, {report['drawn']['images']} held out as "
        f"the drawn test set; wrote {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    exit_process(run_command("feedback", main))
