"""The prepared splits the stages hand to each other: loading and checking ``.npz`` files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from kernel.cli import CommandError
from stages.dataset.canonical import IMAGE_SHAPE, NUM_CLASSES
from stages.dataset.formats import NPZ_DAMAGE

Split = tuple[np.ndarray, np.ndarray]
# the prepared splits, one ``<name>.npz`` each in the prepared folder
SPLIT_NAMES = ("train", "val", "test")


def split_file(data_dir: str | Path, name: str) -> Path:
    """Where the prepared split ``name`` lives in ``data_dir``."""
    return Path(data_dir) / f"{name}.npz"


def load_npz(path: str | Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load the named arrays of an ``.npz`` written by a stage; any defect is a ``CommandError``."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: not found (run the stage that writes it first: dvc repro)")
    if not zipfile.is_zipfile(path):  # np.load would also take a lone .npy array
        raise CommandError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise CommandError(
                    f"{path}: missing array(s) {', '.join(missing)}; expected {', '.join(names)}"
                )
            return {name: archive[name] for name in names}
    except NPZ_DAMAGE as err:
        raise CommandError(
            f"{path}: not a readable .npz file ({type(err).__name__}: {err})"
        ) from None


def check_images_labels(x: np.ndarray, y: np.ndarray, what: str) -> None:
    """Images uint8 (N, 28, 28), labels integer (N,) in 0..9, N > 0."""
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise CommandError(
            f"{what}: images are {x.dtype}{list(x.shape)}, "
            f"expected uint8[N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}]"
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise CommandError(f"{what}: labels are {y.dtype}{list(y.shape)}, expected integers[N]")
    if len(x) != len(y):
        raise CommandError(f"{what}: {len(x)} images but {len(y)} labels")
    if len(y) == 0:
        raise CommandError(f"{what}: no images")
    if y.min() < 0 or y.max() >= NUM_CLASSES:
        bad = y[(y < 0) | (y >= NUM_CLASSES)][0]
        raise CommandError(f"{what}: label {int(bad)} outside 0..{NUM_CLASSES - 1}")


def load_split(path: str | Path) -> Split:
    """One prepared split (``x``, ``y``), checked."""
    arrays = load_npz(path, ("x", "y"))
    check_images_labels(arrays["x"], arrays["y"], str(path))
    return arrays["x"], arrays["y"]


def load_splits(data_dir: str | Path) -> dict[str, Split]:
    """Every prepared split, checked, by name."""
    return {name: load_split(split_file(data_dir, name)) for name in SPLIT_NAMES}
