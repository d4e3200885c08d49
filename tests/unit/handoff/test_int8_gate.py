"""The int8 gate's verdict on hand-made probabilities, and onnxruntime's two methods on
graphs made in the test: each failure kind, the figures, and what each method writes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from factories.onnx_models import random_weights, tiny_model
from factories.params import params_dict
from kernel.params import parse_params
from stages.handoff.int8_gate import compare_int8, gate_int8_model
from stages.handoff.onnx_runtime import onnx_session, run_onnx
from stages.handoff.quantization import (
    calibration_sample,
    candidate_methods,
    method_description,
    output_layer,
    quantize_model,
)

# 1,000 test images: one image is 0.1 points of accuracy
LABELS = np.arange(1000) % 10
PARAMS = parse_params(params_dict()).quantize


def _close_calls(predicted: np.ndarray) -> np.ndarray:
    """Each image a close call: 0.5 on ``predicted``, 0.44 on the next digit."""
    probs = np.full((len(predicted), 10), 0.0075, dtype=np.float32)
    rows = np.arange(len(predicted))
    probs[rows, predicted] = 0.5
    probs[rows, (predicted + 1) % 10] = 0.44
    return probs


def _wrong_on(count: int, start: int = 0):
    """int8 tips ``count`` close calls from ``start`` to the next digit (by 0.06)."""

    def change(fp32: np.ndarray) -> np.ndarray:
        int8 = fp32.copy()
        rows = np.arange(start, start + count)
        label, runner_up = LABELS[rows], (LABELS[rows] + 1) % 10
        int8[rows, label], int8[rows, runner_up] = fp32[rows, runner_up], fp32[rows, label]
        return int8

    return change


def _nudged(amount: float):
    def change(fp32: np.ndarray) -> np.ndarray:
        int8 = fp32.copy()
        int8[4, 7] += amount  # not the argmax of row 4
        int8[4, 8] -= amount
        return int8

    return change


def _nan(fp32: np.ndarray) -> np.ndarray:
    int8 = fp32.copy()
    int8[3] = np.nan
    return int8


CASES = {
    "identical": (lambda fp32: fp32.copy(), []),
    "3 images wrong: a drop of exactly 0.3 points passes": (_wrong_on(3), []),
    "4 images wrong: 0.4 points": (_wrong_on(4), ["test accuracy drops"]),
    "6 images wrong: agreement 99.4 %": (_wrong_on(6), ["test accuracy drops", "argmax agreement"]),
    "probabilities moved by 0.09": (_nudged(0.09), []),
    "probabilities moved by 0.2": (_nudged(0.2), ["max abs difference of probabilities 0.2"]),
    "NaN": (_nan, ["int8 output holds NaN", "max abs difference"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_gate_fails_exactly_what_breaks_a_limit(case: str) -> None:
    change, expected = CASES[case]
    fp32 = _close_calls(LABELS)
    figures = compare_int8(fp32, change(fp32), LABELS, PARAMS)
    failures = figures["failures"]
    assert len(failures) == len(expected), failures
    for failure, start in zip(failures, expected, strict=True):
        assert failure.startswith(start), failure


def test_the_figures_say_what_changed() -> None:
    fp32 = _close_calls(LABELS)
    fp32[:2] = _close_calls(np.array([5, 5]))  # fp32 wrong on images 0 and 1
    figures = compare_int8(fp32, _wrong_on(3, start=10)(fp32), LABELS, PARAMS)
    assert figures["samples"] == 1000
    assert figures["fp32_accuracy"] == pytest.approx(0.998)
    assert figures["int8_accuracy"] == pytest.approx(0.995)
    assert figures["accuracy_drop"] == pytest.approx(0.003)
    assert figures["argmax_agreement"] == pytest.approx(0.997)
    assert figures["max_abs_diff"] == pytest.approx(0.06)


def _mlp_bytes() -> bytes:
    return _named(tiny_model(*random_weights())).SerializeToString()


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every node named, as tf2onnx names them (a layer is left out of quantization by name)."""
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type.lower()}_{index}"
    return model


def _conv_bytes(channels: int = 4) -> bytes:
    """image [N, 28, 28] -> [N, 1, 28, 28] -> Conv 3x3 (channels) -> Relu -> mean -> MatMul."""
    rng = np.random.default_rng(1)
    initializers = [
        numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "shape"),
        numpy_helper.from_array(np.array([1 / 255], np.float32), "scale"),
        numpy_helper.from_array(rng.normal(0, 0.5, (channels, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, channels).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 1, (channels, 10)).astype(np.float32), "dense"),
    ]
    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["planes"]),
        helper.make_node("Mul", ["planes", "scale"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return _named(model).SerializeToString()


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28)).astype(np.float32)


def test_auto_takes_dynamic_for_an_mlp_and_static_for_convolutions() -> None:
    assert candidate_methods(_mlp_bytes(), "auto")[0] == "dynamic"
    assert candidate_methods(_conv_bytes(), "auto")[0] == "static"
    assert candidate_methods(_conv_bytes(), "dynamic") == ("dynamic",)


