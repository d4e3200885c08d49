"""The deployment side of the MNIST pipeline: classify digits with onnxruntime alone.

Needs only onnxruntime, numpy and Pillow; never TensorFlow, Keras, MLflow or onnx.

    from digits_predict import Predictor, load_image
    prediction = Predictor("models/model.onnx").predict(load_image("seven.png"))
    prediction.digits[0], prediction.confidences[0]

The names below are imported on first use, so ``import digits_predict.contract`` (as the
export stage does) loads only the contract and its error type: no onnxruntime, no Pillow,
and no dependency of the export stage on the predictor's modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digits_predict.contract import check_contract, contract_metadata
    from digits_predict.errors import ContractError, InputError, ModelLoadError, PredictError
    from digits_predict.images import (
        LoadedInput,
        load_array,
        load_image,
        load_input,
        to_mnist_form,
    )
    from digits_predict.predictor import Prediction, Predictor

_HOMES = {
    "ContractError": "digits_predict.errors",
    "InputError": "digits_predict.errors",
    "ModelLoadError": "digits_predict.errors",
    "PredictError": "digits_predict.errors",
    "check_contract": "digits_predict.contract",
    "contract_metadata": "digits_predict.contract",
    "LoadedInput": "digits_predict.images",
    "load_array": "digits_predict.images",
    "load_image": "digits_predict.images",
    "load_input": "digits_predict.images",
    "to_mnist_form": "digits_predict.images",
    "Prediction": "digits_predict.predictor",
    "Predictor": "digits_predict.predictor",
}

__all__ = [
    "ContractError",
    "InputError",
    "LoadedInput",
    "ModelLoadError",
    "PredictError",
    "Prediction",
    "Predictor",
    "check_contract",
    "contract_metadata",
    "load_array",
    "load_image",
    "load_input",
    "to_mnist_form",
]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
