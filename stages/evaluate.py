"""Stage ``evaluate``: test-set metrics, the confusion plot and figures, logged to the run.

Writes ``metrics.json`` (DVC metrics), ``confusion.csv`` (a DVC confusion plot)
and PNG figures, and logs all of them to the MLflow run that train started.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stages.atomic import write_json, write_text
from stages.config import load_params
from stages.datasets import load_split
from stages.errors import run_stage
from stages.figures import confusion_figure, misclassified_grid, save_figure, training_curves
from stages.history import read_history
from stages.metrics import classification_report
from stages.model_io import load_keras_model, predict_probabilities
from stages.tracking import RunRef, connect, flatten, reopen_run, retry_locked


def confusion_csv(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows(zip(y_true.tolist(), y_pred.tolist(), strict=True))
    return out.getvalue()


def summary_metrics(report: dict) -> dict[str, float]:
    """The flat numbers for DVC metrics and MLflow; the per-class table as test_<metric>_<digit>."""
    flat = {f"test_{key}": report[key] for key in
            ("accuracy", "loss", "macro_precision", "macro_recall", "macro_f1")}
    for digit, scores in report["per_class"].items():
        for metric in ("precision", "recall", "f1"):
            flat[f"test_{metric}_{digit}"] = scores[metric]
    return flat


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--history", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    parser.add_argument("--metrics-out", required=True, type=Path)
    parser.add_argument("--confusion-out", required=True, type=Path)
    parser.add_argument("--figures-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    params = load_params(args.params).evaluate
    ref = RunRef.read(args.run_file)
    history = read_history(args.history)
    x_test, y_test = load_split(args.data_dir / "test.npz")
    connect(ref.tracking_uri)
    model = load_keras_model(args.model)

    probabilities = predict_probabilities(model, x_test)
    report = classification_report(y_test, probabilities)
    figures = {
        "training_curves.png": training_curves(history),
        "confusion_matrix.png": confusion_figure(np.asarray(report["confusion_matrix"])),
        "misclassified.png": misclassified_grid(x_test, y_test, probabilities,
                                                params.misclassified_shown),
    }

    import mlflow

    with reopen_run(ref):
        for name, figure in figures.items():
            save_figure(figure, args.figures_dir / name)
        write_json(args.metrics_out, report)
        write_text(args.confusion_out, confusion_csv(y_test, probabilities.argmax(axis=1)))
        summary = summary_metrics(report)
        retry_locked(lambda: mlflow.log_metrics(summary), "logging test metrics")
        mlflow.log_artifacts(str(args.figures_dir), artifact_path="figures")
        mlflow.log_artifact(str(args.metrics_out))
        mlflow.log_dict(flatten({"per_class": report["per_class"]}), "per_class_metrics.json")
    print(f"evaluate: test accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f} "
          f"on {report['samples']} images (run {ref.run_id})", file=sys.stderr)


if __name__ == "__main__":
    run_stage("evaluate", main)
