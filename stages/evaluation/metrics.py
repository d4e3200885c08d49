"""Classification metrics from labels and predicted probabilities, and their report forms."""

from __future__ import annotations

import csv
import io

import numpy as np

from stages.dataset.canonical import NUM_CLASSES


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Rows are true labels, columns predicted labels."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return matrix


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def cross_entropy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    picked = probabilities[np.arange(len(y_true)), y_true.astype(np.int64)]
    return float(-np.log(np.clip(picked.astype(np.float64), 1e-7, 1.0)).mean())


def classification_report(y_true: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, loss, per-class precision / recall / F1, their macro averages, the confusion."""
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), NUM_CLASSES):
        raise ValueError(
            f"probabilities of shape {probabilities.shape}, expected ({len(y_true)}, {NUM_CLASSES})"
        )
    y_pred = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred)
    true_positive = np.diag(matrix).astype(np.float64)
    precision = _safe_ratio(true_positive, matrix.sum(axis=0))
    recall = _safe_ratio(true_positive, matrix.sum(axis=1))
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "loss": cross_entropy(y_true, probabilities),
        "samples": int(len(y_true)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            str(c): {
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(matrix[c].sum()),
            }
            for c in range(NUM_CLASSES)
        },
        "confusion_matrix": matrix.tolist(),
    }


def confusion_csv(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    """One ``actual,predicted`` row per image: what DVC's confusion template plots."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows(zip(y_true.tolist(), y_pred.tolist(), strict=True))
    return out.getvalue()


HEADLINE = ("accuracy", "loss", "macro_precision", "macro_recall", "macro_f1")


def split_report(report: dict) -> tuple[dict[str, float], dict]:
    """(the headline figures DVC compares, the per-class table and confusion matrix)."""
    headline = {key: report[key] for key in HEADLINE}
    table = {key: value for key, value in report.items() if key not in HEADLINE}
    return headline, table
