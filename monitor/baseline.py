"""What clean digits score in the drift report: ``python -m monitor.baseline``.

    python -m monitor.baseline [--windows 10] [--size N] [--in-file-order]

Windows of the held-out test digits (``data/prepared/test.npz``: MNIST's writers, never
trained on) are scored as ``make monitor`` scores a window of the request log: the same
reference (``monitor.reference_images`` training images drawn with ``monitor.seed``), the
same scores and thresholds, each window's labels standing for its predicted digits. Each
window is ``--size`` digits (``monitor.window`` by default) drawn at random with
``monitor.seed``, or, with ``--in-file-order``, consecutive as MNIST stores them, which is
grouped by writer. Prints per descriptor the median and largest score over the windows and
in how many it reached ``monitor.drift_threshold``, and how many windows would be flagged.
The scores of clean windows are what a threshold has to stay above.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kernel.cli import CommandError, positive_whole_number, run_command
from kernel.params import DEFAULT_PARAMS_FILE, MonitorParams, load_params
from kernel.paths import artifact
from monitor.descriptors import DESCRIPTORS, describe
from monitor.drift import PREDICTED, drift_scores, judge, reference_frame
from stages.dataset.arrays import split_file

if TYPE_CHECKING:
    import pandas as pd

PROG = "monitor.baseline"
# a score above this is one a reader notices in the report's table
NOTICEABLE = 0.1


def window_indices(
    count: int, size: int, windows: int, seed: int, in_file_order: bool
) -> list[np.ndarray]:
    """Which of ``count`` images each window holds: consecutive from the first, or drawn at
    random (without repeats within a window) with ``seed``."""
    if not 1 <= size <= count:
        raise CommandError(f"--size {size}: expected 1 to {count} (the test digits there are)")
    if in_file_order:
        if windows * size > count:
            raise CommandError(
                f"{windows} windows of {size} consecutive digits need {windows * size:,}; "
                f"there are {count:,}: fewer --windows or a smaller --size"
            )
        return [np.arange(start, start + size) for start in range(0, windows * size, size)]
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(count, size, replace=False)) for _ in range(windows)]


def score_windows(
    images: np.ndarray,
    labels: np.ndarray,
    windows: list[np.ndarray],
    reference: pd.DataFrame,
    params: MonitorParams,
) -> list[dict[str, float]]:
    """Each window's drift score per descriptor and for its digits (``monitor.drift``'s)."""
    import pandas as pd

    described = pd.DataFrame(describe(images))
    described[PREDICTED] = np.asarray(labels, dtype=np.int64)
    return [drift_scores(described.iloc[chosen], reference, params)[1] for chosen in windows]


def summary_lines(scores: list[dict[str, float]], params: MonitorParams) -> list[str]:
    """The table: per descriptor the median and largest score and the windows at the
    threshold; the predicted digits' distance; the most descriptors past 0.1 and past the
    threshold in one window; the windows the report would flag."""
    total, threshold = len(scores), params.drift_threshold
    lines = [f"{'descriptor':<16}{'median':>8}{'max':>8}  windows >= {threshold:g}"]
    for name in DESCRIPTORS:
        values = np.array([window[name] for window in scores])
        reached = int((values >= threshold).sum())
        lines.append(
            f"{name:<16}{np.median(values):>8.3f}{values.max():>8.3f}  {reached} of {total}"
        )
    digits = np.array([window[PREDICTED] for window in scores])
    over = int((digits > params.max_prediction_distance).sum())
    lines.append(
        f"{'digits':<16}{np.median(digits):>8.3f}{digits.max():>8.3f}  {over} of {total} "
        f"above {params.max_prediction_distance:g} (Jensen-Shannon)"
    )
    judged = [judge(window, params) for window in scores]
    noticed = max(sum(window[name] > NOTICEABLE for name in DESCRIPTORS) for window in scores)
    most = max(len(drifted) for drifted, _, _ in judged)
    # the fewest drifted descriptors that flag a window, by judge's own comparison
    count = len(DESCRIPTORS)
    needed = next((k for k in range(count + 1) if k / count > params.max_drifted_share), None)
    takes = f"drift takes {needed} of {count}" if needed else "descriptors never flag drift"
    flagged = sum(by_descriptors or by_digits for _, by_descriptors, by_digits in judged)
    lines.append(
        f"in one window: at most {noticed} descriptors above {NOTICEABLE:g}, at most {most} "
        f"at or above {threshold:g} ({takes})"
    )
    lines.append(f"flagged as drift: {flagged} of {total} windows")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = load_params(args.params).monitor
    images, labels = _test_digits(args.test)
    size = args.size or params.window
    windows = window_indices(len(images), size, args.windows, params.seed, args.in_file_order)
    reference = reference_frame(args.train, params.reference_images, params.seed)
    how = "consecutive, in MNIST's order" if args.in_file_order else "drawn at random"
    print(
        f"{PROG}: {len(windows)} window{'s' * (len(windows) != 1)} of {size} test digits "
        f"({how}) against {len(reference)} training images; {params.drift_method} scores, "
        f"a descriptor drifted at >= {params.drift_threshold:g} ({args.params}'s monitor section)",
        flush=True,
    )
    scores = score_windows(images, labels, windows, reference, params)
    print("\n".join(summary_lines(scores, params)), flush=True)
    return 0


def _test_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as data:
            return data["x"], data["y"]
    except FileNotFoundError:
        raise CommandError(f"{path}: no test digits; run make repro (or dvc pull)") from None
    except (OSError, ValueError, KeyError) as err:
        raise CommandError(f"{path}: not the prepared test set ({err})") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="The drift report's scores on windows of clean digits (the test set).",
    )
    parser.add_argument(
        "--windows", type=positive_whole_number, default=10, help="how many (default 10)"
    )
    parser.add_argument(
        "--size", type=positive_whole_number, help="digits per window (monitor.window)"
    )
    parser.add_argument(
        "--in-file-order", action="store_true", help="consecutive digits, not drawn at random"
    )
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="the params file")
    # the splits dvc.yaml's preprocess stage writes: the reference, and the digits to score
    prepared = artifact("prepared")
    parser.add_argument(
        "--train", type=Path, default=split_file(prepared, "train"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--test", type=Path, default=split_file(prepared, "test"), help=argparse.SUPPRESS
    )
    return parser


if __name__ == "__main__":
    sys.exit(run_command(PROG, main))
