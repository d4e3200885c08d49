"""The model card: a Markdown page made from the same facts the ONNX metadata carries."""

from __future__ import annotations

import json

from digits_predict.contract import MAX_BATCH_SIZE, NUM_CLASSES, OUTPUT_DTYPE
from kernel.params import ExportParams
from tracking.version_tags import DrawnFigure


def model_card(
    metadata: dict[str, str],
    parity: dict,
    params: ExportParams,
    drawn: DrawnFigure | None = None,
) -> str:
    """The card as Markdown, one section after another: provenance, which model to deploy,
    the input contract, serving, Triton, wrong requests, use without TensorFlow, parity.

    ``drawn`` is the model's accuracy on the drawn test set, when there is one.
    """
    return "".join(
        [
            _provenance(metadata, parity, params, drawn),
            _which_model(params),
            _input_contract(metadata),
            _oip_serving(params),
            _triton(params),
            _wrong_requests(),
            _without_tensorflow(),
            _parity(parity),
        ]
    )


def _provenance(
    metadata: dict[str, str], parity: dict, params: ExportParams, drawn: DrawnFigure | None
) -> str:
    name = params.registered_model_name
    drawn_row = (
        f"| Drawn test accuracy | {drawn.accuracy:.4%} on {drawn.images} digits people "
        f"drew on the page (digest `{drawn.digest}`) |\n"
        if drawn
        else ""
    )
    return f"""# Model card: MNIST digit classifier (ONNX)

## Provenance

| | |
|---|---|
| Model digest (sha256 of the trained `.keras` file) | `{metadata["model_digest"]}` |
| Data digest (sha256 of the prepared splits) | `{metadata["data_digest"]}` |
| Registered model | `{name}`, handed off as `@{params.alias}` |
| Test accuracy | {float(metadata["test_accuracy"]):.4%} on {parity["samples"]} MNIST test images |
{drawn_row}
The MLflow run that trained this model is the newest one tagged `model_sha256` with the
model digest, in the experiment that `train.experiment_name` (params.yaml) names: in the
UI, search that experiment's runs for `tags.model_sha256 = '{metadata["model_digest"]}'`;
from the command line, `python -m tracking.experiments --runs` (`make compare RUN=1`) gives
each DVC experiment's run id. The run holds the whole record: params, the data it was
trained, validated and tested on (with their digests), the training curves, the test,
parity and int8 figures, the models, and the md5 that dvc.lock gives each file (tags
`dvc.md5.<path>`). Its registered versions, with their numbers, aliases and promotion tags,
are those made from that run. The card names no run id, version number or commit, so that
the same training writes the same card in every clone.

"""


def _which_model(params: ExportParams) -> str:
    name, champion = params.registered_model_name, params.champion_alias
    tolerance = f"{params.promotion_tolerance * 100:.4g} points"
    return f"""## 1. Which model to deploy

Deploy `{name}@{champion}`, not this file by default:
`@{params.alias}` is the newest model that passed the parity gate, `@{champion}`
the best one, which moves only when a candidate has a higher test accuracy on the same
test data (a tie keeps it). With a drawn test set (digits people drew and corrected on the
page), the candidate must, on the same data of both sets (same digests), be higher on at
least one set and lower on neither by more than {tolerance} (`export.promotion_tolerance`).
The rule's weakness: losses within the tolerance can add up over many promotions, so the
champion may end up well below an older version on one set; every registered version
carries both accuracies as tags (`test_accuracy`, `drawn_accuracy`), so read them down the
versions to see it. Whether this version became champion, and why, is in its registry tags
(`promotion.*`). A person may move `@{champion}` with a reason (`make promote`, `make
rollback`), which pins it until `make unpin`; every move, the rule's and the people's, is
in the registry: `make history` (`python -m tracking history`) lists them, `make report`
shows the last ones. To fetch the champion's ONNX file:

    python -m tracking download {champion} deploy/   # deploy/model.onnx

For CPUs at the edge, the quantize stage makes an int8 model of this version (4x smaller,
2-3x faster) once it passes its own gate against this one: it is the registry version
tagged `precision=int8` and `fp32_version` (this version's number), with the same input
contract. With `quantize.method: auto` it tries onnxruntime's methods that suit the graph,
cheapest first (an MLP: dynamic, dynamic per channel, then dynamic per channel with the
output layer left in float; a CNN: static QDQ per channel, then the same with the output
layer in float) and keeps the first that passes the gate: `reports/int8.json` names it
(`method`), says why (`choice`) and what each method before it failed on (`tried`); the
int8 version's `quantization` tag describes it. The alias `quantize.alias` names (`@int8`
by default) always follows `@{champion}` to its int8 twin.

"""


