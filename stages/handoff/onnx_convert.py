"""Keras model → ONNX model proto carrying its contract; and running it with onnxruntime.

Conversion uses ``tf2onnx.convert.from_function`` on a ``tf.function`` with an
input signature: with TensorFlow 2.21 / Keras 3 / tf2onnx 1.17,
``from_keras`` fails on Sequential models (``KeyError: 'keras_tensor_…'``), and
a traced function fixes the input name, dtype and dynamic batch axis whatever
the model's own construction, Functional or Sequential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from digits_predict.contract import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

if TYPE_CHECKING:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf

BATCH_DIM = "N"
# the provider parity is checked on, and the one the logged model names
PROVIDERS = ("CPUExecutionProvider",)


def convert_to_onnx(model: keras.Model, opset: int) -> onnx.ModelProto:
    """Return an ``onnx.ModelProto``: input ``image`` [N, 28, 28] → ``probabilities`` [N, 10]."""
    import tensorflow as tf
    import tf2onnx

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32, name=INPUT_NAME)])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(
        serve, input_signature=serve.input_signature, opset=opset
    )
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    return proto


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
