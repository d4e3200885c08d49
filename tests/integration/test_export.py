"""Stage export: ONNX conversion with its contract, the parity gate, registration, model card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from digits_predict.contract import METADATA_KEYS, check_contract
from factories.fake_registry import FakeRegistry
from factories.handoff_faults import FAILING_STEPS, run_of_its_own, snapshot
from factories.params import TINY_EXPORT
from factories.trained import Workspace, export_args
from kernel.cli import CommandError
from kernel.params import ExportParams, load_params
from stages import export
from stages.dataset.arrays import load_split, split_file
from stages.handoff import gate
from stages.run_record.runs import file_sha256
from tracking.champion import Standing, decide

PROVENANCE = {"model_digest": "a" * 64, "data_digest": "d" * 64}
PARITY_KEYS = {
    "max_abs_diff",
    "mean_abs_diff",
    "argmax_agreement",
    "keras_accuracy",
    "onnx_accuracy",
    "samples",
    "onnxruntime_version",
    "provider",
}


@pytest.fixture(scope="module")
def params(tiny_trained: Workspace) -> ExportParams:
    return load_params(tiny_trained.params).export


@pytest.fixture(scope="module")
def keras_model(tiny_trained: Workspace):
    from stages.model.keras_io import load_keras_model

    return load_keras_model(tiny_trained.model)


@pytest.fixture(scope="module")
def keras_probs(keras_model, tiny_trained: Workspace) -> np.ndarray:
    from stages.model.keras_io import predict_probabilities

    return predict_probabilities(keras_model, tiny_trained.splits["test"][0])


@pytest.fixture(scope="module")
def proto(keras_model, params: ExportParams):
    """The converted, contract-carrying, checked ONNX model of the tiny Keras model."""
    from digits_predict.contract import contract_metadata

    return gate.build_checked_onnx(
        keras_model, params.opset, contract_metadata(**PROVENANCE, test_accuracy=0.75)
    )


def _final_kernel(model):
    """The initializer holding the last MatMul's kernel: the one feeding the Softmax."""
    producers = {output: node for node in model.graph.node for output in node.output}
    (softmax,) = [node for node in model.graph.node if node.op_type == "Softmax"]
    node = producers[softmax.input[0]]
    while node.op_type != "MatMul":
        node = producers[node.input[0]]
    (kernel,) = [init for init in model.graph.initializer if init.name == node.input[1]]
    return kernel


@pytest.fixture(scope="module")
def perturbed(proto, keras_model, tiny_trained: Workspace):
    """A copy of ``proto`` with 5.0 added to one weight of the output layer."""
    import keras
    import onnx
    from onnx import numpy_helper

    hidden = keras.Model(keras_model.input, keras_model.get_layer("relu_0").output)
    busiest = int(
        hidden.predict(tiny_trained.splits["test"][0].astype(np.float32), verbose=0)
        .mean(axis=0)
        .argmax()
    )  # the unit whose weight matters on most images
    changed = onnx.ModelProto()
    changed.CopyFrom(proto)
    kernel = _final_kernel(changed)
    weights = numpy_helper.to_array(kernel).copy()
    assert weights.shape[1] == 10
    weights[busiest, 0] += 5.0
    kernel.CopyFrom(numpy_helper.from_array(weights, kernel.name))
    return changed


# --- conversion and the gate ---------------------------------------------------------------------


def _dims(value) -> list:
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


def test_onnx_graph_and_contract(proto) -> None:
    import onnx

    from stages.handoff.onnx_runtime import onnx_session

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
    assert metadata["model_digest"] == PROVENANCE["model_digest"]
    assert metadata["data_digest"] == PROVENANCE["data_digest"]
    assert float(metadata["test_accuracy"]) == 0.75
    session = onnx_session(proto.SerializeToString())
    check_contract(metadata, session.get_inputs(), session.get_outputs())  # the predictor's view


