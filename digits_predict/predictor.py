"""Run the exported digit classifier with onnxruntime alone."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnxruntime as ort

from digits_predict.arrays import as_image_batch
from digits_predict.contract import (
    CLASS_LABELS,
    IMAGE_SHAPE,
    INPUT_NAME,
    OUTPUT_NAME,
    PROVENANCE_KEYS,
    check_contract,
)
from digits_predict.errors import ContractError, ModelLoadError

# How far the probabilities of one image may sum from 1 and still count as a softmax.
_SOFTMAX_TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True, eq=False)
class Prediction:
    """What the model says about a batch of N images (a single image is a batch of one).

    The arrays are read-only. ``digits[i]`` is the most probable digit of image i and
    ``probabilities[i, d]`` the model's probability that image i shows digit d.
    """

    digits: np.ndarray
    probabilities: np.ndarray

    @property
    def labels(self) -> tuple[str, ...]:
        """The predicted class labels ("0".."9"), one per image."""
        return tuple(CLASS_LABELS[digit] for digit in self.digits)

    @property
    def confidences(self) -> np.ndarray:
        """The probability of each image's predicted digit, shape (N,)."""
        return self.probabilities[np.arange(len(self.digits)), self.digits]

    def __len__(self) -> int:
        return len(self.digits)


class Predictor:
    """An ONNX digit classifier whose contract was checked when it was loaded.

    Loading raises ``ModelLoadError`` when the file is missing or not an ONNX model, and
    ``ContractError`` when its metadata or graph disagree with ``digits_predict.contract``.
    """

    def __init__(self, model_path: str | os.PathLike[str], *, threads: int = 1) -> None:
        """Load and check the model. ``threads`` is onnxruntime's intra-op thread count.

        One thread is the default because a small network on a batch of one finishes before
        a thread pool would have woken up: extra threads only add latency and burn CPU.
        """
        self._path = Path(model_path)
        self._session = _open_session(self._path, threads)
        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        try:
            check_contract(metadata, self._session.get_inputs(), self._session.get_outputs())
        except ContractError as err:
            raise ContractError(f"{self._path}: {err}") from None
        self._metadata = MappingProxyType(metadata)
        # Cached once: session.run is the only per-call work besides validating the input.
        self._output_names = [OUTPUT_NAME]
        self._check_outputs_are_probabilities()

    @property
    def path(self) -> Path:
        """The model file this predictor was loaded from."""
        return self._path

    @property
    def metadata(self) -> Mapping[str, str]:
        """The model's metadata_props (contract and provenance), read-only."""
        return self._metadata

    @property
    def provenance(self) -> dict[str, str]:
        """Where the model came from: the digests of the trained model's file and of its data
        (the MLflow run that made it is tagged ``model_sha256`` = ``model_digest``), and its
        test accuracy."""
        return {key: self._metadata[key] for key in PROVENANCE_KEYS}

    def predict(self, images: object) -> Prediction:
        """Classify one (28, 28) image or a (N, 28, 28) batch of raw 0..255 pixels.

        Any real numeric dtype is accepted; NaN, infinities, values outside 0..255 and other
        shapes raise ``InputError``, and so does a batch holding an image whose brightest
        pixel is at most 1 (divided by 255, or blank): the whole batch, naming the images.
        """
        batch = as_image_batch(images)
        (probabilities,) = self._session.run(self._output_names, {INPUT_NAME: batch})
        digits = probabilities.argmax(axis=1)
        probabilities.flags.writeable = False
        digits.flags.writeable = False
        return Prediction(digits=digits, probabilities=probabilities)

    def __repr__(self) -> str:
        return f"Predictor({str(self._path)!r})"

    def _check_outputs_are_probabilities(self) -> None:
        """Run two blank images once: proves the batch is dynamic and the output a softmax.

        The graph's declared shapes can be dynamic or wrong, and a model exported without
        its softmax still looks right on paper; one tiny run catches both at load time (and
        warms the session up, so the first real call is not the slow one).
        """
        blank = np.zeros((2, *IMAGE_SHAPE), dtype=np.float32)
        try:
            (probabilities,) = self._session.run(self._output_names, {INPUT_NAME: blank})
        except Exception as err:  # onnxruntime's errors share no public base class
            raise ContractError(
                f"{self._path}: model fails on a batch of 2 blank images: {_first_line(err)}"
            ) from None
        expected_shape = (2, len(CLASS_LABELS))
        if probabilities.shape != expected_shape or probabilities.dtype != np.float32:
            raise ContractError(
                f"{self._path}: on a batch of 2 images the model returns {probabilities.dtype} "
                f"of shape {probabilities.shape}; the contract says float32 {expected_shape}"
            )
        row_sums = probabilities.sum(axis=1, dtype=np.float64)
        in_unit_interval = np.all((probabilities >= 0) & (probabilities <= 1))
        if not in_unit_interval or not np.allclose(row_sums, 1.0, atol=_SOFTMAX_TOLERANCE):
            raise ContractError(
                f"{self._path}: output {OUTPUT_NAME!r} is not probabilities (a blank image "
                f"gives values summing to {row_sums[0]:.4g}); expected softmax output"
            )


def _open_session(path: Path, threads: int) -> ort.InferenceSession:
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist; expected an ONNX model")
    if not path.is_file():
        raise ModelLoadError(f"model path {path} is not a file; expected an ONNX model")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file {path} is empty (0 bytes); expected an ONNX model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Warnings (e.g. about unused initializers) are not the caller's business; errors are
    # still raised as exceptions.
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime's errors share no public base class
        raise ModelLoadError(
            f"model file {path} is not an ONNX model onnxruntime can load: {_first_line(err)}"
        ) from None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
