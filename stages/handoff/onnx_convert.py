"""Keras model → ONNX model proto with tf2onnx: the one part of the hand-off needing TensorFlow.

Conversion uses ``tf2onnx.convert.from_function`` on a ``tf.function`` with an
input signature: with TensorFlow 2.21 / Keras 3 / tf2onnx 1.17,
``from_keras`` fails on Sequential models (``KeyError: 'keras_tensor_…'``), and
a traced function fixes the input name, dtype and dynamic batch axis whatever
the model's own construction, Functional or Sequential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits_predict.contract import IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import keras
    import onnx
    import tensorflow as tf

BATCH_DIM = "N"


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
