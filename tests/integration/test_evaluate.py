"""Stage evaluate: metrics, the confusion plot and figures of the tiny model's ONNX hand-off,
logged to its run."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from factories.processes import stage_args
from factories.trained import Workspace, gated_onnx
from kernel.cli import CommandError
from stages import evaluate
from stages.model.history import HISTORY_KEYS, history_csv, read_history

FIGURES = ("training_curves.png", "confusion_matrix.png", "misclassified.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def onnx_model(tiny_trained: Workspace) -> Path:
    """The tiny model as export hands it off (no registry version: only the file)."""
    return gated_onnx(tiny_trained, tiny_trained.root / "evaluate-input" / "model.onnx")


def _args(ws: Workspace, out: Path, handed_off: Path, **override: Path) -> list[str]:
    """dvc.yaml's arguments of the stage, with this test's files (``override`` by var name)."""
    paths = {
        "onnx_model": handed_off,
        "prepared": ws.data_dir,
        "history": ws.history,
        "run_file": ws.run_file,
        "metrics": out / "metrics.json",
        "classes": out / "classes.json",
        "confusion": out / "confusion.csv",
        "figures": out / "figures",
        **override,
    }
    return ["--params", str(ws.params), *stage_args("evaluate", paths)]


@pytest.fixture(scope="module")
def evaluated(tiny_trained: Workspace, onnx_model: Path) -> Path:
    """``evaluate.main`` once on the session's tiny model; its outputs' folder."""
    out = tiny_trained.root / "reports"
    with tiny_trained.store():
        evaluate.main(_args(tiny_trained, out, onnx_model))
    return out


# --- main on the tiny model ----------------------------------------------------------------------


def test_metrics_and_class_table(evaluated: Path, tiny_trained: Workspace) -> None:
    headline = json.loads((evaluated / "metrics.json").read_text())
    assert sorted(headline) == ["accuracy", "loss", "macro_f1", "macro_precision", "macro_recall"]
    report = {**headline, **json.loads((evaluated / "classes.json").read_text())}
    n = len(tiny_trained.splits["test"][1])
    assert report["samples"] == n
    assert 0.5 < report["accuracy"] <= 1.0  # the tiny digits are learnable
    assert report["loss"] > 0
    assert set(report["per_class"]) == {str(digit) for digit in range(10)}
    supports = [report["per_class"][str(digit)]["support"] for digit in range(10)]
    assert supports == np.bincount(tiny_trained.splits["test"][1], minlength=10).tolist()
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10)
    assert matrix.sum() == n
    assert np.trace(matrix) / n == pytest.approx(report["accuracy"])


def test_confusion_csv_matches_the_keras_model(evaluated: Path, tiny_trained: Workspace) -> None:
    """Scored from ONNX, the predictions are the Keras model's, as the parity gate promised."""
    from stages.model.keras_io import load_keras_model, predict_probabilities

    x_test, y_test = tiny_trained.splits["test"]
    with open(evaluated / "confusion.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(y_test)
    assert [int(row["actual"]) for row in rows] == y_test.tolist()
    predicted = predict_probabilities(load_keras_model(tiny_trained.model), x_test).argmax(axis=1)
    assert [int(row["predicted"]) for row in rows] == predicted.tolist()


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_real_pngs(evaluated: Path, name: str) -> None:
    from PIL import Image

    path = evaluated / "figures" / name
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) > 100
        assert len(np.unique(np.asarray(image.convert("L")))) > 2  # not a blank canvas


