"""The hand-off gate: convert the Keras model to ONNX and accept it only if it predicts alike.

``gate_onnx_model`` is the export stage's core: arrays and a model in, the ONNX bytes,
their metadata and the parity report out. It writes nothing and logs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digits_predict.contract import contract_metadata
from kernel.cli import CommandError
from kernel.params import ExportParams
from stages.dataset.canonical import dataset_digest
from stages.handoff.onnx_convert import convert_to_onnx
from stages.handoff.onnx_runtime import onnx_session, run_onnx, set_metadata
from stages.handoff.parity import ParityReport, compare_predictions
from stages.model.keras_io import predict_probabilities

if TYPE_CHECKING:
    import keras
    import onnx


@dataclass(frozen=True)
class GatedModel:
    """An ONNX model and the evidence of its parity with the Keras model it came from."""

    model_bytes: bytes
    metadata: dict[str, str]
    report: ParityReport
    test_data_digest: str  # of the images and labels the report was measured on


def build_checked_onnx(model: keras.Model, opset: int, metadata: dict[str, str]) -> onnx.ModelProto:
    """Convert, attach the contract and pass ``onnx.checker``'s full check."""
    import onnx

    proto = convert_to_onnx(model, opset)
    set_metadata(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise CommandError(
            f"converted ONNX model fails onnx.checker: {str(err).splitlines()[0]}"
        ) from None
    return proto


def gate_onnx_model(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    params: ExportParams,
    provenance: dict[str, str],
) -> GatedModel:
    """Convert ``model`` and compare onnxruntime with Keras on every image.

    ``provenance`` gives ``model_digest`` and ``data_digest``; the Keras
    test accuracy is added here. The caller decides what a failed report means.
    """
    keras_probs = predict_probabilities(model, images)
    keras_accuracy = float((keras_probs.argmax(axis=1) == labels).mean())
    metadata = contract_metadata(**provenance, test_accuracy=keras_accuracy)
    proto = build_checked_onnx(model, params.opset, metadata)
    model_bytes = proto.SerializeToString()
    onnx_probs = run_onnx(onnx_session(model_bytes), images)
    report = compare_predictions(
        keras_probs, onnx_probs, labels, params.tolerance, params.min_agreement
    )
    return GatedModel(
        model_bytes=model_bytes,
        metadata=metadata,
        report=report,
        test_data_digest=dataset_digest({"x_test": images, "y_test": labels}),
    )
