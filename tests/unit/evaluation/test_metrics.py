"""stages.evaluation.metrics on hand-made arrays whose confusion and scores are worked out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages.evaluation.metrics import classification_report, confusion_matrix, cross_entropy

# Ten images of digits 0..3; digit 3 is never predicted, digits 4..9 never occur.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3], dtype=np.uint8)
Y_PRED = np.array([0, 0, 1, 1, 1, 2, 0, 2, 2, 1])
# rows: true digit, columns: predicted digit (the 4x4 corner; the rest is zero)
CORNER = [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 1, 1, 0]]
CONFIDENCE = 0.9


def probabilities(y_pred: np.ndarray, confidence: float = CONFIDENCE) -> np.ndarray:
    """``confidence`` on the predicted digit, the rest spread evenly over the other nine."""
    probs = np.full((len(y_pred), 10), (1 - confidence) / 9)
    probs[np.arange(len(y_pred)), y_pred] = confidence
    return probs.astype(np.float32)


def test_confusion_matrix_by_hand() -> None:
    matrix = confusion_matrix(Y_TRUE, Y_PRED)
    expected = np.zeros((10, 10), dtype=np.int64)
    expected[:4, :4] = CORNER
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == len(Y_TRUE)


def test_classification_report_by_hand() -> None:
    report = classification_report(Y_TRUE, probabilities(Y_PRED))
    # precision = diagonal / column sum, recall = diagonal / row sum
    expected = {
        "0": (2 / 3, 2 / 3, 2 / 3, 3),
        "1": (2 / 4, 2 / 2, 2 * 0.5 * 1.0 / 1.5, 2),
        "2": (2 / 3, 2 / 3, 2 / 3, 3),
        "3": (0.0, 0.0, 0.0, 2),  # never predicted: precision 0, not NaN
    }
    expected.update({str(digit): (0.0, 0.0, 0.0, 0) for digit in range(4, 10)})
    for digit, (precision, recall, f1, support) in expected.items():
        scores = report["per_class"][digit]
        assert scores["precision"] == pytest.approx(precision), digit
        assert scores["recall"] == pytest.approx(recall), digit
        assert scores["f1"] == pytest.approx(f1), digit
        assert scores["support"] == support, digit
        assert all(math.isfinite(scores[key]) for key in ("precision", "recall", "f1"))
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["samples"] == 10
    assert report["macro_precision"] == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 10)
    assert report["macro_recall"] == pytest.approx((2 / 3 + 1.0 + 2 / 3) / 10)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 2 / 3) / 10)
    wrong = (1 - CONFIDENCE) / 9
    assert report["loss"] == pytest.approx(
        -(6 * math.log(CONFIDENCE) + 4 * math.log(wrong)) / 10, rel=1e-5
    )
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10)
    np.testing.assert_array_equal(matrix[:4, :4], CORNER)
    assert matrix.sum() == 10


def test_perfect_predictions() -> None:
    y = np.arange(20) % 10
    report = classification_report(y, probabilities(y, confidence=1.0))
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == pytest.approx(1.0)
    assert report["loss"] == pytest.approx(0.0, abs=1e-6)
    assert np.array_equal(np.array(report["confusion_matrix"]), 2 * np.eye(10, dtype=int))


def test_report_is_json_ready() -> None:
    report = classification_report(Y_TRUE, probabilities(Y_PRED))
    for value in (report["accuracy"], report["loss"], report["macro_f1"]):
        assert type(value) is float
    assert type(report["samples"]) is int
    assert all(type(cell) is int for row in report["confusion_matrix"] for cell in row)
    assert set(report["per_class"]) == {str(digit) for digit in range(10)}


def test_cross_entropy_of_a_zero_probability_is_finite() -> None:
    probs = np.zeros((2, 10), dtype=np.float32)
    probs[:, 1] = 1.0
    loss = cross_entropy(np.array([1, 0]), probs)
    assert math.isfinite(loss)
    assert loss == pytest.approx(-math.log(1e-7) / 2, rel=1e-6)


@pytest.mark.parametrize("shape", [(10, 9), (9, 10), (10,), (10, 10, 1)])
def test_classification_report_rejects_a_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected \\(10, 10\\)"):
        classification_report(Y_TRUE, np.full(shape, 0.1, dtype=np.float32))
