"""``quantize.main`` on a tiny exported model: the int8 hand-off, its gate, and its faults."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from digits_predict import Predictor
from factories.handoff_faults import FAILING_STEPS, run_of_its_own, snapshot
from factories.params import TINY_EXPORT, params_dict
from factories.trained import export_args, quantize_args, train_tiny
from kernel.cli import CommandError
from stages import export, quantize

NAME = TINY_EXPORT["registered_model_name"]


@pytest.fixture(scope="module")
def handed_off(tmp_path_factory, mlflow_template_db) -> SimpleNamespace:
    """A tiny model of its own store, exported (v1, @candidate, @champion) and quantized."""
    ws = train_tiny(tmp_path_factory.mktemp("quantize"), mlflow_template_db)
    exported, out = ws.root / "export", ws.root / "int8"
    with ws.store():
        export.main(export_args(ws, exported))
        quantize.main(quantize_args(ws, exported, out))
    return SimpleNamespace(ws=ws, exported=exported, out=out)


def _client(ws):
    import mlflow

    return mlflow.MlflowClient(ws.uri)


def test_the_int8_model_passes_its_gate_and_keeps_the_contract(handed_off) -> None:
    ws, out = handed_off.ws, handed_off.out
    report = json.loads((out / "int8.json").read_text())
    assert report["passed"] is True and report["failures"] == []
    assert report["method"] == "dynamic" and report["calibration_images"] == 0
    assert report["samples"] == len(ws.splits["test"][1])
    assert report["size_ratio"] > 3
    assert report["accuracy_drop"] <= 0.003 and report["argmax_agreement"] >= 0.995

    fp32 = Predictor(handed_off.exported / "model.onnx")
    int8 = Predictor(out / "model.int8.onnx")  # the contract is checked on load
    images, labels = ws.splits["test"]
    assert (int8.predict(images).digits == fp32.predict(images).digits).mean() >= 0.995
    assert float(int8.metadata["test_accuracy"]) == report["int8_accuracy"]
    assert (int8.predict(images).digits == labels).mean() == pytest.approx(report["int8_accuracy"])
    fp32_bytes = (handed_off.exported / "model.onnx").read_bytes()
    assert int8.metadata["fp32_model_sha256"] == hashlib.sha256(fp32_bytes).hexdigest()
    assert int8.metadata["precision"] == "int8"
    assert int8.metadata["quantization"].startswith("onnxruntime dynamic quantization")
    assert int8.provenance["model_digest"] == fp32.provenance["model_digest"]


def test_the_int8_model_is_its_own_version_beside_the_fp32_one(handed_off) -> None:
    client = _client(handed_off.ws)
    int8 = client.get_model_version_by_alias(NAME, "int8")
    candidate = client.get_model_version_by_alias(NAME, "candidate")
    assert client.get_model_version_by_alias(NAME, "champion").version == candidate.version
    assert int8.version != candidate.version and int8.run_id == candidate.run_id
    assert int8.tags["precision"] == "int8" and candidate.tags["precision"] == "fp32"
    assert int8.tags["fp32_version"] == str(candidate.version)
    assert int8.tags["test_data_digest"] == candidate.tags["test_data_digest"]
    report = json.loads((handed_off.out / "int8.json").read_text())
    assert float(int8.tags["test_accuracy"]) == report["int8_accuracy"]

    run = client.get_run(handed_off.ws.ref.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["int8"] == "passed"
    assert run.data.metrics["test_int8/argmax_agreement"] == report["argmax_agreement"]
    assert run.data.metrics["test_int8/size_ratio"] == pytest.approx(report["size_ratio"])
    assert "int8.json" in {entry.path for entry in client.list_artifacts(run.info.run_id)}
    logged = client.get_logged_model(int8.source.removeprefix("models:/"))
    assert logged.name == "onnx_int8_model" and logged.source_run_id == run.info.run_id


def test_the_registered_int8_model_is_served_as_the_fp32_one(handed_off, tmp_path) -> None:
    from serving.serve_folder import fetch

    with handed_off.ws.store():
        version, model_dir = fetch(NAME, "int8", tmp_path / "serve")
        import mlflow.pyfunc

        pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    images = handed_off.ws.splits["test"][0][:8].astype(np.float32)
    served = pyfunc.predict({"image": images})["probabilities"]
    expected = Predictor(handed_off.out / "model.int8.onnx").predict(images).probabilities
    np.testing.assert_allclose(served, expected, atol=1e-6)
    with pytest.raises(Exception, match="divided by 255"):
        pyfunc.predict({"image": images / 255.0})


def _strict_params(ws, tmp_path: Path) -> Path:
    import yaml

    raw = params_dict(**yaml.safe_load(ws.params.read_text()))
    raw["quantize"]["max_probability_diff"] = 0.0  # int8 never matches fp32 exactly
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _handed_off_state(handed_off, out: Path) -> tuple:
    """``out``'s files (a copy of the int8 hand-off the first time), the versions, @int8."""
    import shutil

    if not out.exists():
        shutil.copytree(handed_off.out, out)
    client = _client(handed_off.ws)
    versions = {v.version for v in client.search_model_versions(f"name = '{NAME}'")}
    return snapshot(out), versions, client.get_model_version_by_alias(NAME, "int8").version


