"""The page's images, drawn offline with matplotlib (Agg: no display, no network).

``curves.png``: the training curves of both sides overlaid (the base dashed, this side
solid). ``confusion.png``: both confusion matrices and their difference.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

CURVES = "curves.png"
CONFUSION = "confusion.png"
# the PNG's text chunks name no matplotlib version or time: the same data, the same bytes
_PNG_METADATA = {"Software": None}
_BASE_COLOR, _THIS_COLOR = "#7f7f7f", "#1f77b4"
_VAL_BASE_COLOR, _VAL_THIS_COLOR = "#c49c94", "#d62728"


def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend, imported late (it costs a second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_curves(
    path: Path,
    old: dict[str, list[float]] | None,
    new: dict[str, list[float]] | None,
    labels: tuple[str, str],
) -> None:
    """Loss and accuracy per epoch, training and validation, of both sides on one image."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for history, label, style, colors in (
            (old, labels[0], "--", (_BASE_COLOR, _VAL_BASE_COLOR)),
            (new, labels[1], "-", (_THIS_COLOR, _VAL_THIS_COLOR)),
        ):
            if not history or metric not in history:
                continue
            epochs = history.get("epoch") or list(range(1, len(history[metric]) + 1))
            axis.plot(epochs, history[metric], style, color=colors[0], label=f"{label}: train")
            validation = history.get(f"val_{metric}")
            if validation:
                axis.plot(epochs, validation, style, color=colors[1], label=f"{label}: validation")
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, metadata=_PNG_METADATA)
    plt.close(figure)


def draw_confusion(
    path: Path, old: np.ndarray | None, new: np.ndarray | None, labels: tuple[str, str]
) -> None:
    """Both confusion matrices (counts, actual digit down, predicted across) and, when both
    exist, this side's minus the base's."""
    plt = _pyplot()
    panels: list[tuple[str, np.ndarray, str]] = []
    if old is not None:
        panels.append((labels[0], old, "Blues"))
    if new is not None:
        panels.append((labels[1], new, "Blues"))
    if old is not None and new is not None:
        panels.append((f"{labels[1]} minus {labels[0]}", new - old, "RdBu"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), dpi=100)
    for axis, (title, matrix, colormap) in zip(np.atleast_1d(axes), panels, strict=True):
        shown = matrix
        if colormap == "RdBu":
            # off the diagonal, more mistakes are worse: red; on it, more hits are better: blue
            shown = matrix.astype(float).copy()
            off = ~np.eye(len(matrix), dtype=bool)
            shown[off] = -shown[off]
            bound = max(1.0, float(np.abs(shown).max()))
            axis.imshow(shown, cmap=colormap, vmin=-bound, vmax=bound)
        else:
            # the diagonal dwarfs the mistakes: a log-like scale keeps them visible
            axis.imshow(np.log1p(matrix), cmap=colormap)
            bound = 1.0
        darkest = max(1.0, float(np.log1p(np.abs(matrix)).max()))
        for (row, column), value in np.ndenumerate(matrix):
            if value == 0 and colormap == "RdBu":
                continue
            text = f"{value:+d}" if colormap == "RdBu" else f"{value:d}"
            if colormap == "RdBu":
                dark = abs(shown[row, column]) / bound > 0.6
            else:
                dark = np.log1p(value) / darkest > 0.6
            axis.text(
                column,
                row,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("predicted")
        axis.set_ylabel("actual")
        axis.set_xticks(range(len(matrix)))
        axis.set_yticks(range(len(matrix)))
    figure.tight_layout()
    figure.savefig(path, metadata=_PNG_METADATA)
    plt.close(figure)
