"""Predictor.predict: agreement with a numpy reimplementation, shapes, dtypes, bad arrays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import digits_predict.predictor as predictor_module
from digits_predict import InputError, Prediction, Predictor
from factories.onnx_models import (
    HORIZONTAL_DIGIT,
    VERTICAL_DIGIT,
    bar_image,
    random_weights,
    reference_probabilities,
    stroke_weights,
    tiny_model,
    write_model,
)

WEIGHTS, BIAS = random_weights(seed=7)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    return Predictor(write_model(path, tiny_model(WEIGHTS, BIAS)))


def _random_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28)).astype(np.uint8)


def test_predictions_equal_the_numpy_reimplementation(predictor: Predictor) -> None:
    images = _random_images(64)
    expected = reference_probabilities(images, WEIGHTS, BIAS)
    prediction = predictor.predict(images)
    assert prediction.probabilities.shape == (64, 10)
    assert prediction.probabilities.dtype == np.float32
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-5, atol=1e-6)
    # argmax of nearly tied classes could flip on rounding; compare where the margin is clear.
    top_two = np.sort(expected, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 1e-4
    assert clear.sum() > 50
    assert np.array_equal(prediction.digits[clear], expected.argmax(axis=1)[clear])
    assert np.issubdtype(prediction.digits.dtype, np.integer)


def test_single_image_is_a_batch_of_one(predictor: Predictor) -> None:
    images = _random_images(3, seed=1)
    batch = predictor.predict(images)
    for index, image in enumerate(images):
        single = predictor.predict(image)
        assert len(single) == 1 and single.probabilities.shape == (1, 10)
        np.testing.assert_allclose(single.probabilities[0], batch.probabilities[index], atol=1e-6)
        assert single.digits[0] == batch.digits[index]


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int16, np.int64, np.uint16, np.float16, np.float32, np.float64]
)
def test_any_real_dtype_gives_the_same_answer(predictor: Predictor, dtype: type) -> None:
    images = _random_images(4, seed=2)
    expected = predictor.predict(images.astype(np.float32)).probabilities
    got = predictor.predict(images.astype(dtype)).probabilities
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_non_contiguous_and_list_input_are_accepted(predictor: Predictor) -> None:
    images = _random_images(4, seed=3)
    expected = predictor.predict(images).probabilities
    transposed_twice = np.ascontiguousarray(images.transpose(0, 2, 1)).transpose(0, 2, 1)
    assert not transposed_twice.flags.c_contiguous
    np.testing.assert_allclose(predictor.predict(transposed_twice).probabilities, expected)
    np.testing.assert_allclose(predictor.predict(images[0].tolist()).probabilities, expected[:1])


def test_prediction_labels_and_confidences(tmp_path: Path) -> None:
    model = tiny_model(*stroke_weights())
    predictor = Predictor(write_model(tmp_path / "model.onnx", model))
    prediction = predictor.predict(np.stack([bar_image(True), bar_image(False)]))
    assert prediction.digits.tolist() == [VERTICAL_DIGIT, HORIZONTAL_DIGIT]
    assert prediction.labels == (str(VERTICAL_DIGIT), str(HORIZONTAL_DIGIT))
    np.testing.assert_array_equal(prediction.confidences, prediction.probabilities.max(axis=1))
    assert np.all(prediction.confidences > 0.99)


def test_prediction_is_immutable(predictor: Predictor) -> None:
    prediction = predictor.predict(_random_images(2))
    assert isinstance(prediction, Prediction)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prediction.digits = np.zeros(2, dtype=int)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        prediction.probabilities[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        prediction.digits[0] = 3


def test_predict_does_no_contract_work_per_call(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract is checked once at load; a call must not re-read or re-check it."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("contract checked again during predict")

    monkeypatch.setattr(predictor_module, "check_contract", fail)
    monkeypatch.setattr(predictor._session, "get_modelmeta", fail)
    monkeypatch.setattr(predictor._session, "get_inputs", fail)
    monkeypatch.setattr(predictor._session, "get_outputs", fail)
    assert len(predictor.predict(_random_images(1)[0])) == 1


_NAN_IMAGE = np.zeros((28, 28))
_NAN_IMAGE[3, 4] = np.nan
_INF_IMAGE = np.zeros((2, 28, 28), dtype=np.float32)
_INF_IMAGE[1, 0, 0] = np.inf

BAD_ARRAYS = [
    (np.zeros((28,)), r"shape \(28,\)"),
    (np.zeros((27, 28)), r"shape \(27, 28\)"),
    (np.zeros((28, 28, 1)), r"shape \(28, 28, 1\)"),
    (np.zeros((2, 2, 28, 28)), r"shape \(2, 2, 28, 28\)"),
    (np.zeros((784,)), r"shape \(784,\)"),
    (np.zeros((0, 28, 28)), "holds no images"),
    (np.zeros(()), r"shape \(\)"),
    (np.zeros((28, 28), dtype=bool), "dtype bool"),
    (np.zeros((28, 28), dtype=np.complex64), "dtype complex64"),
    (np.full((28, 28), "7"), "dtype <U1"),
    (np.zeros((28, 28), dtype=object), "Python objects"),
    (_NAN_IMAGE, "1 NaN or infinite"),
    (_INF_IMAGE, "1 NaN or infinite"),
    (np.full((28, 28), 255.5), r"span 255.5..255.5, outside 0..255"),
    (np.full((28, 28), -1, dtype=np.int8), r"outside 0..255"),
    (np.full((28, 28), 256, dtype=np.uint16), r"outside 0..255"),
    ([[1, 2], [3]], "cannot read as an array"),
]

_ONE_SCALED = np.full((3, 28, 28), 200, dtype=np.uint8)
_ONE_SCALED[1] = 1
PRESCALED_ARRAYS = [
    # what a client sends after dividing by 255 out of habit
    (
        np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28),
        r"image\(s\) 0 of 1 have no pixel above 1",
    ),
    (np.full((2, 28, 28), 0.5), r"image\(s\) 0, 1 of 2 .*divided by 255"),
    (np.zeros((28, 28), dtype=np.uint8), "or blank"),
    (_ONE_SCALED, r"image\(s\) 1 of 3 "),
    (np.zeros((7, 28, 28)), r"0, 1, 2, 3, 4 and 2 more of 7.*expected raw pixel values 0..255"),
]


@pytest.mark.parametrize(("images", "message"), BAD_ARRAYS + PRESCALED_ARRAYS)
def test_bad_arrays_are_refused_with_what_was_expected(
    predictor: Predictor, images: object, message: str
) -> None:
    with pytest.raises(InputError, match=message) as caught:
        predictor.predict(images)
    text = str(caught.value)
    assert "\n" not in text and "expected" in text
