"""The parity gate: does the ONNX model predict what the Keras model predicts?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ParityReport:
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    keras_accuracy: float
    onnx_accuracy: float
    tolerance: float
    min_agreement: float
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        report = asdict(self)
        report["failures"] = list(self.failures)
        report["passed"] = self.passed
        return report


def compare_predictions(
    keras_probs: np.ndarray,
    onnx_probs: np.ndarray,
    labels: np.ndarray,
    tolerance: float,
    min_agreement: float,
) -> ParityReport:
    """Probabilities within ``tolerance``, argmax agreement ≥ ``min_agreement``, and test
    accuracies no further apart than the disagreement allowed (equal when it is 1)."""
    if keras_probs.shape != onnx_probs.shape:
        raise ValueError(f"Keras gave {keras_probs.shape}, ONNX {onnx_probs.shape}")
    diff = np.abs(keras_probs.astype(np.float64) - onnx_probs.astype(np.float64))
    keras_pred, onnx_pred = keras_probs.argmax(axis=1), onnx_probs.argmax(axis=1)
    agreement = float((keras_pred == onnx_pred).mean())
    keras_accuracy = float((keras_pred == labels).mean())
    onnx_accuracy = float((onnx_pred == labels).mean())
    max_diff = float(diff.max()) if diff.size else 0.0
    failures = []
    if not np.isfinite(onnx_probs).all():
        failures.append("ONNX output holds NaN or infinity")
    if not max_diff <= tolerance:  # NaN (no evidence of parity) fails too
        failures.append(f"max abs difference {max_diff:.3g} > tolerance {tolerance:.3g}")
    if agreement < min_agreement:
        disagree = int((keras_pred != onnx_pred).sum())
        failures.append(
            f"argmax agreement {agreement:.4%} < {min_agreement:.4%} "
            f"({disagree} of {len(labels)} images differ)"
        )
    if abs(onnx_accuracy - keras_accuracy) > (1.0 - min_agreement) + 1e-12:
        failures.append(f"ONNX accuracy {onnx_accuracy:.4%} != Keras {keras_accuracy:.4%}")
    return ParityReport(
        samples=int(len(labels)),
        max_abs_diff=max_diff,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        argmax_agreement=agreement,
        keras_accuracy=keras_accuracy,
        onnx_accuracy=onnx_accuracy,
        tolerance=tolerance,
        min_agreement=min_agreement,
        failures=tuple(failures),
    )