def test_dynamic_quantization_stores_int8_weights_and_stays_close() -> None:
    fp32 = _mlp_bytes()
    int8 = quantize_model(fp32, "dynamic", np.empty((0, 28, 28), np.float32))
    graph = onnx.load_from_string(int8).graph
    assert "MatMulInteger" in {node.op_type for node in graph.node}
    weights = [t for t in graph.initializer if t.data_type == TensorProto.INT8]
    assert [784, 10] in [list(t.dims) for t in weights]
    images = _images(64)
    fp32_probs = run_onnx(onnx_session(fp32), images)
    int8_probs = run_onnx(onnx_session(int8), images)
    assert np.abs(fp32_probs - int8_probs).max() < 0.1
    assert len(int8) < len(fp32) / 3


def test_static_quantization_is_qdq_per_channel_and_calibrated() -> None:
    fp32 = _conv_bytes(channels=4)
    int8 = quantize_model(fp32, "static", _images(200, seed=1))
    graph = onnx.load_from_string(int8).graph
    operators = [node.op_type for node in graph.node]
    assert "QuantizeLinear" in operators and "DequantizeLinear" in operators
    conv = next(node for node in graph.node if node.op_type == "Conv")
    weight_dq = next(node for node in graph.node if node.output[0] == conv.input[1])
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert initializers[weight_dq.input[1]].shape == (4,), "one weight scale per output channel"
    weights = initializers[weight_dq.input[0]]
    # 7-bit weights: full-range ones saturate u8 x s8 products on CPUs without VNNI
    assert weights.dtype == np.int8 and np.abs(weights).max() <= 64
    activation_q = next(node for node in graph.node if node.op_type == "QuantizeLinear")
    assert initializers[activation_q.input[2]].dtype == np.uint8, "uint8 activations"
    images = _images(64, seed=2)
    fp32_probs = run_onnx(onnx_session(fp32), images)
    int8_probs = run_onnx(onnx_session(int8), images)
    assert np.abs(fp32_probs - int8_probs).max() < 0.1


def test_calibration_draws_distinct_images_by_seed() -> None:
    images = np.arange(50, dtype=np.float32).reshape(50, 1, 1) * np.ones((1, 28, 28))
    first = calibration_sample(images, 10, seed=3)
    assert first.shape == (10, 28, 28) and len({float(x[0, 0]) for x in first}) == 10
    assert np.array_equal(first, calibration_sample(images, 10, seed=3))
    assert not np.array_equal(first, calibration_sample(images, 10, seed=4))
    assert len(calibration_sample(images, 500, seed=3)) == 50, "all there are, no more"


def test_auto_tries_the_methods_that_suit_the_graph_cheapest_first() -> None:
    assert candidate_methods(_mlp_bytes(), "auto") == (
        "dynamic", "dynamic_per_channel", "dynamic_per_channel_fp32_output"
    )  # fmt: skip
    assert candidate_methods(_conv_bytes(), "auto") == ("static", "static_fp32_output")


def test_per_channel_weights_have_a_scale_per_output_column() -> None:
    graph = onnx.load_from_string(
        quantize_model(_mlp_bytes(), "dynamic_per_channel", np.empty((0, 28, 28), np.float32))
    ).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmul = next(node for node in graph.node if node.op_type == "MatMulInteger")
    weight_scale = next(
        node.input[1] for node in graph.node if node.op_type == "Mul" and "scale" in node.input[1]
    )
    assert initializers[matmul.input[1]].shape == (784, 10)
    assert initializers[weight_scale].shape == (10,), "one scale per output column"


@pytest.mark.parametrize(("method", "calibrate"), [
    ("dynamic_per_channel_fp32_output", 0), ("static_fp32_output", 200),
])  # fmt: skip
def test_the_output_layer_stays_in_float(method: str, calibrate: int) -> None:
    fp32 = _conv_bytes(channels=4) if method.startswith("static") else _mlp_bytes()
    last = output_layer(fp32)
    int8 = onnx.load_from_string(quantize_model(fp32, method, _images(calibrate, seed=3)))
    (kept,) = [node for node in int8.graph.node if node.name == last]
    assert kept.op_type in ("MatMul", "Gemm", "Conv"), "not replaced by an integer operator"
    produced = {out: node.op_type for node in int8.graph.node for out in node.output}
    assert produced.get(kept.input[1]) != "DequantizeLinear", "its weights stay float"
    assert method_description(method, calibrate, last).endswith(
        f"the output layer ({last}) left in float"
    )


def test_auto_keeps_the_first_method_that_passes_and_says_why() -> None:
    # random weights: the only layer is the output one, and quantizing it moves answers
    fp32, images = _mlp_bytes(), _images(300, seed=4)
    labels = run_onnx(onnx_session(fp32), images).argmax(axis=1)
    params = parse_params(params_dict()).quantize
    gated = gate_int8_model(fp32, {}, images, images, labels, params)
    assert gated.report.passed and gated.report.method == "dynamic_per_channel_fp32_output"
    assert [t["method"] for t in gated.report.tried] == ["dynamic", "dynamic_per_channel"]
    assert all(t["failures"] for t in gated.report.tried)
    assert gated.report.choice == (
        "auto tries dynamic -> dynamic_per_channel -> dynamic_per_channel_fp32_output, cheapest "
        "first: dynamic_per_channel_fp32_output is the first to pass the gate (dynamic, "
        "dynamic_per_channel failed it)"
    )
    assert "the output layer (matmul_2) left in float" in gated.metadata["quantization"]
    assert json.loads(json.dumps(gated.report.as_dict()))["choice"] == gated.report.choice
