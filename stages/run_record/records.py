"""What the stages after train record in its run: test metrics and figures, the gates'
figures and verdicts, small texts. Keras-free, so they never reach TensorFlow.

train starts the run (``training_run``); evaluate, export and quantize reopen it
(``runs.reopen_run``) and log through the functions below; the registry steps of the
hand-off are in ``tracking.registry``. Metric and tag writes go through ``retry_locked``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stages.run_record import metric_names
from stages.run_record.runs import flatten
from tracking.store import retry_locked

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def log_evaluation(
    headline: Mapping[str, float], table: Mapping[str, Any], figures: Mapping[str, Figure]
) -> None:
    """Test metrics, the whole report, the per-class table and the figures, into the open run.

    ``headline`` is what DVC compares (accuracy, loss, macro averages); ``table`` the rest
    of the report (per class, confusion matrix).
    """
    import mlflow

    report = {**headline, **table}
    metrics = metric_names.evaluation_metrics(headline, table["per_class"])
    retry_locked(lambda: mlflow.log_metrics(metrics), "logging test metrics")
    for name, figure in figures.items():
        retry_locked(
            lambda figure=figure, name=name: mlflow.log_figure(figure, f"figures/{name}"),
            f"logging {name}",
        )
    retry_locked(lambda: mlflow.log_dict(report, "metrics.json"), "logging metrics.json")
    per_class = flatten({"per_class": dict(table["per_class"])})
    retry_locked(lambda: mlflow.log_dict(per_class, "per_class_metrics.json"), "logging per class")


def log_drawn(figures: Mapping[str, float]) -> None:
    """The drawn test set's figures as ``test_drawn/*`` metrics of the open run."""
    import mlflow

    metrics = {f"test_drawn/{name}": float(value) for name, value in figures.items()}
    retry_locked(lambda: mlflow.log_metrics(metrics), "logging the drawn test metrics")


def log_parity(figures: Mapping[str, float], failures: tuple[str, ...]) -> None:
    """The gate's figures as ``test_onnx/*`` metrics, and its verdict as the ``parity`` tag."""
    import mlflow

    metrics = metric_names.parity_metrics(figures)
    retry_locked(lambda: mlflow.log_metrics(metrics), "logging parity metrics")
    verdict = "failed: " + "; ".join(failures) if failures else "passed"
    retry_locked(lambda: mlflow.set_tag("parity", verdict), "tagging the parity verdict")


def log_int8(figures: Mapping[str, float], failures: tuple[str, ...]) -> None:
    """The int8 gate's figures as ``test_int8/*`` metrics, its verdict as the ``int8`` tag."""
    import mlflow

    metrics = metric_names.int8_metrics(figures)
    retry_locked(lambda: mlflow.log_metrics(metrics), "logging int8 metrics")
    verdict = "failed: " + "; ".join(failures) if failures else "passed"
    retry_locked(lambda: mlflow.set_tag("int8", verdict), "tagging the int8 verdict")


def log_texts(texts: Mapping[str, str]) -> None:
    """Small text artifacts (the parity report, the model card) under the given names."""
    import mlflow

    for name, text in texts.items():
        mlflow.log_text(text, name)