def test_gate_passes_the_converted_model(
    keras_model, tiny_trained: Workspace, params: ExportParams
) -> None:
    x_test, y_test = tiny_trained.splits["test"]
    gated = gate.gate_onnx_model(keras_model, x_test, y_test, params, dict(PROVENANCE))
    report = gated.report
    assert report.passed, report.failures
    assert gated.metadata["model_digest"] == PROVENANCE["model_digest"]
    assert float(gated.metadata["test_accuracy"]) == report.keras_accuracy
    assert report.failures == ()
    assert report.samples == len(y_test)
    assert report.max_abs_diff <= 1e-5
    assert report.argmax_agreement == 1.0
    assert report.onnx_accuracy == report.keras_accuracy


def _converting_to(proto):
    import onnx

    def convert(model, opset: int):
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        return copy

    return convert


def test_gate_fails_a_perturbed_model(
    perturbed,
    keras_model,
    tiny_trained: Workspace,
    params: ExportParams,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x_test, y_test = tiny_trained.splits["test"]
    monkeypatch.setattr(gate, "convert_to_onnx", _converting_to(perturbed))
    report = gate.gate_onnx_model(keras_model, x_test, y_test, params, dict(PROVENANCE)).report
    assert not report.passed
    assert any(failure.startswith("max abs difference") for failure in report.failures)
    assert report.max_abs_diff > 1e-3


# --- main ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tiny_trained: Workspace) -> Path:
    """``export.main`` once on the session's tiny model; its outputs' folder."""
    out = tiny_trained.root / "export"
    with tiny_trained.store():
        export.main(export_args(tiny_trained, out))
    return out


def test_main_writes_a_model_that_predicts_like_keras(
    exported: Path, keras_probs, tiny_trained: Workspace
) -> None:
    import onnx

    from stages.handoff.onnx_runtime import onnx_session, run_onnx

    data = (exported / "model.onnx").read_bytes()
    model = onnx.load_from_string(data)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert set(METADATA_KEYS) <= set(metadata)
    import mlflow

    # digests, which name the run without naming it: its model_sha256 tag is the model digest
    tags = mlflow.MlflowClient(tiny_trained.uri).get_run(tiny_trained.ref.run_id).data.tags
    assert metadata["model_digest"] == tags["model_sha256"] == file_sha256(tiny_trained.model)
    assert metadata["data_digest"] == tags["data_digest"]
    assert not {"mlflow_run_id", "git_commit"} & set(metadata)
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
    # the model's digest leads to the run; the run id itself would differ in every clone
    assert file_sha256(tiny_trained.model) in card and tiny_trained.ref.run_id not in card
    assert f"{parity['max_abs_diff']:.3g}" in card
    assert f"{parity['argmax_agreement']:.4%}" in card
    assert f"{parity['onnx_accuracy']:.4%}" in card
    assert (
        f"`{TINY_EXPORT['registered_model_name']}`, handed off as `@{TINY_EXPORT['alias']}`" in card
    )


def test_main_logs_and_registers_the_onnx_model(exported: Path, tiny_trained: Workspace) -> None:
    import mlflow
    import onnx

    client = mlflow.MlflowClient(tiny_trained.uri)
    name, alias = TINY_EXPORT["registered_model_name"], TINY_EXPORT["alias"]
    version = client.get_model_version_by_alias(name, alias)
    assert version.run_id == tiny_trained.ref.run_id
    card = (exported / "MODEL_CARD.md").read_text()
    assert f"version {version.version}" not in card  # a number that depends on the store

    run = client.get_run(tiny_trained.ref.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["parity"] == "passed"
    assert run.data.metrics["test_onnx/max_abs_diff"] <= 1e-5
    artifacts = {entry.path for entry in client.list_artifacts(run.info.run_id)}
    assert {"parity.json", "MODEL_CARD.md"} <= artifacts

    with tiny_trained.store():
        registered = mlflow.onnx.load_model(f"models:/{name}@{alias}")
    written = onnx.load(exported / "model.onnx")
    assert registered.graph == written.graph
    assert list(registered.metadata_props) == list(written.metadata_props)


def test_the_registered_pyfunc_is_named_and_refuses_what_the_predictor_refuses(
    exported: Path, tiny_trained: Workspace
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from digits_predict import Predictor

    name, alias = TINY_EXPORT["registered_model_name"], TINY_EXPORT["alias"]
    with tiny_trained.store():
        served = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    schema = served.metadata.signature
    tensors = [(t["name"], t["tensor-spec"]) for t in schema.inputs.to_dict()]
    assert tensors == [("image", {"dtype": "float32", "shape": (-1, 28, 28)})]
    tensors = [(t["name"], t["tensor-spec"]) for t in schema.outputs.to_dict()]
    assert tensors == [("probabilities", {"dtype": "float32", "shape": (-1, 10)})]
    x_test, _ = load_split(split_file(tiny_trained.data_dir, "test"))
    images = x_test[:7].astype(np.float32)
    expected = Predictor(exported / "model.onnx").predict(images).probabilities
    answer = served.predict({"image": images})
    assert list(answer) == ["probabilities"]
    np.testing.assert_array_equal(answer["probabilities"], expected)
    with pytest.raises(MlflowException, match=r"have no pixel above 1: scaled to 0..1") as caught:
        served.predict({"image": images / 255})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_main_gate_failure_changes_no_output(
    tiny_trained: Workspace,
    perturbed,
    tmp_path: Path,
    exported: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    run_id, run_file = run_of_its_own(tiny_trained, tmp_path)
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = snapshot(out)
    monkeypatch.setattr(gate, "convert_to_onnx", _converting_to(perturbed))
    name = TINY_EXPORT["registered_model_name"]
    versions_before = len(client.search_model_versions(f"name = '{name}'"))
    with tiny_trained.store(), pytest.raises(CommandError, match="parity gate failed") as caught:
        export.main(export_args(tiny_trained, out, run_file=run_file))
    message = str(caught.value)
    assert "\n" not in message
    assert "max abs difference" in message
    assert snapshot(out) == before  # the previous hand-off survives, nothing new beside it
    assert len(client.search_model_versions(f"name = '{name}'")) == versions_before
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["parity"].startswith("failed: max abs difference")
    assert run.data.metrics["test_onnx/max_abs_diff"] > 1e-3


def test_main_missing_run_file(tiny_trained: Workspace, tmp_path: Path) -> None:
    with tiny_trained.store(), pytest.raises(CommandError, match="run file not found"):
        export.main(export_args(tiny_trained, tmp_path / "out", run_file=tmp_path / "run.json"))
    assert not (tmp_path / "out").exists()


# --- the hand-off happens whole or not at all ----------------------------------------------------


@pytest.mark.parametrize("step", list(FAILING_STEPS))
def test_a_hand_off_failing_at_any_step_leaves_the_previous_one(
    step: str,
    tiny_trained: Workspace,
    exported: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    name, alias = TINY_EXPORT["registered_model_name"], TINY_EXPORT["alias"]
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = snapshot(out)
    aliased_before = client.get_model_version_by_alias(name, alias).version
    versions_before = {v.version for v in client.search_model_versions(f"name = '{name}'")}
    _, run_file = run_of_its_own(tiny_trained, tmp_path)

    make_it_fail, error = FAILING_STEPS[step]
    make_it_fail(monkeypatch)
    with tiny_trained.store(), pytest.raises(error):
        export.main(export_args(tiny_trained, out, run_file=run_file))

    assert snapshot(out) == before, "model, parity report and card are the previous ones"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staged or backup file"
    assert client.get_model_version_by_alias(name, alias).version == aliased_before
    after = {v.version for v in client.search_model_versions(f"name = '{name}'")}
    assert after == versions_before, "a version registered on the way was withdrawn"


def test_a_second_hand_off_replaces_the_whole_first(
    tiny_trained: Workspace, exported: Path, tmp_path: Path
) -> None:
    import shutil

    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    name, alias = TINY_EXPORT["registered_model_name"], TINY_EXPORT["alias"]
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    run_id, run_file = run_of_its_own(tiny_trained, tmp_path)
    with tiny_trained.store():
        export.main(export_args(tiny_trained, out, run_file=run_file))
    version = client.get_model_version_by_alias(name, alias)
    assert version.run_id == run_id
    card = (out / "MODEL_CARD.md").read_text()
    digest = file_sha256(tiny_trained.model)
    # the card leads to the run by the model's digest, and names no run id or version number
    assert f"tags.model_sha256 = '{digest}'" in card
    assert run_id not in card and f"version {version.version}" not in card
    import onnx

    metadata = {p.key: p.value for p in onnx.load(out / "model.onnx").metadata_props}
    assert metadata["model_digest"] == digest
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "model.onnx", "parity.json"]


# --- @champion: what deployment uses moves only to a better model ------------------------------


def test_a_second_export_of_the_same_model_ties_and_keeps_the_champion(
    tiny_trained: Workspace,
    exported: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The rule's cases are tested on a registry in memory (tests/unit/tracking); here, that
    export applies it to the store, records it and says it in one line."""
    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    name = TINY_EXPORT["registered_model_name"]
    champion_before = client.get_model_version_by_alias(name, "champion")
    champion_accuracy = float(champion_before.tags["test_accuracy"])
    run_id, run_file = run_of_its_own(tiny_trained, tmp_path)
    with tiny_trained.store():
        export.main(export_args(tiny_trained, tmp_path / "out", run_file=run_file))

    candidate = client.get_model_version_by_alias(name, "candidate")
    assert candidate.run_id == run_id, "@candidate is always the newest passing export"
    assert client.get_model_version_by_alias(name, "champion").version == champion_before.version
    tags = client.get_model_version(name, candidate.version).tags
    assert tags["promotion.decision"] == "not promoted"
    assert tags["promotion.champion_version"] == str(champion_before.version)
    assert float(tags["promotion.champion_accuracy"]) == champion_accuracy
    assert float(tags["promotion.candidate_accuracy"]) == champion_accuracy
    assert "higher than the champion's" in tags["promotion.rule"]
    # the one line export says (docs/handoff.md quotes one)
    (line,) = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("export: @champ")
    ]
    assert line == (
        f"export: @champion stays, v{candidate.version} is not promoted: test accuracy "
        f"{champion_accuracy:.4%} ties champion v{champion_before.version}'s "
        f"{champion_accuracy:.4%}"
    )


def test_the_line_of_a_promotion() -> None:
    decision = decide(Standing("4", 0.99, "d" * 64), Standing("3", 0.98, "d" * 64))
    assert export.decision_line("champion", "4", decision) == (
        "export: @champion moves to v4: test accuracy 99.0000% beats champion v3's 98.0000%"
    )


def test_the_first_export_becomes_champion(exported: Path, tiny_trained: Workspace) -> None:
    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    name = TINY_EXPORT["registered_model_name"]
    versions = client.search_model_versions(f"name = '{name}'")
    first = min(versions, key=lambda v: int(v.version))
    assert first.tags["promotion.reason"] == "there is no champion yet"
    assert first.tags["promotion.decision"] == "promoted"


def test_the_champion_downloads_with_one_command(
    exported: Path, tiny_trained: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    import onnx

    from tracking.__main__ import main as tracking_main

    with tiny_trained.store():
        tracking_main(["download", "champion", str(tmp_path / "deploy")])
        registered = mlflow.onnx.load_model(
            f"models:/{TINY_EXPORT['registered_model_name']}@champion"
        )
        version = (
            mlflow.MlflowClient()
            .get_model_version_by_alias(TINY_EXPORT["registered_model_name"], "champion")
            .version
        )
    # the line says which version deployment now holds
    assert capsys.readouterr().err.splitlines()[-1:] == [
        f"tracking: wrote {tmp_path / 'deploy' / 'model.onnx'}: "
        f"{TINY_EXPORT['registered_model_name']} v{version} (@champion)"
    ]
    downloaded = onnx.load(tmp_path / "deploy" / "model.onnx")
    assert downloaded.graph == registered.graph
    assert list(downloaded.metadata_props) == list(registered.metadata_props)


def test_an_unknown_alias_is_one_clear_error(tiny_trained: Workspace, tmp_path: Path) -> None:
    from tracking.__main__ import main as tracking_main

    with (
        tiny_trained.store(),
        pytest.raises(CommandError, match="models:/tiny-digits@nobody") as err,
    ):
        tracking_main(["download", "nobody", str(tmp_path / "deploy")])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "deploy").exists()


def test_a_failing_champion_decision_warns_and_keeps_the_hand_off(
    params: ExportParams, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = FakeRegistry(aliases={"champion": "1"})
    registry.register("1", {"test_accuracy": "0.98", "test_data_digest": "d" * 64})
    registry.failures["version_tags"] = lambda version: CommandError(
        "MLflow store: database is locked"
    )
    assert export.choose_champion(registry, Standing("2", 0.99, "d" * 64), params) is None
    assert capsys.readouterr().err.splitlines() == [
        "export: warning: @champion was not reconsidered and stays where it was: "
        "MLflow store: database is locked"
    ]
    assert registry.aliases["champion"] == "1"
    assert not [call for call in registry.calls if call[0] == "tag_version"], "no record"


def test_the_champion_is_decided_under_the_registry_lock(
    tiny_trained: Workspace, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    real_choose, held = export.choose_champion, []

    def choose_checking_the_lock(*args: object, **kwargs: object):
        lock_file = Path(tiny_trained.uri.removeprefix("sqlite:///") + ".registry-lock")
        with open(lock_file, "a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                fcntl.flock(other, fcntl.LOCK_UN)
                held.append(False)
        return real_choose(*args, **kwargs)

    monkeypatch.setattr(export, "choose_champion", choose_checking_the_lock)
    _, run_file = run_of_its_own(tiny_trained, tmp_path)
    with tiny_trained.store():
        export.main(export_args(tiny_trained, tmp_path / "out", run_file=run_file))
    assert held == [True], "another export could have moved @champion meanwhile"


def test_a_champion_moved_but_unrecorded_says_so(
    params: ExportParams, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = FakeRegistry(aliases={"champion": "1"})
    for version, accuracy in (("1", "0.98"), ("2", "0.99")):
        registry.register(version, {"test_accuracy": accuracy, "test_data_digest": "d" * 64})

    def fails_for_the_record(version: str, key: str) -> CommandError | None:
        return CommandError("MLflow store: database is locked") if key == "promotion.rule" else None

    registry.failures["tag_version"] = fails_for_the_record
    decision = export.choose_champion(registry, Standing("2", 0.99, "d" * 64), params)
    assert decision.promote and registry.aliases["champion"] == "2"
    assert "promotion.decision" not in registry.versions["2"]
    assert capsys.readouterr().err.splitlines() == [
        "export: warning: v2's promotion record is not on it: MLflow store: database is locked"
    ]


# --- @champion with a drawn test set: both sets weighed, the champion measured on it -----------


def _feedback_with_drawn(ws: Workspace, path: Path, count: int, labels_shift: int = 0) -> Path:
    """A feedback file whose drawn part is ``count`` tiny test digits (labels moved by
    ``labels_shift`` on every other one, so that another shift is another drawn set)."""
    from kernel.atomic import write_npz

    x, y = ws.splits["test"]
    drawn_y = y[:count].astype(np.uint8).copy()
    drawn_y[::2] = (drawn_y[::2] + labels_shift) % 10
    empty = {"x": np.zeros((0, 28, 28), np.uint8), "y": np.zeros(0, np.uint8)}
    write_npz(
        path,
        {
            "train_x": empty["x"],
            "train_y": empty["y"],
            "drawn_x": x[:count].astype(np.uint8),
            "drawn_y": drawn_y,
        },
    )
    return path


def _with_feedback(args: list[str], feedback: Path) -> list[str]:
    """export_args with ``--feedback`` naming ``feedback`` (stage_args gives an empty one)."""
    at = args.index("--feedback")
    return [*args[: at + 1], str(feedback), *args[at + 2 :]]


def _drawn_accuracy(model_bytes: bytes, feedback: Path) -> tuple[float, str]:
    from stages.dataset.canonical import dataset_digest
    from stages.dataset.feedback import load_feedback
    from stages.handoff.onnx_runtime import onnx_session, run_onnx

    x, y = load_feedback(feedback)["drawn"]
    predicted = run_onnx(onnx_session(model_bytes), x).argmax(axis=1)
    return float((predicted == y).mean()), dataset_digest({"drawn_x": x, "drawn_y": y})


def test_a_drawn_set_is_measured_on_the_candidate_and_the_champion(
    tiny_trained: Workspace,
    exported: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    name = TINY_EXPORT["registered_model_name"]
    champion = client.get_model_version_by_alias(name, "champion")
    assert not any(key.startswith("drawn_") for key in champion.tags), "registered before it"
    with tiny_trained.store():
        champion_bytes = mlflow.onnx.load_model(f"models:/{name}/{champion.version}")
    feedback = _feedback_with_drawn(tiny_trained, tmp_path / "feedback.npz", 40, labels_shift=1)
    out = tmp_path / "out"
    _, run_file = run_of_its_own(tiny_trained, tmp_path)
    with tiny_trained.store():
        export.main(_with_feedback(export_args(tiny_trained, out, run_file=run_file), feedback))

    candidate = client.get_model_version_by_alias(name, "candidate")
    tags = client.get_model_version(name, candidate.version).tags
    accuracy, digest = _drawn_accuracy((out / "model.onnx").read_bytes(), feedback)
    assert 0 < accuracy < 1
    assert float(tags["drawn_accuracy"]) == accuracy
    assert tags["drawn_digest"] == digest and tags["drawn_images"] == "40"
    assert tags["test_accuracy"] and tags["test_data_digest"], "beside the MNIST figures"
    # the champion, registered before the drawn set, measured on it from its registered model
    measured, _ = _drawn_accuracy(champion_bytes.SerializeToString(), feedback)
    champion_tags = client.get_model_version(name, champion.version).tags
    assert float(champion_tags[f"drawn_accuracy.{digest}"]) == measured
    # the decision weighed both sets, and its record says so
    assert tags["promotion.sets"] == "MNIST test and drawn"
    assert tags["promotion.drawn_digest"] == digest
    assert float(tags["promotion.candidate_drawn_accuracy"]) == accuracy
    assert float(tags["promotion.champion_drawn_accuracy"]) == measured
    assert (
        float(tags["promotion.tolerance"])
        == load_params(tiny_trained.params).export.promotion_tolerance
    )
    reason = tags["promotion.reason"]
    assert "MNIST test accuracy" in reason and "drawn accuracy" in reason, reason
    assert f"champion v{champion.version}" in reason
    card = (out / "MODEL_CARD.md").read_text()
    assert f"| Drawn test accuracy | {accuracy:.4%} on 40 digits" in card
    assert "export.promotion_tolerance" in card and "add up over many promotions" in card
    err = capsys.readouterr().err
    assert f"drawn test accuracy {accuracy:.4f} on 40 images" in err
    (line,) = [line for line in err.splitlines() if "@champion" in line]
    assert reason in line


# --- one version per model; a person's moves on the real store ------------------------------


def test_a_model_registered_before_keeps_its_version(
    tiny_trained: Workspace, exported: Path, tmp_path: Path
) -> None:
    import mlflow

    from stages.handoff.registration import register_and_write
    from stages.run_record.runs import RunRef, reopen_run
    from tracking.version_tags import VersionTags

    client = mlflow.MlflowClient(tiny_trained.uri)
    name = TINY_EXPORT["registered_model_name"]
    model_bytes = (exported / "model.onnx").read_bytes()
    versions_before = {v.version for v in client.search_model_versions(f"name = '{name}'")}
    holder = [
        str(v.version)
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get("onnx_sha256") == hashlib.sha256(model_bytes).hexdigest()
    ]
    assert holder, "the export of the module registered its bytes' digest"
    run_id, _ = run_of_its_own(tiny_trained, tmp_path)
    written = tmp_path / "written.onnx"
    x_test, _ = load_split(split_file(tiny_trained.data_dir, "test"))
    with (
        tiny_trained.store(),
        reopen_run(RunRef(run_id, tiny_trained.ref.experiment_id, tiny_trained.uri)),
    ):
        registered = register_and_write(
            model_bytes, x_test[:5], name, TINY_EXPORT["alias"], VersionTags(),
            lambda version, staged: staged.write_bytes(written, model_bytes), stage="export",
        )  # fmt: skip
    assert registered.reused and registered.version == min(holder, key=int)
    assert written.read_bytes() == model_bytes, "the hand-off's files are written all the same"
    assert {v.version for v in client.search_model_versions(f"name = '{name}'")} == versions_before
    assert (
        str(client.get_model_version_by_alias(name, TINY_EXPORT["alias"]).version)
        == registered.version
    )
    assert registered.said(name, "candidate", "ab" * 32) == (
        f"{name} v{registered.version} already holds this model (onnx sha256 abababababab…): "
        "reused it as @candidate, no new version"
    )


def _tracking(ws: Workspace, *args: str) -> tuple[int, list[str], str]:
    import contextlib
    import io

    from kernel.cli import run_command
    from tracking.__main__ import main

    err, out = io.StringIO(), io.StringIO()
    with ws.store(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = run_command("tracking", main, list(args))
    return status, err.getvalue().splitlines(), out.getvalue()


def test_promote_rollback_unpin_and_history_on_the_store(
    tiny_trained: Workspace, exported: Path, tmp_path: Path
) -> None:
    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    name = TINY_EXPORT["registered_model_name"]
    start = str(client.get_model_version_by_alias(name, "champion").version)
    _, run_file = run_of_its_own(tiny_trained, tmp_path)
    with tiny_trained.store():
        export.main(export_args(tiny_trained, tmp_path / "out", run_file=run_file))
    other = str(client.get_model_version_by_alias(name, "candidate").version)
    assert other != start

    status, err, _ = _tracking(tiny_trained, "promote", f"v{other}", "--reason", "try it")
    assert status == 0, err
    assert err[0].startswith(f"tracking: @champion v{start} -> v{other} (promote by ")
    # the pinned champion holds through an export the rule would promote over it
    _, run_file = run_of_its_own(tiny_trained, tmp_path / "again")
    with tiny_trained.store():
        export.main(export_args(tiny_trained, tmp_path / "again", run_file=run_file))
    assert str(client.get_model_version_by_alias(name, "champion").version) == other

    for bad, message in [
        (("promote", "999", "--reason", "x"), f"tracking: error: {name} has no version '999'"),
        (("promote", other, "--reason", "x"), f"tracking: error: v{other} is @champion already"),
        (("promote", start, "--reason", ""), "tracking: error: a reason is required"),
    ]:
        status, err, _ = _tracking(tiny_trained, *bad)
        assert status == 1 and len(err) == 1 and err[0].startswith(message), err
    status, err, _ = _tracking(tiny_trained, "rollback", "--reason", "it was better")
    assert status == 0, err
    assert str(client.get_model_version_by_alias(name, "champion").version) == start
    status, err, _ = _tracking(tiny_trained, "unpin", "--reason", "the rule decides")
    assert status == 0 and "unpinned" in err[0], err
    status, _, shown = _tracking(tiny_trained, "history", "--last", "3")
    lines = shown.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["promote", "rollback", "unpin"]
    assert lines[-1] == f"@champion is v{start}, moved by the champion rule"
    status, err, _ = _tracking(tiny_trained, "unpin", "--reason", "again")
    assert (status, err) == (
        1,
        ["tracking: error: @champion is not pinned: the rule moves it already"],
    )
