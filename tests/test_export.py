"""Stage export: ONNX conversion with its contract, the parity gate, registration, model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ml_fixtures import TINY_EXPORT, Workspace

from digits_predict.contract import METADATA_KEYS, check_contract
from stages import export
from stages.config import ExportParams, load_params
from stages.errors import StageError
from stages.parity import compare_predictions
from stages.tracking import RunRef

pytest_plugins = ["ml_fixtures"]

PROVENANCE = {"mlflow_run_id": "0123456789abcdef", "data_digest": "d" * 64,
              "git_commit": "c" * 40, "test_accuracy": 0.75}
PARITY_KEYS = {"max_abs_diff", "mean_abs_diff", "argmax_agreement", "keras_accuracy",
               "onnx_accuracy", "samples", "onnxruntime_version", "provider"}


@pytest.fixture(scope="module")
def params(tiny_trained: Workspace) -> ExportParams:
    return load_params(tiny_trained.params).export


@pytest.fixture(scope="module")
def keras_model(tiny_trained: Workspace):  # noqa: ANN201
    from stages.model_io import load_keras_model

    return load_keras_model(tiny_trained.model)


@pytest.fixture(scope="module")
def keras_probs(keras_model, tiny_trained: Workspace) -> np.ndarray:  # noqa: ANN001
    from stages.model_io import predict_probabilities

    return predict_probabilities(keras_model, tiny_trained.splits["test"][0])


@pytest.fixture(scope="module")
def proto(keras_model, params: ExportParams):  # noqa: ANN001, ANN201
    """The converted, contract-carrying, checked ONNX model of the tiny Keras model."""
    return export.build_checked_onnx(keras_model, params, dict(PROVENANCE))


def _final_kernel(model):  # noqa: ANN001, ANN202
    """The initializer holding the last MatMul's kernel: the one feeding the Softmax."""
    producers = {output: node for node in model.graph.node for output in node.output}
    (softmax,) = [node for node in model.graph.node if node.op_type == "Softmax"]
    node = producers[softmax.input[0]]
    while node.op_type != "MatMul":
        node = producers[node.input[0]]
    (kernel,) = [init for init in model.graph.initializer if init.name == node.input[1]]
    return kernel


@pytest.fixture(scope="module")
def perturbed(proto, keras_model, tiny_trained: Workspace):  # noqa: ANN001, ANN201
    """A copy of ``proto`` with 5.0 added to one weight of the output layer."""
    import keras
    import onnx
    from onnx import numpy_helper

    hidden = keras.Model(keras_model.input, keras_model.get_layer("relu_0").output)
    busiest = int(hidden.predict(tiny_trained.splits["test"][0].astype(np.float32), verbose=0)
                  .mean(axis=0).argmax())  # the unit whose weight matters on most images
    changed = onnx.ModelProto()
    changed.CopyFrom(proto)
    kernel = _final_kernel(changed)
    weights = numpy_helper.to_array(kernel).copy()
    assert weights.shape == (16, 10)
    weights[busiest, 0] += 5.0
    kernel.CopyFrom(numpy_helper.from_array(weights, kernel.name))
    return changed


# --- conversion and the gate ---------------------------------------------------------------------


def _dims(value) -> list:  # noqa: ANN001
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


def test_onnx_graph_and_contract(proto) -> None:  # noqa: ANN001
    import onnx

    from stages.onnx_export import onnx_session

    (image,) = proto.graph.input
    (probabilities,) = proto.graph.output
    assert image.name == "image"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(image) == ["N", 28, 28]
    assert probabilities.name == "probabilities"
    assert probabilities.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(probabilities) == ["N", 10]

    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert set(METADATA_KEYS) <= set(metadata)
    assert metadata["mlflow_run_id"] == PROVENANCE["mlflow_run_id"]
    assert metadata["data_digest"] == PROVENANCE["data_digest"]
    assert float(metadata["test_accuracy"]) == PROVENANCE["test_accuracy"]
    session = onnx_session(proto.SerializeToString())
    check_contract(metadata, session.get_inputs(), session.get_outputs())  # the predictor's view