def test_a_failing_gate_writes_nothing_and_keeps_the_previous_int8(handed_off, tmp_path) -> None:
    ws, out = handed_off.ws, tmp_path / "out"
    before = _handed_off_state(handed_off, out)

    run_id, run_file = run_of_its_own(ws, tmp_path)
    strict = _strict_params(ws, tmp_path)
    with ws.store(), pytest.raises(CommandError, match=r"^int8 gate failed, no int8 model written"):
        quantize.main(quantize_args(ws, handed_off.exported, out, strict, run_file))

    assert _handed_off_state(handed_off, out) == before, "files, versions and @int8 as they were"
    run = _client(ws).get_run(run_id)
    # auto tried each method for an MLP: the last one's figures, and what each before it failed on
    verdict = run.data.tags["int8"]
    assert verdict.startswith("failed: dynamic_per_channel_fp32_output: "), verdict
    assert "max abs difference of probabilities" in verdict
    assert "(tried before it: dynamic: " in verdict and "; dynamic_per_channel: " in verdict
    assert run.info.status == "FINISHED", "the run's fp32 model is good: the run stays so"
    assert run.data.metrics["test_int8/max_abs_diff"] > 0


def _forget_registered_digests(ws) -> None:
    import mlflow

    client = mlflow.MlflowClient(ws.uri)
    for version in client.search_model_versions(f"name = '{TINY_EXPORT['registered_model_name']}'"):
        if "onnx_sha256" in version.tags:
            client.delete_model_version_tag(version.name, version.version, "onnx_sha256")


# quantize's hand-off moves no alias: @int8 follows @champion after it (tracking.lifecycle)
@pytest.mark.parametrize("step", [step for step in FAILING_STEPS if "alias" not in step])
def test_a_hand_off_failing_at_any_step_leaves_the_previous_int8(
    step: str, handed_off, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, out = handed_off.ws, tmp_path / "out"
    before = _handed_off_state(handed_off, out)

    _, run_file = run_of_its_own(ws, tmp_path)
    # the same bytes handed off before would reuse their version: this hand-off must register
    _forget_registered_digests(ws)
    make_it_fail, error = FAILING_STEPS[step]
    make_it_fail(monkeypatch)
    with ws.store(), pytest.raises(error):
        quantize.main(quantize_args(ws, handed_off.exported, out, run_file=run_file))

    assert _handed_off_state(handed_off, out) == before, "files, versions and @int8 as they were"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staged or backup file"


def test_a_model_without_the_contract_is_refused_in_one_line(handed_off, tmp_path) -> None:
    from factories.onnx_models import random_weights, tiny_model, write_model

    bare = write_model(tmp_path / "model.onnx", tiny_model(*random_weights(), metadata={}))
    with handed_off.ws.store(), pytest.raises(CommandError) as caught:
        quantize.main(quantize_args(handed_off.ws, tmp_path, tmp_path / "out"))
    assert str(caught.value).startswith(f"{bare}: model carries no contract metadata")
    assert "expected the model the export stage wrote" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_no_onnx_model_is_refused_in_one_line(handed_off, tmp_path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with handed_off.ws.store(), pytest.raises(CommandError) as caught:
        quantize.main(quantize_args(handed_off.ws, tmp_path, tmp_path / "out"))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'model.onnx'}: not an ONNX model onnxruntime can load")
    assert "\n" not in message and not (tmp_path / "out").exists()
