"""Stage ``train``: fit the classifier on the prepared splits and start its MLflow run.

Writes the Keras model, the per-epoch history (a DVC plot) and the run file that
``evaluate`` and ``export`` reopen. The tracking store is checked before
TensorFlow is even imported, so a dead server costs seconds, not a training.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from stages.atomic import write_text
from stages.config import Params, TrainParams, load_params
from stages.datasets import load_split
from stages.errors import run_stage
from stages.history import HISTORY_KEYS, history_csv
from stages.mnist_data import dataset_digest
from stages.model_io import save_keras_model
from stages.tracking import (
    RunRef,
    connect,
    fail_abandoned_runs,
    flatten,
    get_or_create_experiment,
    git_commit,
    retry_locked,
)

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainingResult:
    model: object  # keras.Model; typed loosely so importing this module needs no TensorFlow
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    fit_seconds: float


def make_deterministic(seed: int) -> None:
    """Same params, data and machine → bit-identical weights."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_model(params: TrainParams, train: Split, val: Split, callbacks: Sequence = (),
                verbose: int | str = "auto") -> TrainingResult:
    """Build and fit the model; with early stopping the best weights are restored."""
    import keras

    from stages.model import build_model

    make_deterministic(params.seed)
    model = build_model(params)
    all_callbacks = list(callbacks)
    if params.early_stopping_patience > 0:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience,
            restore_best_weights=True))
    if params.reduce_lr_patience > 0:
        all_callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=params.reduce_lr_patience))
    x_train, y_train = train
    x_val, y_val = val
    started = time.perf_counter()
    fit = model.fit(x_train.astype(np.float32), y_train, batch_size=params.batch_size,
                    epochs=params.epochs, validation_data=(x_val.astype(np.float32), y_val),
                    shuffle=True, callbacks=all_callbacks, verbose=verbose)
    seconds = time.perf_counter() - started
    history = {key: [float(v) for v in fit.history.get(key, [])] for key in HISTORY_KEYS}
    epochs_run = len(history["loss"])
    # the epoch whose weights the model keeps: the best one only when early stopping restores it
    restores_best = params.early_stopping_patience > 0 and history["val_loss"]
    best_epoch = int(np.argmin(history["val_loss"])) if restores_best else epochs_run - 1
    return TrainingResult(model, history, epochs_run, best_epoch, seconds)


def _epoch_logger(client, run_id: str):  # noqa: ANN001, ANN202
    """A Keras callback logging each epoch's metrics to the run, at step = epoch."""
    import keras
    from mlflow.entities import Metric

    class EpochMetricsToMlflow(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # noqa: ANN001, ANN202
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001, ANN202
            now = int(time.time() * 1000)
            values = {key: float(value) for key, value in (logs or {}).items()}
            values["epoch_seconds"] = time.perf_counter() - self._started
            metrics = [Metric(key, value, now, epoch) for key, value in values.items()]
            retry_locked(lambda: client.log_batch(run_id, metrics=metrics),
                         f"logging epoch {epoch} metrics")

    return EpochMetricsToMlflow()


class PhaseClock:
    """Wall seconds per phase of the stage, so its cost beyond ``model.fit`` has names."""

    def __init__(self) -> None:
        self.seconds = {"startup": _seconds_since_process_start()}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def _seconds_since_process_start() -> float:
    """Interpreter start and module imports before ``main``: from /proc, 0 where absent."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def run_training(params: Params, data_dir: Path, model_out: Path, history_out: Path,
                 run_file: Path) -> RunRef:
    """Everything ``main`` does after parsing arguments; returns the run it logged."""
    clock = PhaseClock()
    uri = connect()
    experiment_id = get_or_create_experiment(params.train.experiment_name, uri)
    clock.lap("tracking_connect")
    splits = {name: load_split(data_dir / f"{name}.npz") for name in ("train", "val", "test")}
    digest = dataset_digest({f"{k}_{name}": a for name, (x, y) in splits.items()
                             for k, a in (("x", x), ("y", y))})
    clock.lap("data_load_and_digest")

    import mlflow
    import tensorflow as tf

    clock.lap("import_tensorflow_mlflow")

    client = mlflow.MlflowClient(uri)
    host = socket.gethostname()
    fail_abandoned_runs(client, experiment_id, host)
    tags = {
        "git_commit": git_commit(),
        "data_digest": digest,
        "pipeline.host": host,
        "pipeline.pid": str(os.getpid()),
        "tensorflow_version": tf.__version__,
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        run_id = run.info.run_id
        retry_locked(lambda: mlflow.log_params(flatten(params.model_dump(mode="json"))),
                     "logging params")
        x_train, y_train = splits["train"]
        dataset = mlflow.data.from_numpy(x_train, targets=y_train, name="mnist-prepared",
                                         digest=digest[:36])
        retry_locked(lambda: mlflow.log_input(dataset, context="training"), "logging dataset")
        clock.lap("run_start_params_dataset")

        verbose = 1 if sys.stdout.isatty() else 2
        result = train_model(params.train, splits["train"], splits["val"],
                             callbacks=[_epoch_logger(client, run_id)], verbose=verbose)
        clock.lap("build_and_fit")
        final = {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "fit_seconds": result.fit_seconds,
            "best_val_loss": result.history["val_loss"][result.best_epoch],
            "best_val_accuracy": result.history["val_accuracy"][result.best_epoch],
        }
        retry_locked(lambda: mlflow.log_metrics(final), "logging final metrics")

        save_keras_model(result.model, model_out)
        write_text(history_out, history_csv(result.history))
        clock.lap("save_outputs")
        log_keras_model(result.model, splits["test"][0][:5])
        mlflow.log_artifact(str(history_out))
        clock.lap("mlflow_log_model")
        phases = {f"phase_seconds.{name}": value for name, value in clock.seconds.items()}
        phases["phase_seconds.fit"] = result.fit_seconds
        retry_locked(lambda: mlflow.log_metrics(phases), "logging phase timings")
        ref = RunRef(run_id=run_id, experiment_id=experiment_id, tracking_uri=uri)
        ref.write(run_file)
    print("train: seconds by phase: " + ", ".join(
        f"{name} {value:.1f}" for name, value in clock.seconds.items()), file=sys.stderr)
    return ref


def _save_keras_flavor(path: str, **kwargs) -> None:  # noqa: ANN003
    import mlflow.keras

    # mlflow.keras.save_model writes the input example before it creates its folder
    # (FileNotFoundError on input_example.json), so the folder is made first.
    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(path=path, **kwargs)


def log_keras_model(model, example: np.ndarray) -> None:  # noqa: ANN001
    """Log the model with signature and input example; requirements given, not inferred."""
    import keras
    import tensorflow as tf
    from mlflow.models import Model, infer_signature

    example = example.astype(np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    Model.log(
        artifact_path=None, name="keras_model", flavor=SimpleNamespace(__name__="mlflow.keras",
                                                   save_model=_save_keras_flavor),
        model=model, signature=signature, input_example=example,
        # inferring requirements reloads the model in a subprocess: seconds for nothing
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--model-out", required=True, type=Path)
    parser.add_argument("--history-out", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ref = run_training(params, args.data_dir, args.model_out, args.history_out, args.run_file)
    print(f"train: MLflow run {ref.run_id} in {ref.tracking_uri}", file=sys.stderr)


if __name__ == "__main__":
    run_stage("train", main)
