"""The drawn test set: the feedback set's held-out digits people drew, and a model's accuracy
on them, measured with onnxruntime as the parity gate runs a model.

Export weighs it beside the MNIST test set in the champion rule (``tracking.champion``),
which measures a champion registered before the set existed on it through ``accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.dataset.canonical import dataset_digest
from stages.dataset.feedback import load_feedback
from stages.handoff.onnx_runtime import onnx_session, run_onnx
from tracking.version_tags import DrawnFigure


@dataclass(frozen=True)
class DrawnSet:
    """The feedback set's held-out drawn test part: images, labels and their digest."""

    images: np.ndarray
    labels: np.ndarray
    digest: str

    @classmethod
    def read(cls, feedback: Path) -> DrawnSet | None:
        """The drawn part of the feedback stage's file, or None when it is empty."""
        images, labels = load_feedback(feedback)["drawn"]
        if len(labels) == 0:
            return None
        return cls(images, labels, dataset_digest({"drawn_x": images, "drawn_y": labels}))

    def accuracy(self, model_bytes: bytes) -> float:
        """The ONNX model's accuracy on the set."""
        probabilities = run_onnx(onnx_session(model_bytes), self.images)
        return float((probabilities.argmax(axis=1) == self.labels).mean())

    def figure(self, model_bytes: bytes) -> DrawnFigure:
        """The ONNX model's accuracy on the set, with the set's digest and size."""
        return DrawnFigure(self.accuracy(model_bytes), self.digest, len(self.labels))
