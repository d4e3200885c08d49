"""The deployment side of the MNIST pipeline: classify digits with onnxruntime alone.

Needs only onnxruntime, numpy and Pillow; never TensorFlow, Keras, MLflow or onnx.

    from digits_predict import Predictor, load_image
    prediction = Predictor("models/model.onnx").predict(load_image("seven.png"))
    prediction.digits[0], prediction.confidences[0]
"""

from digits_predict.contract import check_contract, contract_metadata
from digits_predict.errors import ContractError, InputError, ModelLoadError, PredictError
from digits_predict.images import LoadedInput, load_array, load_image, load_input, to_mnist_form
from digits_predict.predictor import Prediction, Predictor

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
