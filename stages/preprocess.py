"""Stage ``preprocess``: check the raw arrays, split a stratified validation set, report the data.

Pixels stay raw uint8 0..255: the model scales them itself (a Rescaling layer),
so what deployment feeds the exported model is what the camera gives.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stages.atomic import write_json, write_npz
from stages.config import PreprocessParams, load_params
from stages.datasets import NUM_CLASSES, check_images_labels, load_npz
from stages.errors import StageError, run_stage
from stages.mnist_data import ARRAY_NAMES

Split = tuple[np.ndarray, np.ndarray]


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
        raise StageError(f"preprocess.val_size = {val_size}: expected between 1 and "
                         f"{len(y) - 1} for {len(y)} training images")
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
    pixels = x.astype(np.float64)
    return {
        "count": int(len(y)),
        "class_counts": {str(c): int(n) for c, n in enumerate(np.bincount(y, minlength=10))},
        "pixel_mean": round(float(pixels.mean()), 4),
        "pixel_std": round(float(pixels.std()), 4),
    }


def prepare(raw: dict[str, np.ndarray], params: PreprocessParams) -> dict[str, Split]:
    """Validate the raw arrays and return the train / val / test splits (uint8 pixels)."""
    for split in ("train", "test"):
        check_images_labels(raw[f"x_{split}"], raw[f"y_{split}"], f"{split} set")
    y_train = raw["y_train"].astype(np.uint8)
    missing = [c for c, n in enumerate(np.bincount(y_train, minlength=10)) if n < 2]
    if missing:
        raise StageError(f"train set: class(es) {missing} have fewer than 2 images; "
                         "expected every digit 0..9 in both train and validation")
    train, val = split_stratified(raw["x_train"], y_train, params.val_size, params.seed)
    return {"train": train, "val": val, "test": (raw["x_test"], raw["y_test"].astype(np.uint8))}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", required=True, help="the fetched .npz")
    parser.add_argument("--out-dir", required=True, help="folder for train/val/test .npz")
    parser.add_argument("--report", required=True, help="data report JSON (DVC metrics)")
    args = parser.parse_args(argv)
    params = load_params(args.params).preprocess
    splits = prepare(load_npz(args.raw, ARRAY_NAMES), params)
    out = Path(args.out_dir)
    for name, (x, y) in splits.items():
        write_npz(out / f"{name}.npz", {"x": x, "y": y})
    write_json(args.report, {name: describe_split(x, y) for name, (x, y) in splits.items()})


if __name__ == "__main__":
    run_stage("preprocess", main)
