"""MLServer's MLflow runtime, with requests checked against the model's signature.

MLServer answers any exception a model raises with HTTP 500 and a bare "Internal Server
Error"; a client that sent the wrong name, shape or datatype, or pixels divided by 255,
deserves a 400 saying what was expected. ``DigitsRuntime`` reads the one tensor the
signature names straight from the request (whatever codec or content type the request
asks for), converts UINT8 (how MNIST is stored) to FP32 without loss, and turns the
refusals of the model's pyfunc (``digits_predict.pyfunc``, which checks the pixel values
as the Predictor does) into ``InferenceError``. The pyfunc's own ``predict`` is called, not
MLflow's wrapper around it, whose checks repeat these at a cost (``_unwrapped_predict``).
Loading, metadata and response encoding stay MLServer's. Each answer goes to the request
log (``monitor.request_log``) when the model's settings name one
(``parameters.extra.request_log``: ``params.yaml``'s ``monitor`` section and the folder, as
``python -m serving`` wrote them and ``monitor.log_settings.RequestLogSettings`` checks
them; a bad value fails the load with one line naming it); its lines are made by a process
beside this one (``monitor.encoder``), so that they do not take this process's interpreter
from the answers. Each loaded version opens a log of its own and names itself in every
record; unloading it (a switch to another version, ``python -m serving reload``) writes
what its log holds and closes it. A load says so on the server's stderr, one line.

Nothing from ``digits_predict`` is imported here: the pyfunc must load the package the
registered model ships in its ``code/`` folder, not the one of this checkout.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable

import numpy as np
from mlflow.exceptions import MlflowException
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput
from mlserver_mlflow import MLflowRuntime
from mlserver_mlflow.codecs import TensorDictCodec

from digits_predict.contract import MAX_BATCH_SIZE, OUTPUT_NAME
from monitor.log_settings import RequestLogSettings
from monitor.request_log import RequestLog, ServedModel

ACCEPTED_DATATYPES = ("FP32", "UINT8")
# what this server's records name as their ``source``
SOURCE = "mlserver"


class DigitsRuntime(MLflowRuntime):
    """Serves the registered digit classifier; bad requests get 400 and one line."""

    async def load(self) -> bool:
        loaded = await super().load()
        (spec,) = self._signature.inputs.inputs  # check_signature refused anything else
        self._input_name = spec.name
        self._item_shape = tuple(spec.shape[1:])
        self._request_log, self._served = self._open_request_log()
        self._predict = self._unwrapped_predict()
        served = self._served
        alias = f" (@{served.alias})" if served.alias else ""
        print(
            f"serving: loaded {served.name} v{served.version}{alias}", file=sys.stderr, flush=True
        )
        return loaded

    async def unload(self) -> bool:
        log, self._request_log = getattr(self, "_request_log", None), None
        if log is not None:
            # its writer thread finishes what is queued; the event loop answers meanwhile
            await asyncio.to_thread(log.close)
        return await super().unload()

    def _unwrapped_predict(self) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """The pyfunc's own ``predict``, under MLflow's wrapper: the wrapper enforces the
        signature again and inspects ``predict``'s parameters on every call, an eighth of
        an answer's time under load, for checks ``images_of`` has made. A version
        registered before its pyfunc offered ``get_raw_model`` keeps the wrapper."""
        try:
            return self._model.get_raw_model().predict
        except NotImplementedError:
            return self._model.predict

    def _open_request_log(self) -> tuple[RequestLog | None, ServedModel]:
        extra = self.settings.parameters.extra or {}
        served = ServedModel(
            name=self.settings.name,
            version=str(self.settings.parameters.version),
            alias=extra.get("alias"),
        )
        handed = extra.get("request_log")
        if not handed:
            return None, served
        where = f"{self.settings.name}'s model settings, parameters.extra.request_log"
        settings = RequestLogSettings.from_extra(handed, where)
        # thousands of answers a second: their lines are made beside this process, not in it
        return settings.open(SOURCE, served, encode_in_subprocess=True), served

    @property
    def expected(self) -> str:
        shape = ", ".join(str(dim) for dim in self._item_shape)
        return (
            f"expected one input {self._input_name!r}, datatype FP32 (or UINT8), shape "
            f"[N, {shape}] with 1 <= N <= {MAX_BATCH_SIZE}, as JSON numbers"
        )

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        images = self.images_of(payload)
        try:
            output = self._predict({self._input_name: images})
        except MlflowException as err:
            raise InferenceError(err.message.strip().splitlines()[0]) from None
        if self._request_log is not None:
            self._request_log.record(images, output[OUTPUT_NAME], self._served)
        return self.encode_response(output, default_codec=TensorDictCodec)

    def images_of(self, payload: InferenceRequest) -> np.ndarray:
        """The request's one tensor as float32, or ``InferenceError`` naming what is wrong."""
        name = self._input_name
        names = [tensor.name for tensor in payload.inputs]
        if names != [name]:
            raise InferenceError(f"request has inputs {names}; {self.expected}")
        (tensor,) = payload.inputs
        datatype = getattr(tensor.datatype, "value", tensor.datatype)
        if datatype not in ACCEPTED_DATATYPES:
            raise InferenceError(f"input {name!r} has datatype {datatype}; {self.expected}")
        shape = list(tensor.shape)
        if len(shape) != 1 + len(self._item_shape) or tuple(shape[1:]) != self._item_shape:
            raise InferenceError(f"input {name!r} has shape {shape}; {self.expected}")
        if shape[0] < 1:
            raise InferenceError(f"input {name!r} holds no images (shape {shape}); {self.expected}")
        if shape[0] > MAX_BATCH_SIZE:
            raise InferenceError(
                f"input {name!r} holds {shape[0]} images, more than {MAX_BATCH_SIZE} per "
                f"request; split the batch ({self.expected})"
            )
        values = _numbers(tensor, name, self.expected)
        if values.size != math.prod(shape):
            raise InferenceError(
                f"input {name!r} has {values.size} values for shape {shape}, which needs "
                f"{math.prod(shape)}; {self.expected}"
            )
        if datatype == "UINT8" and not (
            np.all(values == np.floor(values)) and values.min() >= 0 and values.max() <= 255
        ):
            raise InferenceError(
                f"input {name!r} is UINT8 but holds values that are not integers 0..255 "
                f"({values.min():g}..{values.max():g}); send FP32 for other values"
            )
        return values.reshape(shape).astype(np.float32)


def _numbers(tensor: RequestInput, name: str, expected: str) -> np.ndarray:
    """The tensor's JSON data as float64, flat or nested as the protocol allows."""
    data = tensor.data.root
    if not isinstance(data, list):
        raise InferenceError(f"input {name!r} carries no JSON list of numbers; {expected}")
    try:
        # numpy refuses ragged or too deeply nested lists and anything that is not a number
        values = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InferenceError(
            f"input {name!r} data is not a regular list of numbers; {expected}"
        ) from None
    return values.ravel()
