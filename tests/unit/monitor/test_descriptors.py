"""monitor.descriptors on images whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from monitor.descriptors import DESCRIPTORS, answers, describe


def _canvas(*boxes: tuple[int, int, int, int], value: int = 255) -> np.ndarray:
    image = np.zeros((28, 28), dtype=np.uint8)
    for top, left, height, width in boxes:
        image[top : top + height, left : left + width] = value
    return image


def test_a_bar_has_the_size_ink_centre_and_stroke_it_was_drawn_with() -> None:
    bar = _canvas((4, 12, 20, 4))  # 20 rows tall, 4 columns wide, centred at (13.5, 13.5)
    got = {name: float(values[0]) for name, values in describe(bar[None]).items()}
    assert set(got) == set(DESCRIPTORS)
    assert got["ink_fraction"] == pytest.approx(80 / 784)
    assert (got["height"], got["width"], got["strokes"]) == (20, 4, 1)
    assert got["centre_dx"] == pytest.approx(0) and got["centre_dy"] == pytest.approx(0)
    # area 80, outline 2 * 20 + 2 * 2 = 44 pixels: twice the area over it
    assert got["stroke_width"] == pytest.approx(2 * 80 / 44)
    assert got["mean_intensity"] == pytest.approx(80 / 784)
    assert got["max_intensity"] == 1.0


def test_shifting_thickening_shrinking_and_splitting_move_their_own_descriptors() -> None:
    bar = _canvas((4, 12, 20, 3))
    moved = np.roll(bar, (3, -5), axis=(0, 1))
    thick = ndimage.grey_dilation(bar, size=(1, 5))
    short = _canvas((9, 12, 10, 3))
    split = _canvas((4, 12, 8, 3), (16, 12, 8, 3))
    base, shifted, thicker, smaller, pieces = (
        describe(image[None]) for image in (bar, moved, thick, short, split)
    )
    assert shifted["centre_dx"][0] == pytest.approx(base["centre_dx"][0] - 5)
    assert shifted["centre_dy"][0] == pytest.approx(base["centre_dy"][0] + 3)
    assert thicker["stroke_width"][0] > base["stroke_width"][0] + 1
    assert thicker["width"][0] == base["width"][0] + 4
    assert smaller["height"][0] == 10 and smaller["ink_fraction"][0] < base["ink_fraction"][0]
    assert pieces["strokes"][0] == 2


def test_faint_pixels_are_not_ink_and_a_blank_image_is_all_zeros() -> None:
    faint = _canvas((4, 12, 20, 4), value=100)
    got = describe(np.stack([faint, np.zeros((28, 28))]))
    assert got["ink_fraction"].tolist() == [0, 0] and got["strokes"].tolist() == [0, 0]
    assert got["mean_intensity"][0] == pytest.approx(80 * 100 / 255 / 784)
    for name in DESCRIPTORS:
        assert got[name][1] == 0, name
        assert np.isfinite(got[name]).all(), name


def test_a_batch_gives_what_each_image_gives_alone() -> None:
    rng = np.random.default_rng(0)
    images = (rng.random((12, 28, 28)) > 0.8) * rng.integers(0, 256, (12, 28, 28))
    together = describe(images)
    for index, image in enumerate(images):
        alone = describe(image[None])
        for name in DESCRIPTORS:
            assert together[name][index] == pytest.approx(alone[name][0]), name


def test_answers_give_the_digit_its_probability_and_the_margin_to_the_runner_up() -> None:
    probabilities = np.array([[0.1, 0.7, 0.2] + [0] * 7, [0.5, 0.5] + [0] * 8])
    got = answers(probabilities)
    assert got["digit"].tolist() == [1, 0]
    assert got["probability"].tolist() == pytest.approx([0.7, 0.5])
    assert got["margin"].tolist() == pytest.approx([0.5, 0.0])
