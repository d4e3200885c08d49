"""Stage ``preprocess``: check the raw arrays, split a stratified validation set, report the data.

Pixels stay raw uint8 0..255: the model scales them itself (a Rescaling layer),
so what deployment feeds the exported model is what the camera gives.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kernel.atomic import StagedFiles
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import PreprocessParams, load_params, stage_argument_parser
from kernel.signals import deferred_signals
from kernel.timing import note_work_started
from stages.dataset.arrays import Split, check_images_labels, load_npz, split_file
from stages.dataset.canonical import ARRAY_NAMES, NUM_CLASSES
from stages.dataset.splits import describe_split, split_stratified


def prepare(raw: dict[str, np.ndarray], params: PreprocessParams) -> dict[str, Split]:
    """Validate the raw arrays and return the train / val / test splits (uint8 pixels)."""
    for split in ("train", "test"):
        check_images_labels(raw[f"x_{split}"], raw[f"y_{split}"], f"{split} set")
    y_train = raw["y_train"].astype(np.uint8)
    missing = [c for c, n in enumerate(np.bincount(y_train, minlength=NUM_CLASSES)) if n < 2]
    if missing:
        raise CommandError(
            f"train set: class(es) {missing} have fewer than 2 images; "
            "expected every digit 0..9 in both train and validation"
        )
    train, val = split_stratified(raw["x_train"], y_train, params.val_size, params.seed)
    return {"train": train, "val": val, "test": (raw["x_test"], raw["y_test"].astype(np.uint8))}


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="the fetched .npz")
    parser.add_argument("--out-dir", required=True, help="folder for train/val/test .npz")
    parser.add_argument("--report", required=True, help="data report JSON (DVC metrics)")
    args = parser.parse_args(argv)
    params = load_params(args.params).preprocess
    started = time.perf_counter()
    note_work_started("preprocess")
    splits = prepare(load_npz(args.raw, ARRAY_NAMES), params)
    out = Path(args.out_dir)
    # the three splits and their report replace the previous ones together, or not at all
    with StagedFiles() as staged:
        for name, (x, y) in splits.items():
            staged.write_npz(split_file(out, name), {"x": x, "y": y})
        staged.write_json(
            args.report, {name: describe_split(x, y) for name, (x, y) in splits.items()}
        )
        with deferred_signals():
            staged.commit()
    sizes = ", ".join(f"{name} {len(y):,}" for name, (_, y) in splits.items())
    print(
        f"preprocess: read {args.raw}, wrote {sizes} images to {out} and {args.report} "
        f"in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    exit_process(run_command("preprocess", main))