def test_parity_passes_for_the_converted_model(proto, keras_probs, tiny_trained: Workspace,  # noqa: ANN001
                                               params: ExportParams) -> None:
    x_test, y_test = tiny_trained.splits["test"]
    report = export.check_parity(proto.SerializeToString(), keras_probs, x_test, y_test, params)
    assert report.passed, report.failures
    assert report.failures == ()
    assert report.samples == len(y_test)
    assert report.max_abs_diff <= 1e-5
    assert report.argmax_agreement == 1.0
    assert report.onnx_accuracy == report.keras_accuracy


def test_parity_fails_for_a_perturbed_model(perturbed, keras_probs, tiny_trained: Workspace,  # noqa: ANN001
                                            params: ExportParams) -> None:
    x_test, y_test = tiny_trained.splits["test"]
    report = export.check_parity(perturbed.SerializeToString(), keras_probs, x_test, y_test,
                                 params)
    assert not report.passed
    assert any(failure.startswith("max abs difference") for failure in report.failures)
    assert report.max_abs_diff > 1e-3


# --- main ----------------------------------------------------------------------------------------


def _args(ws: Workspace, out: Path, run_file: Path | None = None) -> list[str]:
    return ["--params", str(ws.params), "--model", str(ws.model),
            "--data-dir", str(ws.data_dir), "--run-file", str(run_file or ws.run_file),
            "--onnx-out", str(out / "model.onnx"), "--parity-out", str(out / "parity.json"),
            "--card-out", str(out / "MODEL_CARD.md")]


@pytest.fixture(scope="module")
def exported(tiny_trained: Workspace) -> Path:
    """``export.main`` once on the session's tiny model; its outputs' folder."""
    out = tiny_trained.root / "export"
    with tiny_trained.store():
        export.main(_args(tiny_trained, out))
    return out


def test_main_writes_a_model_that_predicts_like_keras(exported: Path, keras_probs,  # noqa: ANN001
                                                       tiny_trained: Workspace) -> None:
    import onnx

    from stages.onnx_export import onnx_session, run_onnx

    data = (exported / "model.onnx").read_bytes()
    model = onnx.load_from_string(data)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert set(METADATA_KEYS) <= set(metadata)
    assert metadata["mlflow_run_id"] == tiny_trained.ref.run_id
    import mlflow

    tags = mlflow.MlflowClient(tiny_trained.uri).get_run(tiny_trained.ref.run_id).data.tags
    assert metadata["data_digest"] == tags["data_digest"]
    assert metadata["git_commit"] == tags["git_commit"]
    session = onnx_session(data)
    check_contract(metadata, session.get_inputs(), session.get_outputs())
    onnx_probs = run_onnx(session, tiny_trained.splits["test"][0])
    np.testing.assert_allclose(onnx_probs, keras_probs, atol=1e-5, rtol=0)


def test_main_writes_parity_and_model_card(exported: Path, tiny_trained: Workspace) -> None:
    import onnxruntime

    parity = json.loads((exported / "parity.json").read_text())
    assert PARITY_KEYS <= set(parity)
    assert parity["passed"] is True and parity["failures"] == []
    assert parity["samples"] == len(tiny_trained.splits["test"][1])
    assert 0 <= parity["max_abs_diff"] <= 1e-5
    assert parity["argmax_agreement"] == 1.0
    assert parity["keras_accuracy"] == parity["onnx_accuracy"] > 0.5
    assert parity["onnxruntime_version"] == onnxruntime.__version__
    assert parity["provider"] == "CPUExecutionProvider"

    card = (exported / "MODEL_CARD.md").read_text()
    assert tiny_trained.ref.run_id in card
    assert f"{parity['max_abs_diff']:.3g}" in card
    assert f"{parity['argmax_agreement']:.4%}" in card
    assert f"{parity['onnx_accuracy']:.4%}" in card
    assert f"`{TINY_EXPORT['registered_model_name']}` version" in card
    assert f"@{TINY_EXPORT['alias']}" in card


