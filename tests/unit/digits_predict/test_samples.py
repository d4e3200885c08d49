"""The sample digits the docs point to: one MNIST test image of each class, each one the
predictor's input as it is (MNIST's form already, so load_image leaves it unchanged)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from digits_predict import load_image
from kernel.paths import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / "docs" / "samples"
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def test_there_is_one_sample_per_digit() -> None:
    assert sorted(path.stem for path in SAMPLES.glob("*.png")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_sample_is_a_28_by_28_mnist_digit_that_loads_as_it_is(name: str) -> None:
    raw = np.asarray(Image.open(SAMPLES / f"{name}.png"))
    assert raw.shape == (28, 28) and raw.dtype == np.uint8
    assert raw[0, 0] == 0 and raw.max() == 255, "white digit on black, as MNIST stores it"
    loaded = load_image(SAMPLES / f"{name}.png")
    assert loaded.shape == (28, 28) and loaded.dtype == np.float32
    assert np.array_equal(loaded, raw), "already in MNIST's form: nothing to fit or centre"
