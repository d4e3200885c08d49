"""The stratified validation split: sizes, proportions, determinism, impossible requests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernel.cli import CommandError
from stages.dataset.splits import allocate_per_class, describe_split, split_stratified


def skewed(n_per_class: tuple[int, ...] = (30, 12, 7, 50, 2, 9, 21, 3, 40, 16), seed: int = 0):
    """Images whose first pixel records their index, labels with very unequal class sizes."""
    y = np.repeat(np.arange(10, dtype=np.uint8), n_per_class)
    y = np.random.default_rng(seed).permutation(y)
    x = np.zeros((len(y), 28, 28), dtype=np.uint8)
    x[:, 0, 0] = np.arange(len(y)) % 256
    x[:, 0, 1] = np.arange(len(y)) // 256
    return x, y


def image_ids(x: np.ndarray) -> set[int]:
    return set((x[:, 0, 0].astype(int) + 256 * x[:, 0, 1].astype(int)).tolist())


# --- allocate_per_class --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "total"),
    [
        ((10,) * 10, 10),
        ((10,) * 10, 7),
        ((30, 12, 7, 50, 2, 9, 21, 3, 40, 16), 19),
        ((5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949), 5000),
        ((1, 1, 1), 2),
        ((100, 1), 1),
    ],
)
def test_allocate_per_class_sums_to_total_in_proportion(
    counts: tuple[int, ...], total: int
) -> None:
    counts_array = np.array(counts)
    taken = allocate_per_class(counts_array, total)
    assert taken.sum() == total
    assert np.all(taken >= 0) and np.all(taken <= counts_array)
    exact = counts_array * total / counts_array.sum()
    assert np.all(np.abs(taken - exact) < 1)


def test_allocate_per_class_breaks_ties_by_class_index() -> None:
    np.testing.assert_array_equal(allocate_per_class(np.array([5, 5, 5, 5]), 2), [1, 1, 0, 0])


# --- split_stratified ----------------------------------------------------------------------------


@pytest.mark.parametrize("val_size", [10, 17, 60, 189])
def test_split_has_exact_val_size_and_partitions(val_size: int) -> None:
    x, y = skewed()
    (x_train, y_train), (x_val, y_val) = split_stratified(x, y, val_size, seed=1)
    assert len(y_val) == len(x_val) == val_size
    assert len(y_train) == len(x_train) == len(y) - val_size
    train_ids, val_ids = image_ids(x_train), image_ids(x_val)
    assert not train_ids & val_ids and train_ids | val_ids == set(range(len(y)))
    # every image keeps its own label
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_val])), np.sort(y))


@pytest.mark.parametrize("val_size", [20, 37, 100])
def test_split_is_stratified(val_size: int) -> None:
    x, y = skewed()
    _, (_, y_val) = split_stratified(x, y, val_size, seed=3)
    expected = np.bincount(y, minlength=10) * val_size / len(y)
    got = np.bincount(y_val, minlength=10)
    assert np.all(np.abs(got - expected) <= 1), (got, expected)


def test_split_is_deterministic_per_seed() -> None:
    x, y = skewed()
    first = split_stratified(x, y, 40, seed=7)
    again = split_stratified(x.copy(), y.copy(), 40, seed=7)
    other = split_stratified(x, y, 40, seed=8)
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert image_ids(first[1][0]) != image_ids(other[1][0])


@pytest.mark.parametrize("val_size", [0, 200, 500])
def test_split_rejects_impossible_val_size(val_size: int) -> None:
    x, y = skewed()
    with pytest.raises(CommandError, match=f"preprocess.val_size = {val_size}: expected between 1"):
        split_stratified(x, y, val_size, seed=0)


def test_describe_split_counts_and_pixel_statistics() -> None:
    x = np.zeros((4, 28, 28), dtype=np.uint8)
    x[0] = 255
    y = np.array([1, 1, 9, 0], dtype=np.uint8)
    report = describe_split(x, y)
    assert report["count"] == 4
    assert report["class_counts"] == {str(c): {0: 1, 1: 2, 9: 1}.get(c, 0) for c in range(10)}
    assert report["pixel_mean"] == pytest.approx(63.75)
    assert report["pixel_std"] == pytest.approx(round(float(np.std(x.astype(float))), 4))
    json.dumps(report)  # plain JSON types only
