"""The PNG figures a person looks at: training curves, confusion matrix, misclassified digits."""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from stages.dataset.canonical import NUM_CLASSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> None:
    """Write the figure as a PNG (into a staged or temporary file: not atomic itself) and free it.

    No date or software version is written into the PNG, so the same figure gives the same bytes.
    """
    figure.savefig(path, dpi=110, bbox_inches="tight", format="png", metadata={"Software": None})
    _pyplot().close(figure)


def training_curves(history: dict[str, list[float]]) -> Figure:
    """Loss and accuracy per epoch, training beside validation."""
    plt = _pyplot()
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)  # counted from 1, as Keras prints them
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(epochs, history[metric], marker="o", label=f"train {metric}")
        axis.plot(epochs, history[f"val_{metric}"], marker="o", label=f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Training curves")
    return figure


def confusion_figure(matrix: np.ndarray) -> Figure:
    """The confusion matrix as a heat map with the count in each cell."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis)
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        axis.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if count > threshold else "black",
        )
    axis.set_xticks(range(NUM_CLASSES))
    axis.set_yticks(range(NUM_CLASSES))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"Confusion matrix ({int(matrix.sum())} test images)")
    return figure


def misclassified_grid(
    images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, count: int
) -> Figure:
    """The ``count`` most confidently wrong test digits, with true and predicted labels."""
    plt = _pyplot()
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probabilities[wrong, y_pred[wrong]]
    shown = wrong[np.argsort(-confidence, kind="stable")][:count]
    columns = 5
    rows = max(1, int(np.ceil(len(shown) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.8, rows * 2.0), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, shown, strict=False):
        axis.imshow(images[index], cmap="gray", vmin=0, vmax=255)
        axis.set_title(
            f"true {y_true[index]} → {y_pred[index]}\np={probabilities[index, y_pred[index]]:.2f}",
            fontsize=8,
        )
    figure.suptitle(
        f"Misclassified test digits: {len(wrong)} of {len(y_true)}"
        + ("" if len(wrong) else " (none)")
    )
    return figure
