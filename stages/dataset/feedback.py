"""The feedback data the ``feedback`` stage writes: a training part and a "drawn" test part.

``data/feedback.npz`` holds ``train_x``, ``train_y``, ``drawn_x``, ``drawn_y`` (uint8 28x28
images and labels); either part may be empty, and both are when nobody corrected anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.dataset.arrays import Split, load_npz
from stages.dataset.canonical import NUM_CLASSES, dataset_digest

PARTS = ("train", "drawn")
ARRAYS = tuple(f"{part}_{kind}" for part in PARTS for kind in ("x", "y"))


def load_feedback(path: str | Path) -> dict[str, Split]:
    """``{"train": (x, y), "drawn": (x, y)}`` from the feedback stage's file."""
    arrays = load_npz(path, ARRAYS)
    return {part: (arrays[f"{part}_x"], arrays[f"{part}_y"]) for part in PARTS}


def feedback_digest(parts: dict[str, Split]) -> str:
    """The digest of the whole feedback set, as its report names it."""
    return dataset_digest(
        {
            f"{part}_{kind}": array
            for part, split in parts.items()
            for kind, array in zip(("x", "y"), split, strict=True)
        }
    )


def per_digit(labels: np.ndarray) -> dict[str, int]:
    return {str(d): int(n) for d, n in enumerate(np.bincount(labels, minlength=NUM_CLASSES))}
