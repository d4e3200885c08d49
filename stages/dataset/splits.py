"""Splitting labelled images: a stratified, deterministic validation split, and its summary."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from kernel.cli import CommandError
from stages.dataset.arrays import Split
from stages.dataset.canonical import NUM_CLASSES


def allocate_per_class(class_counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` across classes in proportion to their counts (largest remainder)."""
    exact = class_counts * total / class_counts.sum()
    taken = np.floor(exact).astype(np.int64)
    shortfall = total - int(taken.sum())
    # ties broken by class index so the allocation is a pure function of the counts
    order = np.lexsort((np.arange(len(exact)), -(exact - taken)))
    taken[order[:shortfall]] += 1
    return taken


def split_stratified(x: np.ndarray, y: np.ndarray, val_size: int, seed: int) -> tuple[Split, Split]:
    """Deterministic split of (x, y) into (train, val), each class in proportion."""
    if not 0 < val_size < len(y):
        raise CommandError(
            f"preprocess.val_size = {val_size}: expected between 1 and "
            f"{len(y) - 1} for {len(y)} training images"
        )
    counts = np.bincount(y, minlength=NUM_CLASSES)
    per_class = allocate_per_class(counts, val_size)
    rng = np.random.default_rng(seed)
    val_index = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(y == label)
        val_index.append(rng.permutation(members)[: per_class[label]])
    is_val = np.zeros(len(y), dtype=bool)
    is_val[np.concatenate(val_index)] = True
    return (x[~is_val], y[~is_val]), (x[is_val], y[is_val])


def describe_split(x: np.ndarray, y: np.ndarray) -> dict:
    """Counts per class, and the pixels' mean and standard deviation, exact.

    From the histogram of the 8-bit values: integer sums, so no float64 copy of the
    images (seconds for the training split) and no rounding before the last division.
    """
    histogram = np.bincount(x.ravel(), minlength=256).tolist()
    n = sum(histogram)
    total = sum(value * count for value, count in enumerate(histogram))
    squares = sum(value * value * count for value, count in enumerate(histogram))
    variance = Fraction(n * squares - total * total, n * n) if n else Fraction(0)
    return {
        "count": int(len(y)),
        "class_counts": {
            str(c): int(n) for c, n in enumerate(np.bincount(y, minlength=NUM_CLASSES))
        },
        "pixel_mean": round(total / n, 4) if n else 0.0,
        "pixel_std": round(math.sqrt(variance), 4),
    }
