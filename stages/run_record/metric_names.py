"""The names of the metrics a run carries in MLflow.

MLflow's charts group metrics into sections by the prefix before the first ``/``
and list the sections alphabetically, so the prefixes are chosen for the order
a person reads a run in:

    test/           accuracy, loss, macro precision / recall / F1 on the test split
    test_by_digit/  precision, recall and F1 of each digit, e.g. ``test_by_digit/f1_3``
    test_int8/      the int8 gate on the test split: the int8 model against the fp32 one
    test_onnx/      the parity gate on the test split: ONNX against Keras
    timing/         seconds per phase of the train stage
    train/          per epoch (step = epoch from 1) and the run's training summary
    val/            per epoch, on the validation split

DVC's files (``reports/metrics.json``, ``reports/parity.json``, ``reports/int8.json``)
keep their own plain keys; only the MLflow run uses these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEST_ACCURACY = "test/accuracy"
VAL_LOSS = "val/loss"
PARITY_MAX_ABS_DIFF = "test_onnx/max_abs_diff"


def epoch_metric(keras_key: str) -> str:
    """A key of Keras' epoch logs (``loss``, ``val_accuracy``, …) as a run metric."""
    if keras_key.startswith("val_"):
        return "val/" + keras_key.removeprefix("val_")
    return "train/" + keras_key


def training_summary(summary: Mapping[str, float]) -> dict[str, float]:
    """The training's final figures (epochs run, best epoch, …) under ``train/``."""
    return {f"train/{key}": value for key, value in summary.items()}


def phase_timings(seconds: Mapping[str, float]) -> dict[str, float]:
    return {f"timing/{name}_seconds": value for name, value in seconds.items()}


def evaluation_metrics(
    headline: Mapping[str, float], per_class: Mapping[str, Mapping[str, Any]]
) -> dict[str, float]:
    """The headline figures under ``test/``, the per-digit table under ``test_by_digit/``."""
    metrics = {f"test/{key}": float(value) for key, value in headline.items()}
    for digit, scores in per_class.items():
        for name in ("precision", "recall", "f1"):
            metrics[f"test_by_digit/{name}_{digit}"] = float(scores[name])
    return metrics


def parity_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The parity report's measured figures (its float values: not the sample count, the
    opset or the verdict), as export has them and as ``parity.json`` holds them."""
    return {f"test_onnx/{key}": value for key, value in report.items() if isinstance(value, float)}


def int8_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The int8 report's numbers (not its verdict, method or runtime), as ``int8.json``
    holds them."""
    return {
        f"test_int8/{key}": float(value)
        for key, value in report.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
