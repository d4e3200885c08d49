"""The tiny ONNX models the predictor tests use: valid, carrying the contract, and correct."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from factories.onnx_models import (
    HORIZONTAL_DIGIT,
    VERTICAL_DIGIT,
    bar_image,
    good_metadata,
    random_weights,
    reference_probabilities,
    stroke_weights,
    tiny_model,
)


def test_tiny_model_is_valid_onnx_with_contract_metadata() -> None:
    model = tiny_model(*random_weights())
    onnx.checker.check_model(model, full_check=True)
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props == good_metadata()


def test_reference_matches_onnxruntime_on_the_tiny_model() -> None:
    weights, bias = random_weights(seed=3)
    session = ort.InferenceSession(
        tiny_model(weights, bias).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    images = np.random.default_rng(1).integers(0, 256, size=(5, 28, 28)).astype(np.float32)
    (probabilities,) = session.run(["probabilities"], {"image": images})
    np.testing.assert_allclose(
        probabilities, reference_probabilities(images, weights, bias), rtol=1e-5, atol=1e-6
    )


def test_stroke_model_tells_vertical_from_horizontal_bars() -> None:
    weights, bias = stroke_weights()
    bars = np.stack([bar_image(vertical=True), bar_image(vertical=False)])
    probabilities = reference_probabilities(bars, weights, bias)
    assert probabilities.argmax(axis=1).tolist() == [VERTICAL_DIGIT, HORIZONTAL_DIGIT]
    assert probabilities.max(axis=1).min() > 0.99
