"""The model contract: the metadata the export stage writes, and the checks made on load."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from digits_predict import ContractError, ModelLoadError, Predictor
from digits_predict.contract import (
    CLASS_LABELS,
    CONTRACT_KEYS,
    IMAGE_SHAPE,
    INPUT_NAME,
    METADATA_KEYS,
    OUTPUT_NAME,
    PROVENANCE_KEYS,
    VALUE_RANGE,
    TensorSpec,
    check_contract,
    contract_metadata,
)
from factories.onnx_models import PROVENANCE, good_metadata, random_weights, tiny_model, write_model

GOOD_INPUTS = [TensorSpec("image", ["N", 28, 28], "tensor(float)")]
GOOD_OUTPUTS = [TensorSpec("probabilities", ["N", 10], "tensor(float)")]


# --- contract_metadata -------------------------------------------------------------------------


def test_the_contract_module_needs_only_the_standard_library() -> None:
    """The export stage imports it next to TensorFlow: it must not drag the runtime along."""
    probe = (
        "import json, sys\n"
        "import digits_predict.contract\n"
        "heavy = {'numpy', 'onnxruntime', 'PIL', 'onnx', 'tensorflow'}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_contract_metadata_writes_every_key_as_text_contract_keys_first() -> None:
    metadata = contract_metadata(**PROVENANCE)
    assert tuple(metadata) == METADATA_KEYS == CONTRACT_KEYS + PROVENANCE_KEYS
    assert all(isinstance(value, str) for value in metadata.values())
    assert json.loads(metadata["input_shape"]) == [None, *IMAGE_SHAPE]
    assert json.loads(metadata["input_range"]) == list(VALUE_RANGE) == [0, 255]
    assert json.loads(metadata["class_labels"]) == list(CLASS_LABELS) == list("0123456789")
    assert metadata["input_name"] == INPUT_NAME == "image"
    assert metadata["output_name"] == OUTPUT_NAME == "probabilities"
    assert (metadata["contract_version"], metadata["input_dtype"]) == ("1", "float32")
    assert float(metadata["test_accuracy"]) == PROVENANCE["test_accuracy"]
    assert "255" in metadata["input_layout"] and "white" in metadata["preprocessing"]


def test_contract_metadata_accepts_numpy_accuracy_and_keeps_extra_keys() -> None:
    metadata = contract_metadata(
        **{**PROVENANCE, "test_accuracy": np.float32(0.5)}, extra={"framework": "keras 3"}
    )
    assert metadata["test_accuracy"] == "0.5"
    assert metadata["framework"] == "keras 3"
    check_contract(metadata, GOOD_INPUTS, GOOD_OUTPUTS)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"test_accuracy": 1.5}, "test_accuracy must be a number in"),
        ({"test_accuracy": math.nan}, "test_accuracy must be a number in"),
        ({"test_accuracy": True}, "test_accuracy must be a number in"),
        ({"test_accuracy": "0.9"}, "test_accuracy must be a number in"),
        ({"model_digest": ""}, "model_digest must be a non-empty string"),
        ({"data_digest": None}, "data_digest must be a non-empty string"),
        ({"extra": {"input_name": "x"}}, "would overwrite a contract key"),
        ({"extra": {"seed": 42}}, "extra metadata must map str to str"),
    ],
)
def test_contract_metadata_refuses_bad_values(overrides: dict, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        contract_metadata(**{**PROVENANCE, **overrides})


# --- check_contract: metadata and graph descriptions, no model needed --------------------------


def test_check_contract_accepts_what_the_export_stage_writes() -> None:
    check_contract(good_metadata(), GOOD_INPUTS, GOOD_OUTPUTS)
    # onnxruntime may report dynamic dimensions as None as well as by name.
    check_contract(
        good_metadata(),
        [("image", [None, 28, 28], "float32")],
        [("probabilities", ["unk__1", 10], "tensor(float)")],
    )


def _without(key: str) -> dict[str, str]:
    metadata = good_metadata()
    del metadata[key]
    return metadata


BAD_METADATA = [
    ({}, "carries no contract metadata"),
    (_without("class_labels"), "lacks key.*class_labels"),
    (_without("model_digest"), "lacks key.*model_digest"),
    (good_metadata(contract_version="2"), "contract_version is '2'"),
    (good_metadata(input_name="pixels"), "input_name is 'pixels'; the contract says 'image'"),
    (good_metadata(input_dtype="uint8"), "input_dtype is 'uint8'"),
    (good_metadata(output_name="logits"), "output_name is 'logits'"),
    (good_metadata(input_shape="[null, 784]"), "input_shape is"),
    (good_metadata(input_shape="[null, 28"), "input_shape .* not valid JSON"),
    (good_metadata(input_range="[0, 1]"), "input_range is"),
    (good_metadata(class_labels='"0123456789"'), "expected a JSON list of strings"),
    (good_metadata(class_labels=json.dumps(list(range(10)))), "expected a JSON list of strings"),
    (good_metadata(class_labels=json.dumps(list("abcdefghij"))), "class_labels is .*contract"),
    (good_metadata(test_accuracy="high"), "test_accuracy is 'high'"),
]


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA)
def test_check_contract_refuses_bad_metadata(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(ContractError, match=message) as caught:
        check_contract(metadata, GOOD_INPUTS, GOOD_OUTPUTS)
    assert "\n" not in str(caught.value)


BAD_GRAPHS = [
    ([], GOOD_OUTPUTS, "graph has 0 inputs"),
    ([("pixels", ["N", 28, 28], "tensor(float)")], GOOD_OUTPUTS, "input is named 'pixels'"),
    ([("image", ["N", 28, 28], "tensor(double)")], GOOD_OUTPUTS, "type float64; .* float32"),
    ([("image", [1, 28, 28], "tensor(float)")], GOOD_OUTPUTS, r"shape \[1, 28, 28\]"),
    ([("image", ["N", 784], "tensor(float)")], GOOD_OUTPUTS, r"shape \[N, 784\]"),
    ([("image", None, "tensor(float)")], GOOD_OUTPUTS, "no declared shape"),
    (GOOD_INPUTS, [("probs", ["N", 10], "tensor(float)")], "output is named 'probs'"),
    (GOOD_INPUTS, [*GOOD_OUTPUTS, ("logits", ["N", 10], "tensor(float)")], "has 2 outputs"),
    (GOOD_INPUTS, [("probabilities", ["N", 10], "tensor(float16)")], "type float16"),
    (GOOD_INPUTS, [("probabilities", ["N", 9], "tensor(float)")], "10 labels .* width 9"),
    (GOOD_INPUTS, [("probabilities", [1, 10], "tensor(float)")], "dynamic batch"),
]


@pytest.mark.parametrize(("inputs", "outputs", "message"), BAD_GRAPHS)
def test_check_contract_refuses_graphs_that_break_it(
    inputs: list, outputs: list, message: str
) -> None:
    with pytest.raises(ContractError, match=message):
        check_contract(good_metadata(), inputs, outputs)


def test_check_contract_counts_labels_against_the_output_width() -> None:
    nine_labels = good_metadata(class_labels=json.dumps(list("012345678")))
    with pytest.raises(ContractError, match="lists 9 labels but graph output .* has width 10"):
        check_contract(nine_labels, GOOD_INPUTS, GOOD_OUTPUTS)
    # Even a graph 9 wide does not make nine labels right: the contract is the digits 0..9.
    with pytest.raises(ContractError, match="class_labels is .*the contract says"):
        check_contract(nine_labels, GOOD_INPUTS, [("probabilities", ["N", 9], "tensor(float)")])


# --- Predictor: the same checks on real model files --------------------------------------------


def _load(tmp_path: Path, **model_options: object) -> Predictor:
    weights, bias = model_options.pop("weights", None) or random_weights()
    model = tiny_model(weights, bias, **model_options)
    return Predictor(write_model(tmp_path / "model.onnx", model))


def test_predictor_loads_a_model_that_keeps_the_contract(tmp_path: Path) -> None:
    predictor = _load(tmp_path)
    assert dict(predictor.metadata) == good_metadata()
    assert predictor.provenance == {
        "model_digest": PROVENANCE["model_digest"],
        "data_digest": PROVENANCE["data_digest"],
        "test_accuracy": repr(PROVENANCE["test_accuracy"]),
    }
    assert predictor.path == tmp_path / "model.onnx"
    with pytest.raises(TypeError):
        predictor.metadata["input_name"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    ("model_options", "message"),
    [
        ({"metadata": {}}, "carries no contract metadata"),
        ({"output_name": "probs"}, "graph output is named 'probs'; the contract says"),
        ({"input_name": "pixels"}, "graph input is named 'pixels'"),
        ({"input_type": TensorProto.DOUBLE}, "input 'image' has type float64"),
        ({"input_type": TensorProto.UINT8}, "input 'image' has type uint8"),
        ({"input_shape": (1, 28, 28)}, r"has shape \[1, 28, 28\]"),
        ({"weights": random_weights(classes=9)}, "lists 10 labels but graph output"),
        (
            {"metadata": good_metadata(class_labels=json.dumps(list("012345678")))},
            "lists 9 labels but graph output 'probabilities' has width 10",
        ),
        ({"softmax": False}, "is not probabilities"),
    ],
)
def test_predictor_refuses_models_that_break_the_contract(
    tmp_path: Path, model_options: dict, message: str
) -> None:
    with pytest.raises(ContractError, match=message) as caught:
        _load(tmp_path, **model_options)
    text = str(caught.value)
    assert "\n" not in text and str(tmp_path / "model.onnx") in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", r"is empty \(0 bytes\)"),
        (b"this is not a protobuf", "not an ONNX model onnxruntime can load"),
        (b"\x08\x07" + bytes(range(256)), "not an ONNX model onnxruntime can load"),
    ],
)
def test_predictor_names_a_model_file_it_cannot_load(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as caught:
        Predictor(path)
    assert "\n" not in str(caught.value)


def test_predictor_refuses_a_directory_as_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is not a file"):
        Predictor(tmp_path)
