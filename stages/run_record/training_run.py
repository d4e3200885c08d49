"""The training run: train starts it (``start_training_run``) and logs params, the dataset,
each epoch, the result, the Keras model and its phase timings.

The stages after train reopen it and log through ``records``. Metric, param and tag
writes go through ``retry_locked``, so a SQLite store busy with a parallel experiment
is waited for, a bounded time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from kernel.params import Params
from stages.dataset.arrays import Split
from stages.run_record import metric_names
from stages.run_record.keras_flavor import log_keras_model
from stages.run_record.records import log_texts
from stages.run_record.runs import (
    MODEL_DIGEST_TAG,
    RunRef,
    ending,
    fail_abandoned_runs,
    flatten,
    git_commit,
)
from tracking.store import permission_error, retry_locked

if TYPE_CHECKING:
    import keras
    from mlflow import MlflowClient

    from stages.model.fit import TrainingResult

DATASET_NAME = "mnist-prepared"
WORKSPACE = "workspace"


def params_digest(params: Params) -> str:
    """8 hex digits naming the whole params set: equal digests, equal params."""
    canonical = json.dumps(params.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


class TrainingRun:
    """The open MLflow run of one training."""

    def __init__(self, client: MlflowClient, ref: RunRef) -> None:
        self.client = client
        self.ref = ref

    def epoch_logger(self) -> keras.callbacks.Callback:
        """A Keras callback logging each epoch's metrics to the run, at step = epoch (from 1)."""
        return _epoch_logger(self.client, self.ref.run_id)

    def log_result(self, result: TrainingResult) -> None:
        import mlflow

        summary = metric_names.training_summary(result.summary())
        retry_locked(lambda: mlflow.log_metrics(summary), "logging final metrics")

    def log_model(self, model: keras.Model, example: np.ndarray, texts: Mapping[str, str]) -> None:
        """The Keras model with its signature, and small text artifacts (the history CSV)."""
        retry_locked(lambda: log_keras_model(model, example), "logging the model")
        retry_locked(lambda: log_texts(texts), "logging the history")

    def tag_model_digest(self, digest: str) -> None:
        """The digest of the model file's bytes: how the later stages find this run."""
        client, run_id = self.client, self.ref.run_id
        retry_locked(
            lambda: client.set_tag(run_id, MODEL_DIGEST_TAG, digest), "tagging the model digest"
        )

    def tag_feedback(self, feedback: dict[str, tuple[np.ndarray, np.ndarray]], used: bool) -> None:
        """Which feedback set this training saw: its digest, and how many images of each
        digit it trained on (none when ``feedback.train_weight`` is 0) and held out."""
        import json

        from stages.dataset.feedback import feedback_digest, per_digit

        trained = feedback["train"][1] if used else feedback["train"][1][:0]
        tags = {
            "feedback.digest": feedback_digest(feedback),
            "feedback.train_images": str(len(trained)),
            "feedback.train_per_digit": json.dumps(per_digit(trained)),
            "feedback.drawn_images": str(len(feedback["drawn"][1])),
        }
        client, run_id = self.client, self.ref.run_id
        for key, value in tags.items():
            retry_locked(
                lambda key=key, value=value: client.set_tag(run_id, key, value),
                "tagging the feedback set",
            )

    def log_phases(self, seconds: Mapping[str, float]) -> None:
        import mlflow

        phases = metric_names.phase_timings(seconds)
        retry_locked(lambda: mlflow.log_metrics(phases), "logging phase timings")


def sweep_tags() -> dict[str, str]:
    """A sweep's trial is a child of the sweep's run (``python -m sweep`` sets these)."""
    sweep = os.environ.get("PIPELINE_SWEEP_NAME", "")
    parent = os.environ.get("PIPELINE_SWEEP_PARENT_RUN_ID", "")
    tags = {"sweep": sweep} if sweep else {}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


@contextlib.contextmanager
def start_training_run(
    uri: str, experiment_id: str, params: Params, data_digest: str, train: Split
) -> Iterator[TrainingRun]:
    """Start the run with its params, tags and dataset; it ends FAILED if the body raises.

    RUNNING runs of this host whose process is gone (a killed stage) are closed as FAILED first.
    """
    import mlflow
    import tensorflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    host = socket.gethostname()
    fail_abandoned_runs(client, experiment_id, host)
    tags = {
        "git_commit": git_commit(),
        "data_digest": data_digest,
        "pipeline.host": host,
        "pipeline.pid": str(os.getpid()),
        "tensorflow_version": tensorflow.__version__,
    }
    digest = params_digest(params)
    # a DVC experiment's name, or "workspace" for a plain dvc repro, with the params' digest
    experiment = os.environ.get("DVC_EXP_NAME") or WORKSPACE
    tags.update({"dvc_exp_name": experiment, "params_digest": digest})
    tags.update(sweep_tags())
    run_name = experiment if experiment != WORKSPACE else f"{WORKSPACE}-{digest}"
    try:
        started = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    except MlflowException as err:
        if err.error_code == "PERMISSION_DENIED":
            name = params.train.experiment_name
            raise permission_error(uri, f"log runs to experiment {name!r}") from None
        raise
    with ending(started, uri) as run:
        retry_locked(
            lambda: mlflow.log_params(flatten(params.model_dump(mode="json"))), "logging params"
        )
        x_train, y_train = train
        dataset = mlflow.data.from_numpy(
            x_train, targets=y_train, name=DATASET_NAME, digest=data_digest[:36]
        )
        retry_locked(lambda: mlflow.log_input(dataset, context="training"), "logging dataset")
        ref = RunRef(run_id=run.info.run_id, experiment_id=experiment_id, tracking_uri=uri)
        yield TrainingRun(client, ref)


def _epoch_logger(client: MlflowClient, run_id: str) -> keras.callbacks.Callback:
    import keras
    from mlflow.entities import Metric

    class EpochMetricsToMlflow(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = int(time.time() * 1000)
            values = {metric_names.epoch_metric(k): float(v) for k, v in (logs or {}).items()}
            values[metric_names.epoch_metric("epoch_seconds")] = time.perf_counter() - self._started
            # step = the epoch as Keras prints it, counted from 1
            metrics = [Metric(key, value, now, epoch + 1) for key, value in values.items()]
            retry_locked(
                lambda: client.log_batch(run_id, metrics=metrics), f"logging epoch {epoch} metrics"
            )

    return EpochMetricsToMlflow()
