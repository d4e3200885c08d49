"""The prepared splits on disk: loading and checking them, and every way such a file can be bad."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from factories.data import NPZ_DAMAGES, damage_npz, random_mnist
from kernel.atomic import write_npz
from kernel.cli import CommandError
from stages.dataset.arrays import check_images_labels, load_npz, load_split


def test_check_images_labels_accepts_good_arrays() -> None:
    raw = random_mnist()
    check_images_labels(raw["x_train"], raw["y_train"], "train")  # returns without raising


# --- load_npz ------------------------------------------------------------------------------------


def test_load_split_round_trips(tmp_path: Path) -> None:
    raw = random_mnist()
    write_npz(tmp_path / "s.npz", {"x": raw["x_test"], "y": raw["y_test"]})
    x, y = load_split(tmp_path / "s.npz")
    np.testing.assert_array_equal(x, raw["x_test"])
    np.testing.assert_array_equal(y, raw["y_test"])


def _npy(path: Path) -> None:
    np.save(path, np.zeros(3))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: None, "not found \\(run the stage that writes it first"),
        (lambda path: path.write_bytes(b"garbage"), "not a readable .npz file"),
        (lambda path: write_npz(path, {"x": np.zeros(2)}), r"missing array\(s\) y; expected x, y"),
        (lambda path: _npy(path), "not a readable .npz file"),
        (
            lambda path: write_npz(
                path, {"x": np.zeros((2, 28, 28), np.uint8), "y": np.array([1, 12])}
            ),
            "label 12 outside 0..9",
        ),
    ],
    ids=["missing", "garbage", "missing-array", "npy", "bad-label"],
)
def test_load_split_rejects_bad_files(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "split.npz"
    make(path)
    if path.with_suffix(".npz.npy").exists():  # np.save appends .npy
        path.with_suffix(".npz.npy").rename(path)
    with pytest.raises(CommandError, match=message):
        load_split(path)


@pytest.mark.parametrize(
    ("how", "saver"), NPZ_DAMAGES, ids=lambda value: value if isinstance(value, str) else None
)
def test_load_split_rejects_damaged_archives(tmp_path: Path, how: str, saver) -> None:
    raw = random_mnist()
    buffer = io.BytesIO()
    saver(buffer, x=raw["x_train"], y=raw["y_train"])
    (tmp_path / "split.npz").write_bytes(damage_npz(buffer.getvalue(), how))
    with pytest.raises(CommandError, match="split.npz: not a readable .npz file"):
        load_split(tmp_path / "split.npz")


def test_load_npz_names_the_arrays_it_needs(tmp_path: Path) -> None:
    write_npz(tmp_path / "a.npz", {"x_train": np.zeros(1), "y_train": np.zeros(1)})
    with pytest.raises(CommandError, match=r"missing array\(s\) x_test, y_test"):
        load_npz(tmp_path / "a.npz", ("x_train", "y_train", "x_test", "y_test"))
