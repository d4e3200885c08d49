"""The model card: a Markdown page made from the same facts the ONNX metadata carries."""

from __future__ import annotations

import json

from digits_predict.contract import NUM_CLASSES, OUTPUT_DTYPE
from stages.common.config import ExportParams


def model_card(
    metadata: dict[str, str], parity: dict, params: ExportParams, registry_version: str
) -> str:
    """The card as Markdown: provenance, the input contract, parity, and how to use the model."""
    labels = ", ".join(json.loads(metadata["class_labels"]))
    return f"""# Model card: MNIST digit classifier (ONNX)

## Provenance

| | |
|---|---|
| MLflow run | `{metadata["mlflow_run_id"]}` |
| Registered model | `{params.registered_model_name}` version {registry_version}, alias `@{params.alias}` |
| Git commit | `{metadata["git_commit"]}` |
| Data digest (sha256 of the prepared splits) | `{metadata["data_digest"]}` |
| Test accuracy | {float(metadata["test_accuracy"]):.4%} on {parity["samples"]} MNIST test images |

## Input contract

| | |
|---|---|
| Input | `{metadata["input_name"]}`, {metadata["input_dtype"]}, shape {metadata["input_shape"]} (null: any batch size) |
| Values | {metadata["input_range"]} (raw pixels) |
| Layout | {metadata["input_layout"]} |
| Preprocessing the caller does | {metadata["preprocessing"]} |
| Output | `{metadata["output_name"]}`, {OUTPUT_DTYPE} [N, {NUM_CLASSES}]: softmax probabilities |
| Class labels | {labels} |

## Parity with the Keras model (onnxruntime {parity["onnxruntime_version"]}, {parity["provider"]}, opset {parity["opset"]})

| | |
|---|---|
| Samples compared | {parity["samples"]} |
| Max abs difference of probabilities | {parity["max_abs_diff"]:.3g} (tolerance {parity["tolerance"]:.3g}) |
| Mean abs difference | {parity["mean_abs_diff"]:.3g} |
| Argmax agreement | {parity["argmax_agreement"]:.4%} (required ≥ {parity["min_agreement"]:.4%}) |
| Keras test accuracy | {parity["keras_accuracy"]:.4%} |
| ONNX test accuracy | {parity["onnx_accuracy"]:.4%} |

## Which model to deploy

Deploy `{params.registered_model_name}@{params.champion_alias}`, not this file by default:
`@{params.alias}` is the newest model that passed the parity gate, `@{params.champion_alias}`
the best one, which moves only when a candidate has a higher test accuracy on the same
test data (a tie keeps it). Whether this version became champion, and why, is in its
registry tags (`promotion.*`). To fetch the champion's ONNX file:

    python -m stages.tracking download {params.champion_alias} deploy/   # deploy/model.onnx

## Use without TensorFlow

    pip install onnxruntime numpy pillow
    digits-predict --model model.onnx digit.png

or in Python: `digits_predict.Predictor("model.onnx").predict(images)`.
"""
