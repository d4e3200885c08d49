"""MLServer's MLflow runtime, with requests checked against the model's contract.

MLServer answers any exception a model raises with HTTP 500 and a traceback; a client
that sent the wrong name, shape or datatype, or pixels divided by 255, deserves a 400
saying what was expected. ``DigitsRuntime`` checks the request's one tensor before it is
decoded, checks the pixels as the Predictor does (``digits_predict.arrays``), converts
UINT8 (how MNIST is stored) to FP32 without loss, and turns the refusals of the model's
pyfunc (``digits_predict.pyfunc``) into ``InferenceError``.
Loading, metadata from the signature and response encoding stay MLServer's.
"""

from __future__ import annotations

import math

from mlflow.exceptions import MlflowException
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput
from mlserver_mlflow import MLflowRuntime
from mlserver_mlflow.codecs import TensorDictCodec

from digits_predict.arrays import as_image_batch
from digits_predict.contract import IMAGE_SHAPE, INPUT_NAME, VALUE_RANGE
from digits_predict.errors import PredictError
from serving import MAX_BATCH_SIZE

ACCEPTED_DATATYPES = ("FP32", "UINT8")
EXPECTED = (
    f"expected one input {INPUT_NAME!r}, datatype FP32 (or UINT8), shape [N, "
    f"{IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}] with 1 <= N <= {MAX_BATCH_SIZE}, raw pixel values "
    f"{VALUE_RANGE[0]}..{VALUE_RANGE[1]}"
)


class DigitsRuntime(MLflowRuntime):
    """Serves the registered digit classifier; bad requests get 400 and one line."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        check_request(payload)
        try:
            decoded = self.decode_request(payload)
        except (ValueError, TypeError) as err:  # data that does not fill the shape, etc.
            raise InferenceError(
                f"cannot decode input {INPUT_NAME!r} ({err}); {EXPECTED}"
            ) from None
        try:
            # checked here too, so versions registered before the pyfunc checked are refused
            images = as_image_batch(decoded[INPUT_NAME])
        except PredictError as err:
            raise InferenceError(str(err)) from None
        try:
            output = self._model.predict({INPUT_NAME: images})
        except MlflowException as err:
            raise InferenceError(err.message.strip().splitlines()[0]) from None
        return self.encode_response(output, default_codec=TensorDictCodec)


def check_request(payload: InferenceRequest) -> None:
    """Raise ``InferenceError`` unless the request carries one well-formed image batch."""
    names = [tensor.name for tensor in payload.inputs]
    if names != [INPUT_NAME]:
        raise InferenceError(f"request has inputs {names}; {EXPECTED}")
    (tensor,) = payload.inputs
    datatype = getattr(tensor.datatype, "value", tensor.datatype)
    if datatype not in ACCEPTED_DATATYPES:
        raise InferenceError(f"input {INPUT_NAME!r} has datatype {datatype}; {EXPECTED}")
    shape = list(tensor.shape)
    if len(shape) != 3 or tuple(shape[1:]) != IMAGE_SHAPE or shape[0] < 1:
        raise InferenceError(f"input {INPUT_NAME!r} has shape {shape}; {EXPECTED}")
    if shape[0] > MAX_BATCH_SIZE:
        raise InferenceError(
            f"input {INPUT_NAME!r} holds {shape[0]} images, more than {MAX_BATCH_SIZE} per "
            f"request; split the batch ({EXPECTED})"
        )
    _check_element_count(tensor, math.prod(shape))


def _check_element_count(tensor: RequestInput, expected: int) -> None:
    data = tensor.data.root
    # JSON data is a (possibly nested) list; binary data is checked by MLServer's codec
    if isinstance(data, list) and (count := _leaf_count(data)) != expected:
        raise InferenceError(
            f"input {INPUT_NAME!r} has {count} values for shape {list(tensor.shape)}, which "
            f"needs {expected}; {EXPECTED}"
        )


def _leaf_count(data: list) -> int:
    return sum(_leaf_count(item) if isinstance(item, list) else 1 for item in data)
