"""The parity gate's verdict on hand-made probabilities: each failure kind, and the figures."""

from __future__ import annotations

import numpy as np
import pytest

from stages.handoff.parity import compare_predictions

LABELS = np.arange(10)


def _confident(predicted: list[int] | np.ndarray) -> np.ndarray:
    probs = np.full((len(predicted), 10), 0.01, dtype=np.float32)
    probs[np.arange(len(predicted)), predicted] = 0.91
    return probs


def _onnx_predicts(row: int, digit: int):
    def change(keras: np.ndarray) -> np.ndarray:
        onnx = keras.copy()
        onnx[row] = _confident([digit])[0]
        return onnx

    return change


def _nudged(amount: float):
    def change(keras: np.ndarray) -> np.ndarray:
        onnx = keras.copy()
        onnx[4, 7] += amount  # not the argmax of row 4
        onnx[4, 8] -= amount
        return onnx

    return change


def _filled(value: float):
    """Put ``value`` where row 2 has its argmax: numpy's argmax takes NaN as the largest."""

    def change(keras: np.ndarray) -> np.ndarray:
        onnx = keras.copy()
        onnx[2, 2] = value
        return onnx

    return change


def _failure_kinds(failures: tuple[str, ...]) -> set[str]:
    prefixes = {
        "ONNX output holds": "nan",
        "max abs difference": "tolerance",
        "argmax agreement": "agreement",
        "ONNX accuracy": "accuracy",
    }
    kinds = set()
    for failure in failures:
        (kind,) = [kind for prefix, kind in prefixes.items() if failure.startswith(prefix)]
        kinds.add(kind)
    return kinds


KERAS_ALL_RIGHT = _confident(LABELS)
KERAS_ROW0_WRONG = _confident([2, *LABELS[1:]])
# (id, keras probabilities, onnx from keras, tolerance, min_agreement, expected failure kinds)
PARITY_CASES = [
    ("identical", KERAS_ALL_RIGHT, lambda k: k.copy(), 1e-5, 1.0, set()),
    ("within-tolerance", KERAS_ALL_RIGHT, _nudged(4e-6), 1e-5, 1.0, set()),
    ("tolerance-exceeded", KERAS_ALL_RIGHT, _nudged(1e-3), 1e-5, 1.0, {"tolerance"}),
    (
        "agreement-below-min-same-accuracy",
        KERAS_ROW0_WRONG,
        _onnx_predicts(0, 3),
        1.0,
        1.0,
        {"agreement"},
    ),
    (
        "accuracy-differs",
        KERAS_ALL_RIGHT,
        _onnx_predicts(0, 1),
        1.0,
        0.95,
        {"agreement", "accuracy"},
    ),
    ("disagreement-allowed", KERAS_ALL_RIGHT, _onnx_predicts(0, 1), 1.0, 0.9, set()),
    ("nan-output", KERAS_ALL_RIGHT, _filled(np.nan), 1e-5, 1.0, {"nan", "tolerance"}),
    ("infinite-output", KERAS_ALL_RIGHT, _filled(np.inf), 1e-5, 1.0, {"nan", "tolerance"}),
    # argmaxes agree, but a NaN difference is no evidence of parity
    (
        "nan-from-keras",
        _filled(np.nan)(KERAS_ALL_RIGHT),
        lambda k: KERAS_ALL_RIGHT.copy(),
        1e-5,
        1.0,
        {"tolerance"},
    ),
]


@pytest.mark.parametrize(
    ("keras", "make_onnx", "tolerance", "min_agreement", "expected"),
    [case[1:] for case in PARITY_CASES],
    ids=[case[0] for case in PARITY_CASES],
)
def test_compare_predictions(
    keras: np.ndarray, make_onnx, tolerance: float, min_agreement: float, expected: set[str]
) -> None:
    report = compare_predictions(keras, make_onnx(keras), LABELS, tolerance, min_agreement)
    assert _failure_kinds(report.failures) == expected, report.failures
    assert report.passed == (not expected)
    assert report.samples == len(LABELS)
    assert report.as_dict()["passed"] == report.passed
    assert report.as_dict()["failures"] == list(report.failures)


def test_compare_predictions_figures() -> None:
    onnx = _onnx_predicts(0, 1)(KERAS_ALL_RIGHT)
    report = compare_predictions(KERAS_ALL_RIGHT, onnx, LABELS, tolerance=1.0, min_agreement=0.9)
    assert report.argmax_agreement == pytest.approx(0.9)
    assert report.keras_accuracy == 1.0
    assert report.onnx_accuracy == pytest.approx(0.9)
    assert report.max_abs_diff == pytest.approx(0.9, abs=1e-6)
    assert report.mean_abs_diff == pytest.approx(1.8 / 100, abs=1e-6)


def test_compare_predictions_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match="Keras gave"):
        compare_predictions(KERAS_ALL_RIGHT, KERAS_ALL_RIGHT[:5], LABELS, 1e-5, 1.0)
