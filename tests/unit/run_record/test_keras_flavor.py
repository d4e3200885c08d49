"""The Keras flavor workaround: the MLflow bug it exists for, and that the workaround works.

When ``test_the_mlflow_bug_is_still_there`` fails, the pinned MLflow has fixed its Keras
flavor: call ``mlflow.keras.log_model`` directly and delete ``stages/run_record/keras_flavor.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from digits_predict.contract import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME
from stages.run_record.keras_flavor import log_keras_model


@pytest.fixture(scope="module")
def tiny_keras_model():
    import keras

    inputs = keras.Input(IMAGE_SHAPE, name=INPUT_NAME)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(
        keras.layers.Flatten()(inputs)
    )
    return keras.Model(inputs, outputs)


EXAMPLE = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, *IMAGE_SHAPE) % 256


def test_the_mlflow_bug_is_still_there(tiny_keras_model, tmp_mlflow_store: str) -> None:
    import mlflow

    with mlflow.start_run(), pytest.raises(FileNotFoundError, match="input_example"):
        mlflow.keras.log_model(
            tiny_keras_model,
            name="keras_model",
            input_example=EXAMPLE,
            pip_requirements=["tensorflow"],
        )


def test_the_workaround_logs_a_model_that_loads_and_predicts(
    tiny_keras_model, tmp_mlflow_store: str
) -> None:
    import mlflow

    with mlflow.start_run():
        info = log_keras_model(tiny_keras_model, EXAMPLE)
    (image,) = info.signature.inputs.to_dict()
    assert (image["name"], tuple(image["tensor-spec"]["shape"])) == ("image", (-1, *IMAGE_SHAPE))
    assert info.signature.outputs.to_dict()[0]["name"] == "probabilities"
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_allclose(
        loaded.predict({"image": EXAMPLE}),
        tiny_keras_model.predict(EXAMPLE, verbose=0),
        atol=1e-6,
    )
    assert loaded.metadata.get_input_schema() == info.signature.inputs
