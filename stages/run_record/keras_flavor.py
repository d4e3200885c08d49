"""Logging a Keras model to MLflow, around a bug of the pinned MLflow's Keras flavor.

``mlflow.keras.log_model(..., input_example=...)`` fails with FileNotFoundError on
``input_example.json``: its ``save_model`` writes the example before it creates the
model folder. ``Model.log`` with a flavor whose ``save_model`` makes the folder first
works around it. ``tests/unit/run_record/test_keras_flavor.py`` shows the bug: once it
fails (the bug is fixed), call ``mlflow.keras.log_model`` directly and drop this module.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from digits_predict.contract import INPUT_NAME

if TYPE_CHECKING:
    import keras
    from mlflow.models.model import ModelInfo


def _save_keras_flavor(path: str, **kwargs: Any) -> None:
    import mlflow.keras

    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(path=path, **kwargs)


def log_keras_model(
    model: keras.Model, example: np.ndarray, name: str = "keras_model"
) -> ModelInfo:
    """Log the model with its signature and input example; requirements given, not inferred."""
    import keras
    import tensorflow
    from mlflow.models import Model

    from tracking.registry import model_signature

    example = example.astype(np.float32)
    signature = model_signature(example, model.predict(example, verbose=0))
    flavor = SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras_flavor)
    # MLflow checks the input example by predicting it, and Keras draws a progress bar
    # on stdout for that; the pipeline's log has no use for it. MLflow's Keras wrapper also
    # hands the named input over as a one-element list, which Keras warns about and accepts.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The structure of `inputs` doesn't match", UserWarning)
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=flavor,
            model=model,
            signature=signature,
            input_example={INPUT_NAME: example},
            # inferring requirements reloads the model in a subprocess: seconds for nothing
            pip_requirements=[
                f"tensorflow=={tensorflow.__version__}",
                f"keras=={keras.__version__}",
            ],
        )
