"""The input/output contract of the exported ONNX model: the one source of truth.

The export stage writes ``contract_metadata(...)`` into the model's ``metadata_props``;
the predictor reads it back and ``check_contract`` compares it with the graph it loaded.
This module needs only the standard library, so the export stage can import it cheaply.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from digits_predict.errors import ContractError

__all__ = [
    "CLASS_LABELS",
    "CONTRACT_KEYS",
    "CONTRACT_VERSION",
    "IMAGE_SHAPE",
    "INPUT_DTYPE",
    "INPUT_LAYOUT",
    "INPUT_NAME",
    "INPUT_SHAPE",
    "METADATA_KEYS",
    "NUM_CLASSES",
    "OUTPUT_DTYPE",
    "OUTPUT_NAME",
    "PREPROCESSING",
    "PROVENANCE_KEYS",
    "VALUE_RANGE",
    "ContractError",
    "TensorSpec",
    "check_contract",
    "contract_metadata",
]

CONTRACT_VERSION = "1"

INPUT_NAME = "image"
IMAGE_SHAPE = (28, 28)
# None marks the dynamic batch dimension; JSON writes it as null.
INPUT_SHAPE = (None, *IMAGE_SHAPE)
INPUT_DTYPE = "float32"
VALUE_RANGE = (0, 255)
INPUT_LAYOUT = (
    "float32 tensor [N, 28, 28], row-major: N images, each 28 rows (top to bottom) of 28 "
    "pixels (left to right), one grayscale channel; 0 is the black background, 255 the "
    "white ink (MNIST polarity)"
)
PREPROCESSING = (
    "nothing beyond MNIST form: pass 28x28 grayscale raw pixel values 0..255 (do not divide "
    "by 255 or standardize: the model rescales internally), white digit on a black "
    "background; like MNIST, a digit is best given with its longer side about 20 px and its "
    "centre of mass at the image centre (digits_predict.images.load_image does this)"
)

OUTPUT_NAME = "probabilities"
OUTPUT_DTYPE = "float32"
NUM_CLASSES = 10
CLASS_LABELS = tuple(str(digit) for digit in range(NUM_CLASSES))
# The most images one request to a served model may carry: past it a server answers 400
# instead of allocating for an arbitrarily large JSON body; Triton's config says the same.
MAX_BATCH_SIZE = 1024

# The keys that describe the tensors, then the keys that say where the model came from.
CONTRACT_KEYS = (
    "contract_version",
    "input_name",
    "input_shape",
    "input_dtype",
    "input_range",
    "input_layout",
    "preprocessing",
    "output_name",
    "class_labels",
)
# Digests, not names: the same training gives the same file on every machine and store. The
# MLflow run that made the model is the one tagged model_sha256 = model_digest.
PROVENANCE_KEYS = ("model_digest", "data_digest", "test_accuracy")
METADATA_KEYS = CONTRACT_KEYS + PROVENANCE_KEYS

# onnxruntime names element types "tensor(float)"; the contract names them like numpy.
_ONNXRUNTIME_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(uint16)": "uint16",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}


class TensorSpec(NamedTuple):
    """A graph input or output as ``check_contract`` reads it.

    ``shape`` holds an int per fixed dimension and None (or a symbolic name, as onnxruntime
    gives) per dynamic one; ``type`` is "float32" or onnxruntime's "tensor(float)".
    onnxruntime's ``NodeArg`` objects have the same three attributes and are accepted as is.
    """

    name: str
    shape: Sequence[int | str | None] | None
    type: str


def contract_metadata(
    *,
    model_digest: str,
    data_digest: str,
    test_accuracy: float,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Build the ``metadata_props`` an exported model must carry, contract keys first.

    ``extra`` adds keys of the caller's own; it may not redefine a contract or provenance key.
    """
    provenance = {"model_digest": model_digest, "data_digest": data_digest}
    for key, value in provenance.items():
        if not isinstance(value, str) or not value:
            raise ContractError(f"{key} must be a non-empty string, got {value!r}")
    # numbers.Real admits numpy scalars (Keras metrics may be np.float32); bool is no accuracy.
    if (
        isinstance(test_accuracy, bool)
        or not isinstance(test_accuracy, numbers.Real)
        or not 0.0 <= test_accuracy <= 1.0
    ):
        raise ContractError(f"test_accuracy must be a number in [0, 1], got {test_accuracy!r}")
    metadata = {
        "contract_version": CONTRACT_VERSION,
        "input_name": INPUT_NAME,
        "input_shape": json.dumps(list(INPUT_SHAPE)),
        "input_dtype": INPUT_DTYPE,
        "input_range": json.dumps(list(VALUE_RANGE)),
        "input_layout": INPUT_LAYOUT,
        "preprocessing": PREPROCESSING,
        "output_name": OUTPUT_NAME,
        "class_labels": json.dumps(list(CLASS_LABELS)),
        **provenance,
        # repr keeps every digit of the float, so the value round-trips exactly.
        "test_accuracy": repr(float(test_accuracy)),
    }
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ContractError(
                f"extra metadata must map str to str, got {key!r}: {type(value).__name__}"
            )
        if key in metadata:
            raise ContractError(f"extra metadata key {key!r} would overwrite a contract key")
        metadata[key] = value
    return metadata


