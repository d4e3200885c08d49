"""The training run: train starts it (``start_training_run``) and logs params, the data it
trains, validates and is tested on (MLflow datasets with the project's digests), each epoch,
the result, the Keras model and its phase timings.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kernel.params import Params
from stages.dataset.arrays import Split
from stages.dataset.canonical import dataset_digest
from stages.run_record import metric_names
from stages.run_record.keras_flavor import log_keras_model
from stages.run_record.records import log_texts, tag_output_md5s
from stages.run_record.runs import (
    MODEL_DIGEST_TAG,
    RunRef,
    ending,
    fail_abandoned_runs,
    flatten,
    git_commit,
)
from tracking.run_tags import DVC_EXP_NAME_TAG
from tracking.store import permission_error, retry_locked

if TYPE_CHECKING:
    import keras
    from mlflow import MlflowClient

    from stages.model.fit import TrainingResult

DATASET_NAME = "mnist-prepared"
FEEDBACK_DATASET_NAME = "feedback"
WORKSPACE = "workspace"
# MLflow keeps a dataset's digest in 36 characters: the first 36 of the project's sha256
DIGEST_CHARS = 36


@dataclass(frozen=True)
class DataInput:
    """A set of images the run trained, validated or was tested on, as MLflow shows it:
    its name, its digest (``canonical.dataset_digest`` of its arrays), the file DVC tracks
    it in, and the context (``training``, ``validation``, ``test``)."""

    name: str
    context: str
    split: Split
    digest: str
    source: str


def data_inputs(
    data_files: Mapping[str, str],
    splits: Mapping[str, Split],
    feedback_file: str,
    feedback: Mapping[str, Split],
    feedback_used: bool,
) -> list[DataInput]:
    """The prepared splits (``train``, ``val``, ``test``, from ``data_files``) and the parts
    of the feedback set the model met: its training part when it was trained on, its drawn
    test part when there is one. Each digest is the one the rest of the project gives that
    data: ``x_test``/``y_test`` is the registry version's ``test_data_digest``, ``drawn_x``/
    ``drawn_y`` its ``drawn_digest``."""
    contexts = {"train": "training", "val": "validation", "test": "test"}
    inputs = [
        DataInput(
            DATASET_NAME,
            contexts[name],
            splits[name],
            dataset_digest({f"x_{name}": splits[name][0], f"y_{name}": splits[name][1]}),
            data_files[name],
        )
        for name in ("train", "val", "test")
    ]
    for part, context, wanted in (("train", "training", feedback_used), ("drawn", "test", True)):
        x, y = feedback[part]
        if wanted and len(y):
            digest = dataset_digest({f"{part}_x": x, f"{part}_y": y})
            inputs.append(DataInput(FEEDBACK_DATASET_NAME, context, (x, y), digest, feedback_file))
    return inputs


def log_data_inputs(inputs: Sequence[DataInput]) -> None:
    """The data as the run's MLflow datasets (``log_inputs``), with digests and sources."""
    import mlflow
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    if not inputs:
        return
    datasets = [
        mlflow.data.from_numpy(
            given.split[0],
            # a local file, named as dvc.yaml names it
            source=get_dataset_source_from_json(json.dumps({"uri": given.source}), "local"),
            targets=given.split[1],
            name=given.name,
            digest=given.digest[:DIGEST_CHARS],
        )
        for given in inputs
    ]
    contexts = [given.context for given in inputs]
    retry_locked(
        lambda: mlflow.log_inputs(datasets, contexts, [None] * len(datasets)),
        "logging the data",
        upsert=True,  # members training on the same data at once insert its dataset together
    )


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

    def tag_lineage(self, md5s: Mapping[str, str]) -> None:
        """``dvc.md5.<path>`` of the files the model came from and train wrote."""
        tag_output_md5s(md5s)

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
    uri: str, experiment_id: str, params: Params, data_digest: str, inputs: Sequence[DataInput]
) -> Iterator[TrainingRun]:
    """Start the run with its params, tags and data; it ends FAILED if the body raises.

    RUNNING runs of this host whose process is gone (a killed stage) are closed as FAILED first.
    """
    import mlflow
    import tensorflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    host = socket.gethostname()
    fail_abandoned_runs(client, experiment_id, host)
    tags = {
        # the commit the experiment started from (DVC names it; a plain repro is at HEAD)
        "git_commit": os.environ.get("DVC_EXP_BASELINE_REV") or git_commit(),
        "data_digest": data_digest,
        "pipeline.host": host,
        "pipeline.pid": str(os.getpid()),
        "tensorflow_version": tensorflow.__version__,
    }
    digest = params_digest(params)
    # a DVC experiment's name, or "workspace" for a plain dvc repro, with the params' digest
    experiment = os.environ.get("DVC_EXP_NAME") or WORKSPACE
    tags.update({DVC_EXP_NAME_TAG: experiment, "params_digest": digest})
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
        log_data_inputs(inputs)
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