def test_results_logged_to_the_training_run(evaluated: Path, tiny_trained: Workspace) -> None:
    import mlflow

    client = mlflow.MlflowClient(tiny_trained.uri)
    run = client.get_run(tiny_trained.ref.run_id)
    report = json.loads((evaluated / "metrics.json").read_text())
    report.update(json.loads((evaluated / "classes.json").read_text()))
    metrics = run.data.metrics
    assert metrics["test/accuracy"] == pytest.approx(report["accuracy"])
    assert metrics["test/loss"] == pytest.approx(report["loss"])
    assert metrics["test_by_digit/f1_3"] == pytest.approx(report["per_class"]["3"]["f1"])
    assert "train/epochs_run" in metrics  # the same run train started, not a new one
    assert run.info.status == "FINISHED"
    figures = {entry.path for entry in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {f"figures/{name}" for name in FIGURES}
    top = {entry.path for entry in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "per_class_metrics.json", "figures"} <= top
    evaluated_runs = client.search_runs(
        [tiny_trained.ref.experiment_id], filter_string="metrics.`test/accuracy` >= 0"
    )
    assert [r.info.run_id for r in evaluated_runs] == [tiny_trained.ref.run_id]  # no new run


# --- main's failures: one clear CommandError, nothing written ------------------------------------


def _fails(
    tiny_trained: Workspace, tmp_path: Path, handed_off: Path, match: str, **override: Path
) -> str:
    out = tmp_path / "out"
    with tiny_trained.store(), pytest.raises(CommandError, match=match) as caught:
        evaluate.main(_args(tiny_trained, out, handed_off, **override))
    message = str(caught.value)
    assert "\n" not in message
    assert not out.exists()
    return message


def test_missing_run_file(tiny_trained: Workspace, tmp_path: Path, onnx_model: Path) -> None:
    missing = tmp_path / "run.json"
    message = _fails(tiny_trained, tmp_path, onnx_model, "run file not found", run_file=missing)
    assert str(missing) in message


def test_missing_history(tiny_trained: Workspace, tmp_path: Path, onnx_model: Path) -> None:
    missing = tmp_path / "history.csv"
    _fails(tiny_trained, tmp_path, onnx_model, "history not found", history=missing)


def test_history_without_its_columns(
    tiny_trained: Workspace, tmp_path: Path, onnx_model: Path
) -> None:
    bad = tmp_path / "history.csv"
    bad.write_text("epoch,loss\n0,0.5\n")
    _fails(tiny_trained, tmp_path, onnx_model, "not a training history CSV", history=bad)


def test_missing_model(tiny_trained: Workspace, tmp_path: Path, onnx_model: Path) -> None:
    missing = tmp_path / "model.onnx"
    message = _fails(tiny_trained, tmp_path, onnx_model, "no ONNX model", onnx_model=missing)
    assert "run the export stage first" in message


def _truncated(onnx_model: Path) -> bytes:
    data = onnx_model.read_bytes()
    return data[: len(data) // 2]


def _keras_file(_: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage",
    [lambda _: os.urandom(4096), _truncated, _keras_file, lambda _: b""],
    ids=["random-bytes", "truncated", "a-keras-zip", "empty"],
)
def test_corrupt_model(tiny_trained: Workspace, tmp_path: Path, onnx_model: Path, damage) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(damage(onnx_model))
    message = _fails(
        tiny_trained,
        tmp_path,
        onnx_model,
        "not an ONNX model onnxruntime can load",
        onnx_model=model,
    )
    assert str(model) in message


def test_a_model_without_the_contract(
    tiny_trained: Workspace, tmp_path: Path, onnx_model: Path
) -> None:
    import onnx

    proto = onnx.load_from_string(onnx_model.read_bytes())
    del proto.metadata_props[:]
    model = tmp_path / "model.onnx"
    model.write_bytes(proto.SerializeToString())
    message = _fails(
        tiny_trained, tmp_path, onnx_model, "expected the model the export stage", onnx_model=model
    )
    assert str(model) in message


def test_a_model_exported_from_another_training(
    tiny_trained: Workspace, tmp_path: Path, onnx_model: Path
) -> None:
    """An ONNX file left by an older export is not scored as this run's model."""
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"experiment_name": "mnist", "model_sha256": "ab" * 32}))
    message = _fails(
        tiny_trained,
        tmp_path,
        onnx_model,
        "was exported from the model with sha256",
        run_file=run_file,
    )
    assert "abababababab..." in message and "dvc repro export" in message


# --- pure helpers --------------------------------------------------------------------------------


def test_confusion_csv_rows() -> None:
    text = evaluate.confusion_csv(np.array([3, 1, 0]), np.array([3, 7, 0]))
    assert text == "actual,predicted\n3,3\n1,7\n0,0\n"


def test_history_round_trip(tmp_path: Path) -> None:
    history = {
        key: [0.5 + i / 10 + k / 100 for i in range(3)] for k, key in enumerate(HISTORY_KEYS)
    }
    path = tmp_path / "history.csv"
    path.write_text(history_csv(history))
    assert path.read_text().splitlines()[0] == "epoch," + ",".join(HISTORY_KEYS)
    back = read_history(path)
    assert set(back) == set(HISTORY_KEYS)
    for key in HISTORY_KEYS:
        assert back[key] == pytest.approx(history[key], abs=1e-6)


@pytest.mark.parametrize(
    "text",
    ["epoch,loss,accuracy,val_loss,val_accuracy\n0,x,1,1,1\n", "epoch,loss\n0,1\n"],
    ids=["not-a-number", "missing-columns"],
)
def test_read_history_rejects_a_bad_csv(tmp_path: Path, text: str) -> None:
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(CommandError, match="not a training history CSV"):
        read_history(path)