def _input_contract(metadata: dict[str, str]) -> str:
    labels = ", ".join(json.loads(metadata["class_labels"]))
    return f"""## 2. Input contract

| | |
|---|---|
| Input | `{metadata["input_name"]}`, {metadata["input_dtype"]}, shape {metadata["input_shape"]} (null: any batch size) |
| Values | {metadata["input_range"]} (raw pixels); an image with no pixel above 1 is refused as divided by 255 (or blank) |
| Layout | {metadata["input_layout"]} |
| Preprocessing the caller does | {metadata["preprocessing"]} |
| Output | `{metadata["output_name"]}`, {OUTPUT_DTYPE} [N, {NUM_CLASSES}]: softmax probabilities |
| Class labels | {labels} |

The registered MLflow model carries the same names in its signature (`{metadata["input_name"]}` →
`{metadata["output_name"]}`), so named requests (`{{"inputs": {{"{metadata["input_name"]}": ...}}}}`) work.

"""


def _oip_serving(params: ExportParams) -> str:
    name, champion = params.registered_model_name, params.champion_alias
    return f"""## 3. Serve it over the Open Inference Protocol (MLServer)

    make serve                      # {name}@{champion} on http://127.0.0.1:8080 (ALIAS=..., SERVE_PORT=...)
    curl -s 127.0.0.1:8080/v2/models/{name}/infer -H 'Content-Type: application/json' \\
      -d '{{"inputs": [{{"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": [...784 values 0..255...]}}]}}'

Any Open Inference Protocol client works (tritonclient, KServe's): FP32 or UINT8, shape
[N, 28, 28], at most {MAX_BATCH_SIZE} images a request. `make serve-mlflow` serves the same
model with `mlflow models serve` (`/invocations`, `{{"inputs": {{"image": ...}}}}`).

"""


def _triton(params: ExportParams) -> str:
    name = params.registered_model_name
    return f"""## 4. Drop it into Triton

    make champion triton-repo TRITON_MODEL=champion/model.onnx   # model_repository/{name}/config.pbtxt + 1/model.onnx

onnxruntime backend, max_batch_size {MAX_BATCH_SIZE}, dynamic batching, one CPU instance:
`tritonserver --model-repository=$PWD/model_repository`.

"""


def _wrong_requests() -> str:
    return f"""## 5. What a wrong request gets

HTTP 400 and one line naming what was wrong and what was expected: another input name,
shape or datatype, an empty batch, more than {MAX_BATCH_SIZE} images, too few values,
pixels outside 0..255, or pixels divided by 255. A body that is not the protocol's JSON
gets 422. The server goes on serving.

"""


def _without_tensorflow() -> str:
    return """## Use without TensorFlow

    pip install onnxruntime numpy pillow
    digits-predict --model model.onnx digit.png

or in Python: `digits_predict.Predictor("model.onnx").predict(images)`.

"""


def _parity(parity: dict) -> str:
    return f"""## Parity with the Keras model (onnxruntime {parity["onnxruntime_version"]}, {parity["provider"]}, opset {parity["opset"]})

| | |
|---|---|
| Samples compared | {parity["samples"]} |
| Max abs difference of probabilities | {parity["max_abs_diff"]:.3g} (tolerance {parity["tolerance"]:.3g}) |
| Mean abs difference | {parity["mean_abs_diff"]:.3g} |
| Argmax agreement | {parity["argmax_agreement"]:.4%} (required ≥ {parity["min_agreement"]:.4%}) |
| Keras test accuracy | {parity["keras_accuracy"]:.4%} |
| ONNX test accuracy | {parity["onnx_accuracy"]:.4%} |
"""
