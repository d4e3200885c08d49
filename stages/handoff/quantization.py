"""An int8 model from the exported fp32 ONNX model, with onnxruntime's quantization tools.

The methods, from onnxruntime's tools for CPUs:

- ``dynamic``: int8 weights (one scale per tensor); activations are quantized per batch at
  run time. Suits the MLP, whose MatMuls dominate and whose activation ranges vary.
- ``dynamic_per_channel``: the same with one weight scale per output column, for a layer
  whose columns' ranges differ widely (a narrow network's).
- ``static``: QDQ format, int8 weights per output channel, uint8 activations whose ranges
  are fixed beforehand from calibration images of the training split. Suits convolutions,
  which dynamic quantization leaves in float.
- ``…_fp32_output``: either of the last two with the output layer (the last MatMul, Gemm
  or Conv, which writes the logits) left in float: its error reaches the probabilities
  undamped, and on a narrow network it is what moves them past the gate's limit (measured
  on the tutorials' networks: 0.12-0.20 with it quantized, 0.08 without), for the cost of
  one small layer.

``auto`` tries the candidates that suit the graph (``AUTO_CANDIDATES``), cheapest first,
and the gate keeps the first that passes. Bytes in, bytes out; the scratch files
onnxruntime's API needs live in a temporary folder.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from digits_predict.contract import INPUT_NAME

# onnxruntime's descriptions of what each method does, kept in the int8 model's metadata
METHOD_DESCRIPTIONS = {
    "dynamic": "onnxruntime dynamic quantization: QInt8 weights (per tensor, 7-bit range), "
    "activations quantized at run time",
    "dynamic_per_channel": "onnxruntime dynamic quantization: QInt8 weights (per output "
    "channel, 7-bit range), activations quantized at run time",
    "static": "onnxruntime static quantization: QDQ format, QInt8 weights per channel (7-bit "
    "range), QUInt8 activations calibrated (MinMax) on {count} training images",
}
FP32_OUTPUT = "_fp32_output"
METHODS = (
    "dynamic",
    "dynamic_per_channel",
    "dynamic_per_channel" + FP32_OUTPUT,
    "static",
    "static" + FP32_OUTPUT,
)
# what auto tries, in this order: the first whose int8 model passes the gate is kept
AUTO_CANDIDATES = {
    "mlp": ("dynamic", "dynamic_per_channel", "dynamic_per_channel" + FP32_OUTPUT),
    "conv": ("static", "static" + FP32_OUTPUT),
}
_CONVOLUTIONS = frozenset({"Conv", "ConvTranspose"})
_WEIGHTED = frozenset({"MatMul", "Gemm", "Conv"})


def candidate_methods(model_bytes: bytes, requested: str) -> tuple[str, ...]:
    """``requested`` itself, or for ``auto`` the methods that suit the graph's operators."""
    if requested != "auto":
        return (requested,)
    import onnx

    operators = {node.op_type for node in onnx.load_from_string(model_bytes).graph.node}
    return AUTO_CANDIDATES["conv" if operators & _CONVOLUTIONS else "mlp"]


def is_static(method: str) -> bool:
    return method.startswith("static")


def output_layer(model_bytes: bytes) -> str:
    """The name of the graph's last weighted node (MatMul, Gemm or Conv): the logits'."""
    import onnx

    weighted = [
        n.name for n in onnx.load_from_string(model_bytes).graph.node if n.op_type in _WEIGHTED
    ]
    if not weighted:
        raise ValueError("the model has no MatMul, Gemm or Conv to quantize")
    if not weighted[-1]:
        raise ValueError("the output layer has no name: it cannot be left out of quantization")
    return weighted[-1]


def calibration_sample(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` images (all, if there are fewer) drawn without replacement by ``seed``."""
    count = min(count, len(images))
    chosen = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    return images[np.sort(chosen)].astype(np.float32)


def quantize_model(model_bytes: bytes, method: str, calibration: np.ndarray) -> bytes:
    """The int8 model, its metadata_props as the fp32 model's (the caller sets them)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}")
    excluded = [output_layer(model_bytes)] if method.endswith(FP32_OUTPUT) else []
    base = method.removesuffix(FP32_OUTPUT)
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch, _quiet_quantizer():
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        source.write_bytes(model_bytes)
        if base.startswith("dynamic"):
            # 7-bit weights: a CPU without VNNI (AVX2 alone) saturates its u8 x s8 products
            # on full-range weights, and then the int8 model fails its gate on that machine
            # only; the same file everywhere, and one that passes on every CPU
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                reduce_range=True,
                per_channel=base == "dynamic_per_channel",
                nodes_to_exclude=excluded,
            )
        else:
            # the same saturation as above, so 7-bit weights here too; uint8 activations
            # (onnxruntime's u8 x s8 kernels, its default on x86) ran a 2-epoch CNN 2.3 x
            # fp32 on one thread, int8 ones 1.4 x, at the same accuracy
            quantize_static(
                source,
                target,
                _CalibrationImages(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
            )
        return target.read_bytes()


def method_description(method: str, calibration_count: int, output: str | None = None) -> str:
    text = METHOD_DESCRIPTIONS[method.removesuffix(FP32_OUTPUT)].format(count=calibration_count)
    if method.endswith(FP32_OUTPUT):
        text += f"; the output layer ({output}) left in float"
    return text


class _CalibrationImages:
    """onnxruntime's ``CalibrationDataReader``: one batch of 100 images per call, then None."""

    def __init__(self, images: np.ndarray, batch: int = 100) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [images[start : start + batch] for start in range(0, len(images), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime advises pre-processing through the root logger on every call; the graphs
    here are tf2onnx's, already shape-inferred, so that line says nothing to our users."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