def check_contract(
    metadata: Mapping[str, str],
    inputs: Sequence[Any],
    outputs: Sequence[Any],
) -> None:
    """Raise ``ContractError`` (one line) unless metadata and graph both match the contract.

    ``inputs`` and ``outputs`` are ``TensorSpec``-like: onnxruntime's ``session.get_inputs()``
    and ``session.get_outputs()`` work, as do ``(name, shape, type)`` tuples.
    """
    _check_metadata(metadata)
    class_labels = _parse_json(metadata, "class_labels")
    _check_graph_input(inputs)
    output_width = _check_graph_output(outputs)
    if output_width is not None and output_width != len(class_labels):
        raise ContractError(
            f"metadata class_labels lists {len(class_labels)} labels but graph output "
            f"{OUTPUT_NAME!r} has width {output_width}; expected one label per output column"
        )
    # Compared after the width, so a wrong count is reported against the graph, which says
    # more than "differs from the contract".
    if tuple(class_labels) != CLASS_LABELS:
        raise ContractError(
            f"model metadata class_labels is {metadata['class_labels']!r}; "
            f"the contract says {json.dumps(list(CLASS_LABELS))!r}"
        )


def _check_metadata(metadata: Mapping[str, str]) -> None:
    if not metadata:
        raise ContractError(
            "model carries no contract metadata (metadata_props is empty); expected the keys "
            "written by digits_predict.contract.contract_metadata: " + ", ".join(METADATA_KEYS)
        )
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ContractError(f"model metadata lacks key(s) {', '.join(missing)}")
    not_text = [key for key in METADATA_KEYS if not isinstance(metadata[key], str)]
    if not_text:
        raise ContractError(f"model metadata value(s) of {', '.join(not_text)} are not strings")
    if metadata["contract_version"] != CONTRACT_VERSION:
        raise ContractError(
            f"model metadata contract_version is {metadata['contract_version']!r}; "
            f"this digits_predict reads contract version {CONTRACT_VERSION!r}"
        )
    expected_text = {
        "input_name": INPUT_NAME,
        "input_dtype": INPUT_DTYPE,
        "output_name": OUTPUT_NAME,
    }
    for key, expected in expected_text.items():
        if metadata[key] != expected:
            raise ContractError(
                f"model metadata {key} is {metadata[key]!r}; the contract says {expected!r}"
            )
    expected_json = {
        "input_shape": list(INPUT_SHAPE),
        "input_range": list(VALUE_RANGE),
    }
    for key, expected in expected_json.items():
        if _parse_json(metadata, key) != expected:
            raise ContractError(
                f"model metadata {key} is {metadata[key]!r}; "
                f"the contract says {json.dumps(expected)!r}"
            )
    class_labels = _parse_json(metadata, "class_labels")
    if not isinstance(class_labels, list) or not all(isinstance(x, str) for x in class_labels):
        raise ContractError(
            f"model metadata class_labels is {metadata['class_labels']!r}; "
            "expected a JSON list of strings"
        )
    accuracy_text = metadata["test_accuracy"]
    try:
        accuracy = float(accuracy_text)
    except ValueError:
        accuracy = math.nan
    if not 0.0 <= accuracy <= 1.0:
        raise ContractError(
            f"model metadata test_accuracy is {accuracy_text!r}; expected a number in [0, 1]"
        )


def _parse_json(metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise ContractError(
            f"model metadata {key} is {metadata[key]!r}, which is not valid JSON"
        ) from None


def _the_one_tensor(tensors: Sequence[Any], role: str, name: str, dtype: str) -> TensorSpec:
    """The graph's single input (or output), checked for its contract name and dtype."""
    specs = [_as_spec(tensor) for tensor in tensors]
    if len(specs) != 1:
        raise ContractError(
            f"model graph has {len(specs)} {role}s ({_names(specs)}); "
            f"the contract expects exactly one, {name!r}"
        )
    (spec,) = specs
    if spec.name != name:
        raise ContractError(
            f"model graph {role} is named {spec.name!r}; the contract says {name!r}"
        )
    if _dtype_name(spec.type) != dtype:
        raise ContractError(
            f"model graph {role} {name!r} has type {_dtype_name(spec.type)}; "
            f"the contract says {dtype}"
        )
    return spec


def _check_graph_input(inputs: Sequence[Any]) -> None:
    spec = _the_one_tensor(inputs, "input", INPUT_NAME, INPUT_DTYPE)
    shape = _normalized_shape(spec)
    if shape != list(INPUT_SHAPE):
        raise ContractError(
            f"model graph input {INPUT_NAME!r} has shape {_shape_text(shape)}; the contract says "
            f"{_shape_text(list(INPUT_SHAPE))} (dynamic batch of 28x28 images)"
        )


def _check_graph_output(outputs: Sequence[Any]) -> int | None:
    """Check the output tensor and return its width (None when the graph leaves it dynamic)."""
    spec = _the_one_tensor(outputs, "output", OUTPUT_NAME, OUTPUT_DTYPE)
    shape = _normalized_shape(spec)
    if len(shape) != 2 or shape[0] is not None:
        raise ContractError(
            f"model graph output {OUTPUT_NAME!r} has shape {_shape_text(shape)}; the contract "
            f"says [N, {len(CLASS_LABELS)}] with a dynamic batch dimension N"
        )
    return shape[1]


def _as_spec(tensor: Any) -> TensorSpec:
    if all(hasattr(tensor, field) for field in TensorSpec._fields):
        return TensorSpec(tensor.name, tensor.shape, tensor.type)
    name, shape, type_name = tensor
    return TensorSpec(name, shape, type_name)


def _normalized_shape(spec: TensorSpec) -> list[int | None]:
    """Fixed dimensions as ints, dynamic ones (None or a symbolic name) as None."""
    if spec.shape is None:
        raise ContractError(f"model graph tensor {spec.name!r} has no declared shape")
    return [dim if isinstance(dim, int) and dim > 0 else None for dim in spec.shape]


def _dtype_name(type_name: str) -> str:
    return _ONNXRUNTIME_TYPES.get(type_name, type_name)


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if dim is None else str(dim) for dim in shape) + "]"


def _names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(repr(spec.name) for spec in specs) or "none"
