"""An int8 model from the exported fp32 ONNX model, with onnxruntime's quantization tools.

Two methods, as onnxruntime recommends them for CPUs:

- ``dynamic``: int8 weights; activations are quantized per batch at run time. Suits the
  MLP, whose MatMuls dominate and whose activation ranges vary with the input.
- ``static``: QDQ format, int8 weights per output channel, uint8 activations whose ranges
  are fixed beforehand from calibration images of the training split. Suits convolutions,
  which dynamic quantization leaves in float.

``auto`` takes ``static`` when the graph has a convolution, else ``dynamic``. Bytes in,
bytes out; the scratch files onnxruntime's API needs live in a temporary folder.
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
    "static": "onnxruntime static quantization: QDQ format, QInt8 weights per channel (7-bit "
    "range), QUInt8 activations calibrated (MinMax) on {count} training images",
}
_CONVOLUTIONS = frozenset({"Conv", "ConvTranspose"})


def choose_method(model_bytes: bytes, requested: str) -> str:
    """``requested`` itself, or for ``auto`` the method that suits the graph's operators."""
    if requested != "auto":
        return requested
    import onnx

    operators = {node.op_type for node in onnx.load_from_string(model_bytes).graph.node}
    return "static" if operators & _CONVOLUTIONS else "dynamic"


def calibration_sample(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` images (all, if there are fewer) drawn without replacement by ``seed``."""
    count = min(count, len(images))
    chosen = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    return images[np.sort(chosen)].astype(np.float32)


def quantize_model(model_bytes: bytes, method: str, calibration: np.ndarray) -> bytes:
    """The int8 model, its metadata_props as the fp32 model's (the caller sets them)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch, _quiet_quantizer():
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        source.write_bytes(model_bytes)
        if method == "dynamic":
            # 7-bit weights: a CPU without VNNI (AVX2 alone) saturates its u8 x s8 products
            # on full-range weights, and then the int8 model fails its gate on that machine
            # only; the same file everywhere, and one that passes on every CPU
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, reduce_range=True)
        elif method == "static":
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
            )
        else:
            raise ValueError(f"unknown quantization method {method!r}")
        return target.read_bytes()


def method_description(method: str, calibration_count: int) -> str:
    return METHOD_DESCRIPTIONS[method].format(count=calibration_count)


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
