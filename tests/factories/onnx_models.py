"""Tiny ONNX models made in the test, for the deployment-side (digits_predict) tests.

The graph mirrors what the export stage produces, small enough to build in milliseconds:
"image" float32 [N, 28, 28] -> Reshape [N, 784] -> / 255 -> MatMul W -> Add b -> Softmax
-> "probabilities" float32 [N, 10]. ``reference_probabilities`` is the same computation
in numpy, so predictions can be checked against an independent implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from digits_predict.contract import IMAGE_SHAPE, NUM_CLASSES, contract_metadata

PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
# The digits the stroke model sees in a vertical and in a horizontal bar.
VERTICAL_DIGIT, HORIZONTAL_DIGIT = 1, 7

PROVENANCE = {
    "model_digest": "0123456789abcdef" * 4,
    "data_digest": "sha256:feedface",
    "test_accuracy": 0.9812,
}


def good_metadata(**overrides: str) -> dict[str, str]:
    """The metadata the export stage writes, with some values replaced."""
    return {**contract_metadata(**PROVENANCE), **overrides}


def random_weights(seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic weights (784, classes) and bias (classes,), scaled for 0..1 inputs."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.3, size=(PIXELS, classes)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, size=classes).astype(np.float32)
    return weights, bias


def stroke_weights() -> tuple[np.ndarray, np.ndarray]:
    """Weights under which a centred vertical bar is a 1 and a centred horizontal bar a 7.

    Class 1 sums the four central columns, class 7 the four central rows; the others stay
    at logit 0. A bar 20 px long then wins its class by a wide softmax margin.
    """
    weights = np.zeros((*IMAGE_SHAPE, NUM_CLASSES), dtype=np.float32)
    weights[:, 12:16, VERTICAL_DIGIT] = 0.1
    weights[12:16, :, HORIZONTAL_DIGIT] = 0.1
    return weights.reshape(PIXELS, NUM_CLASSES), np.zeros(NUM_CLASSES, dtype=np.float32)


def bar_image(vertical: bool) -> np.ndarray:
    """An MNIST-form (28, 28) uint8 bar, 20 px long and 4 px wide, centred."""
    image = np.zeros((28, 28), dtype=np.uint8)
    if vertical:
        image[4:24, 12:16] = 255
    else:
        image[12:16, 4:24] = 255
    return image


def reference_probabilities(
    images: np.ndarray, weights: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    """The tiny graph in numpy (float64), for (N, 28, 28) raw 0..255 pixels."""
    logits = images.reshape(len(images), PIXELS).astype(np.float64) / 255.0 @ weights + bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def tiny_model(
    weights: np.ndarray,
    bias: np.ndarray,
    *,
    metadata: Mapping[str, str] | None = None,
    input_name: str = "image",
    output_name: str = "probabilities",
    input_type: int = TensorProto.FLOAT,
    input_shape: tuple[int | str, ...] = ("N", 28, 28),
    softmax: bool = True,
) -> onnx.ModelProto:
    """Build the tiny classifier; every keyword bends one part of the contract for a test.

    ``metadata`` None means the export stage's metadata; pass {} for none at all.
    """
    classes = weights.shape[1]
    nodes = []
    image = input_name
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [image], ["image_f32"], to=TensorProto.FLOAT))
        image = "image_f32"
    logits_name = output_name if not softmax else "logits"
    nodes += [
        helper.make_node("Reshape", [image, "flat_shape"], ["flat"]),
        helper.make_node("Div", ["flat", "full_scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weights"], ["product"]),
        helper.make_node("Add", ["product", "bias"], [logits_name]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [output_name], axis=-1))
    graph = helper.make_graph(
        nodes,
        "tiny_digits",
        [helper.make_tensor_value_info(input_name, input_type, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(np.array([-1, PIXELS], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(np.array(255.0, dtype=np.float32), "full_scale"),
            numpy_helper.from_array(weights.astype(np.float32), "weights"),
            numpy_helper.from_array(bias.astype(np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # IR 8 keeps the model loadable by older onnxruntime releases as well.
    model.ir_version = 8
    helper.set_model_props(model, dict(good_metadata() if metadata is None else metadata))
    return model


def write_model(path: Path, model: onnx.ModelProto) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


# --- the builders' own checks: a wrong reference would make every other test meaningless ---
