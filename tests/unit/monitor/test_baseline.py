"""monitor.baseline's windows: which test digits each one holds, and the sizes it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from kernel.cli import CommandError
from monitor.baseline import window_indices


def test_windows_in_file_order_are_consecutive_and_do_not_overlap() -> None:
    windows = window_indices(10, 3, 3, seed=0, in_file_order=True)
    assert [w.tolist() for w in windows] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_random_windows_repeat_no_digit_within_a_window_and_follow_the_seed() -> None:
    windows = window_indices(50, 20, 4, seed=3, in_file_order=False)
    assert all(len(np.unique(w)) == 20 and w.min() >= 0 and w.max() < 50 for w in windows)
    assert len({tuple(w) for w in windows}) == 4, "each window is drawn anew"
    again = window_indices(50, 20, 4, seed=3, in_file_order=False)
    assert all(np.array_equal(a, b) for a, b in zip(windows, again, strict=True))
    other = window_indices(50, 20, 4, seed=4, in_file_order=False)
    assert not all(np.array_equal(a, b) for a, b in zip(windows, other, strict=True))


@pytest.mark.parametrize(
    ("size", "windows", "in_file_order", "message"),
    [
        (11, 1, False, r"--size 11: expected 1 to 10"),
        (0, 1, False, r"--size 0: expected 1 to 10"),
        (4, 3, True, r"3 windows of 4 consecutive digits need 12; there are 10"),
    ],
)
def test_a_window_the_test_set_cannot_fill_is_refused(size, windows, in_file_order, message):
    with pytest.raises(CommandError, match=message):
        window_indices(10, size, windows, seed=0, in_file_order=in_file_order)
