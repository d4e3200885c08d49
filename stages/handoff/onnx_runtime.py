"""ONNX models after conversion: their metadata, and running them with onnxruntime.

Kept apart from ``onnx_convert`` so the stages that only run the handed-off model
(evaluate, quantize) never reach TensorFlow, not even in a lazy import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from digits_predict.contract import INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

if TYPE_CHECKING:
    import onnx
    import onnxruntime

# the provider parity is checked on, and the one the logged model names
PROVIDERS = ("CPUExecutionProvider",)


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``metadata``."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def onnx_session(model_bytes: bytes) -> onnxruntime.InferenceSession:
    """A CPU onnxruntime session on the serialized model."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=list(PROVIDERS))


def run_onnx(
    session: onnxruntime.InferenceSession, images: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """Probabilities for ``images`` in batches, shape (N, 10)."""
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size].astype(np.float32)})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, NUM_CLASSES), np.float32)