def test_main_logs_and_registers_the_onnx_model(exported: Path, tiny_trained: Workspace) -> None:
    import mlflow
    import onnx

    client = mlflow.MlflowClient(tiny_trained.uri)
    name, alias = TINY_EXPORT["registered_model_name"], TINY_EXPORT["alias"]
    version = client.get_model_version_by_alias(name, alias)
    assert version.run_id == tiny_trained.ref.run_id
    card = (exported / "MODEL_CARD.md").read_text()
    assert f"`{name}` version {version.version}," in card

    run = client.get_run(tiny_trained.ref.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["parity"] == "passed"
    assert run.data.metrics["parity_max_abs_diff"] <= 1e-5
    artifacts = {entry.path for entry in client.list_artifacts(run.info.run_id)}
    assert {"parity.json", "MODEL_CARD.md"} <= artifacts

    with tiny_trained.store():
        registered = mlflow.onnx.load_model(f"models:/{name}@{alias}")
    written = onnx.load(exported / "model.onnx")
    assert registered.graph == written.graph
    assert list(registered.metadata_props) == list(written.metadata_props)


def test_main_gate_failure_writes_no_model(tiny_trained: Workspace, perturbed, tmp_path: Path,  # noqa: ANN001
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    import onnx

    client = mlflow.MlflowClient(tiny_trained.uri)
    # a run of its own, so the session's run stays as train left it
    run_id = client.create_run(tiny_trained.ref.experiment_id).info.run_id
    client.set_terminated(run_id, status="FINISHED")
    run_file = tmp_path / "run.json"
    RunRef(run_id=run_id, experiment_id=tiny_trained.ref.experiment_id,
           tracking_uri=tiny_trained.uri).write(run_file)
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"a stale model from an earlier run")

    def convert(model, opset: int):  # noqa: ANN001, ANN202
        copy = onnx.ModelProto()
        copy.CopyFrom(perturbed)
        return copy

    monkeypatch.setattr(export, "convert_to_onnx", convert)
    name = TINY_EXPORT["registered_model_name"]
    versions_before = len(client.search_model_versions(f"name = '{name}'"))
    with tiny_trained.store(), pytest.raises(StageError, match="parity gate failed") as caught:
        export.main(_args(tiny_trained, out, run_file=run_file))
    message = str(caught.value)
    assert "\n" not in message
    assert "max abs difference" in message
    assert sorted(path.name for path in out.iterdir()) == []  # stale model gone, nothing new
    assert len(client.search_model_versions(f"name = '{name}'")) == versions_before
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["parity"].startswith("failed: max abs difference")
    assert run.data.metrics["parity_max_abs_diff"] > 1e-3


def test_main_missing_run_file(tiny_trained: Workspace, tmp_path: Path) -> None:
    with tiny_trained.store(), pytest.raises(StageError, match="run file not found"):
        export.main(_args(tiny_trained, tmp_path / "out", run_file=tmp_path / "run.json"))
    assert not (tmp_path / "out").exists()


# --- compare_predictions, table-driven -----------------------------------------------------------

LABELS = np.arange(10)


def _confident(predicted: list[int] | np.ndarray) -> np.ndarray:
    probs = np.full((len(predicted), 10), 0.01, dtype=np.float32)
    probs[np.arange(len(predicted)), predicted] = 0.91
    return probs


def _onnx_predicts(row: int, digit: int):  # noqa: ANN202
    def change(keras: np.ndarray) -> np.ndarray:
        onnx = keras.copy()
        onnx[row] = _confident([digit])[0]
        return onnx
    return change


def _nudged(amount: float):  # noqa: ANN202
    def change(keras: np.ndarray) -> np.ndarray:
        onnx = keras.copy()
        onnx[4, 7] += amount  # not the argmax of row 4
        onnx[4, 8] -= amount
        return onnx
    return change


def _filled(value: float):  # noqa: ANN202
    """Put ``value`` where row 2 has its argmax: numpy's argmax takes NaN as the largest."""
    def change(keras: np.ndarray) -> np.ndarray:
        onnx = keras.copy()
        onnx[2, 2] = value
        return onnx
    return change


def _failure_kinds(failures: tuple[str, ...]) -> set[str]:
    prefixes = {"ONNX output holds": "nan", "max abs difference": "tolerance",
                "argmax agreement": "agreement", "ONNX accuracy": "accuracy"}
    kinds = set()
    for failure in failures:
        (kind,) = [kind for prefix, kind in prefixes.items() if failure.startswith(prefix)]
        kinds.add(kind)
    return kinds


KERAS_ALL_RIGHT = _confident(LABELS)
KERAS_ROW0_WRONG = _confident([2, *LABELS[1:]])
# (id, keras probabilities, onnx from keras, tolerance, min_agreement, expected failure kinds)
PARITY_CASES = [
    ("identical", KERAS_ALL_RIGHT, lambda k: k.copy(), 1e-5, 1.0, set()),
    ("within-tolerance", KERAS_ALL_RIGHT, _nudged(4e-6), 1e-5, 1.0, set()),
    ("tolerance-exceeded", KERAS_ALL_RIGHT, _nudged(1e-3), 1e-5, 1.0, {"tolerance"}),
    ("agreement-below-min-same-accuracy", KERAS_ROW0_WRONG, _onnx_predicts(0, 3), 1.0, 1.0,
     {"agreement"}),
    ("accuracy-differs", KERAS_ALL_RIGHT, _onnx_predicts(0, 1), 1.0, 0.95,
     {"agreement", "accuracy"}),
    ("disagreement-allowed", KERAS_ALL_RIGHT, _onnx_predicts(0, 1), 1.0, 0.9, set()),
    ("nan-output", KERAS_ALL_RIGHT, _filled(np.nan), 1e-5, 1.0, {"nan", "tolerance"}),
    ("infinite-output", KERAS_ALL_RIGHT, _filled(np.inf), 1e-5, 1.0, {"nan", "tolerance"}),
    # argmaxes agree, but a NaN difference is no evidence of parity
    ("nan-from-keras", _filled(np.nan)(KERAS_ALL_RIGHT), lambda k: KERAS_ALL_RIGHT.copy(), 1e-5,
     1.0, {"tolerance"}),
]


@pytest.mark.parametrize(("keras", "make_onnx", "tolerance", "min_agreement", "expected"),
                         [case[1:] for case in PARITY_CASES],
                         ids=[case[0] for case in PARITY_CASES])
def test_compare_predictions(keras: np.ndarray, make_onnx, tolerance: float,  # noqa: ANN001
                             min_agreement: float, expected: set[str]) -> None:
    report = compare_predictions(keras, make_onnx(keras), LABELS, tolerance, min_agreement)
    assert _failure_kinds(report.failures) == expected, report.failures
    assert report.passed == (not expected)
    assert report.samples == len(LABELS)
    assert report.as_dict()["passed"] == report.passed
    assert report.as_dict()["failures"] == list(report.failures)


def test_compare_predictions_figures() -> None:
    onnx = _onnx_predicts(0, 1)(KERAS_ALL_RIGHT)
    report = compare_predictions(KERAS_ALL_RIGHT, onnx, LABELS, tolerance=1.0, min_agreement=0.9)
    assert report.argmax_agreement == pytest.approx(0.9)
    assert report.keras_accuracy == 1.0
    assert report.onnx_accuracy == pytest.approx(0.9)
    assert report.max_abs_diff == pytest.approx(0.9, abs=1e-6)
    assert report.mean_abs_diff == pytest.approx(1.8 / 100, abs=1e-6)


def test_compare_predictions_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match="Keras gave"):
        compare_predictions(KERAS_ALL_RIGHT, KERAS_ALL_RIGHT[:5], LABELS, 1e-5, 1.0)
