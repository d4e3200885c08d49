"""Stage train: what main writes, what its MLflow run holds, and how it fails."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from factories.data import SPLIT_SIZES, digit_images, write_prepared
from factories.mlflow_store import sigterm_kept, using_store
from factories.params import TINY_TRAIN, params_dict, tiny_params_file
from factories.processes import stage_args
from factories.trained import DVC_EXP_NAME, Workspace
from harness.network import free_port
from kernel.cli import CommandError
from kernel.params import load_params
from kernel.paths import PROJECT_ROOT, pipeline_vars
from stages.dataset.canonical import dataset_digest
from stages.model.history import HISTORY_KEYS
from stages.run_record import metric_names
from stages.run_record.runs import locate_run
from stages.run_record.training_run import params_digest

# --- main, end to end on the session's tiny training ---------------------------------------------


def _client(tiny_trained: Workspace):
    import mlflow

    return mlflow.MlflowClient(tiny_trained.uri)


def _history_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_main_writes_model_history_and_run_file(tiny_trained: Workspace) -> None:
    assert tiny_trained.model.is_file() and tiny_trained.model.stat().st_size > 1000
    run = _client(tiny_trained).get_run(tiny_trained.ref.run_id)
    epochs_run = int(run.data.metrics["train/epochs_run"])
    assert 1 <= epochs_run <= TINY_TRAIN["epochs"]

    rows = _history_rows(tiny_trained.history)
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs_run + 1))
    assert list(rows[0]) == ["epoch", *HISTORY_KEYS]

    # the run file holds what the model decides; the run is found by the model's digest
    raw = json.loads(tiny_trained.run_file.read_text())
    digest = hashlib.sha256(tiny_trained.model.read_bytes()).hexdigest()
    assert raw == {"experiment_name": TINY_TRAIN["experiment_name"], "model_sha256": digest}
    assert run.data.tags["model_sha256"] == digest
    assert locate_run(tiny_trained.run_file, tiny_trained.uri).run_id == run.info.run_id
    leftovers = [path.name for path in tiny_trained.root.rglob(".*.tmp*")]
    assert leftovers == []


def test_run_params_tags_and_status(tiny_trained: Workspace) -> None:
    client = _client(tiny_trained)
    run = client.get_run(tiny_trained.ref.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tiny-tests"
    params = run.data.params
    assert params["train.epochs"] == str(TINY_TRAIN["epochs"])
    assert params["train.hidden_units"] == str(TINY_TRAIN["hidden_units"])
    assert params["train.learning_rate"] == "0.01"
    assert params["preprocess.val_size"] == str(SPLIT_SIZES["val"])
    assert params["export.alias"] == "candidate"
    assert params["fetch.sources"] == json.dumps(params_dict()["fetch"]["sources"])

    tags = run.data.tags
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=tiny_trained.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert tags["git_commit"] == head
    arrays = {
        f"{kind}_{name}": array
        for name, (x, y) in tiny_trained.splits.items()
        for kind, array in (("x", x), ("y", y))
    }
    assert tags["data_digest"] == dataset_digest(arrays)
    assert tags["dvc_exp_name"] == DVC_EXP_NAME
    assert run.info.run_name == DVC_EXP_NAME, "a run is named after its DVC experiment"
    assert tags["params_digest"] == params_digest(load_params(tiny_trained.params))
    assert tags["pipeline.pid"] == str(os.getpid())
    assert tags["tensorflow_version"]


def test_run_shows_the_data_it_trained_validated_and_was_tested_on(
    tiny_trained: Workspace,
) -> None:
    """MLflow datasets, one per split, with the project's digests (the test split's is the
    one a registered version's ``test_data_digest`` tag gives) and DVC's file as source."""
    run = _client(tiny_trained).get_run(tiny_trained.ref.run_id)
    shown = {
        {tag.key: tag.value for tag in given.tags}["mlflow.data.context"]: given.dataset
        for given in run.inputs.dataset_inputs
    }
    assert sorted(shown) == ["test", "training", "validation"]  # no feedback in the tiny run
    where = pipeline_vars()
    for context, split in (("training", "train"), ("validation", "val"), ("test", "test")):
        x, y = tiny_trained.splits[split]
        dataset = shown[context]
        assert dataset.name == "mnist-prepared"
        assert dataset.digest == dataset_digest({f"x_{split}": x, f"y_{split}": y})[:36]
        assert json.loads(dataset.source) == {"uri": f"{where['prepared']}/{split}.npz"}
        assert json.loads(dataset.profile)["features_shape"] == list(x.shape)


def test_run_tags_the_md5_dvc_gives_what_train_wrote(tiny_trained: Workspace) -> None:
    tags = _client(tiny_trained).get_run(tiny_trained.ref.run_id).data.tags
    where = pipeline_vars()
    for var, path in (
        ("model", tiny_trained.model),
        ("history", tiny_trained.history),
        ("run_file", tiny_trained.run_file),
    ):
        assert tags[f"dvc.md5.{where[var]}"] == hashlib.md5(path.read_bytes()).hexdigest(), var
    # no dvc.lock in the tiny workspace: no md5 of the data it came from, nothing carried
    assert not {f"dvc.md5.{where[var]}" for var in ("raw", "prepared", "feedback_data")} & set(tags)
    assert not [value for key, value in tags.items() if value.startswith("carried")]


def test_run_metric_history_is_per_epoch(tiny_trained: Workspace) -> None:
    client = _client(tiny_trained)
    run = client.get_run(tiny_trained.ref.run_id)
    epochs_run = int(run.data.metrics["train/epochs_run"])
    rows = _history_rows(tiny_trained.history)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "epoch_seconds"):
        name = metric_names.epoch_metric(key)
        history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
        assert [metric.step for metric in history] == list(range(1, epochs_run + 1)), key
        if key != "epoch_seconds":
            logged = [metric.value for metric in history]
            assert logged == pytest.approx([float(row[key]) for row in rows], abs=2e-6), key
    best = int(run.data.metrics["train/best_epoch"])
    assert 1 <= best <= epochs_run, "epochs count from 1, as Keras prints them"
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs_run + 1))
    assert run.data.metrics["train/best_val_loss"] == pytest.approx(
        float(rows[best - 1]["val_loss"]), abs=2e-6
    )
    val_losses = [float(row["val_loss"]) for row in rows]
    assert best == int(np.argmin(val_losses)) + 1
    artifacts = [entry.path for entry in client.list_artifacts(run.info.run_id)]
    assert "history.csv" in artifacts


def test_run_logged_the_keras_model(tiny_trained: Workspace) -> None:
    import mlflow

    from stages.model.keras_io import load_keras_model

    with tiny_trained.store():
        (model_info,) = [
            model
            for model in mlflow.search_logged_models(
                experiment_ids=[tiny_trained.ref.experiment_id],
                filter_string=f"source_run_id = '{tiny_trained.ref.run_id}'",
                output_format="list",
            )
            if model.name == "keras_model"
        ]
        logged = mlflow.keras.load_model(f"models:/{model_info.model_id}")
    x_test = tiny_trained.splits["test"][0][:20].astype(np.float32)
    saved = load_keras_model(tiny_trained.model)
    np.testing.assert_array_equal(
        logged.predict(x_test, verbose=0), saved.predict(x_test, verbose=0)
    )
    assert model_info.model_id in [
        output.model_id
        for output in _client(tiny_trained).get_run(tiny_trained.ref.run_id).outputs.model_outputs
    ]


# --- failures ------------------------------------------------------------------------------------


def _stage_args(folder: Path) -> list[str]:
    out = folder / "out"
    return [
        "--params",
        str(folder / "params.yaml"),
        *stage_args(
            "train",
            {
                "prepared": folder / "prepared",
                "model": out / "model.keras",
                "history": out / "history.csv",
                "run_file": out / "run.json",
            },
        ),
    ]


def test_unreachable_tracking_server_fails_fast_before_training(tmp_path: Path) -> None:
    from stages import train

    write_prepared(
        tmp_path / "prepared",
        {"train": digit_images(20, 1), "val": digit_images(10, 2), "test": digit_images(10, 3)},
    )
    tiny_params_file(tmp_path / "params.yaml")
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with using_store(tmp_path, uri), sigterm_kept(), pytest.raises(CommandError) as caught:
        train.main(_stage_args(tmp_path))
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert "unreachable" in message and uri in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()  # no model, history or run file


@pytest.mark.parametrize(
    ("key", "value"), [("epochs", 0), ("activation", "softmaxx"), ("learning_rate", -0.1)]
)
def test_invalid_train_param_exits_1_with_one_line(tmp_path: Path, key: str, value: object) -> None:
    folder = tmp_path / "project"
    write_prepared(
        folder / "prepared",
        {"train": digit_images(20, 1), "val": digit_images(10, 2), "test": digit_images(10, 3)},
    )
    raw = params_dict(train={key: value})
    (folder / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    result = subprocess.run(
        [sys.executable, "-m", "stages.train", *_stage_args(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train: error: ")
    assert f"train.{key}" in lines[0] and repr(value) in lines[0]
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before
