"""The registered model's ``python_function`` face: MLflow's pyfunc API over the Predictor.

The export stage logs the ONNX model with this module as the pyfunc loader (and the whole
``digits_predict`` package beside it), so every pyfunc consumer, ``mlflow models serve``
and MLServer's MLflow runtime among them, checks inputs as the Predictor does: a batch
divided by 255 is refused with one line instead of answered with near-uniform guesses.
The ``onnx`` flavor of the same model still loads the plain graph.

Input: ``{"image": float32 [N, 28, 28]}`` (or the array alone), raw pixels 0..255.
Output: ``{"probabilities": float32 [N, 10]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from digits_predict.contract import INPUT_NAME, OUTPUT_NAME
from digits_predict.errors import InputError, PredictError
from digits_predict.predictor import Predictor


class ServedModel:
    """What ``mlflow.pyfunc.load_model`` returns inside its ``PyFuncModel`` wrapper."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def get_raw_model(self) -> ServedModel:
        """MLflow's hook (``PyFuncModel.get_raw_model``) for the object under its wrapper: a
        server that checks a request itself calls ``predict`` here directly, without the
        wrapper's per-call schema enforcement and signature inspection."""
        return self

    def predict(
        self, model_input: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Probabilities for each image; bad input raises MLflow's invalid-parameter error."""
        try:
            images = _images_of(model_input)
            probabilities = self.predictor.predict(images).probabilities
        except PredictError as err:
            # MlflowException with INVALID_PARAMETER_VALUE is what MLflow's scoring server
            # answers with HTTP 400 and the message; any other exception becomes a vague 400.
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        return {OUTPUT_NAME: np.array(probabilities)}


def _images_of(model_input: Any) -> Any:
    if isinstance(model_input, Mapping):
        names = sorted(str(name) for name in model_input)
        if names != [INPUT_NAME]:
            raise InputError(f"inputs are named {names}; expected one input named {INPUT_NAME!r}")
        return model_input[INPUT_NAME]
    if isinstance(model_input, np.ndarray):
        return model_input
    raise InputError(
        f"input is a {type(model_input).__name__}; expected {{{INPUT_NAME!r}: float32 array "
        "[N, 28, 28]}} or the array itself"
    )


def _load_pyfunc(data_path: str) -> ServedModel:
    """MLflow's loader hook: ``data_path`` is the model's ``model.onnx``."""
    return ServedModel(Predictor(data_path))
