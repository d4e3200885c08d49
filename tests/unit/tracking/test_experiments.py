"""``make compare``: which of ``dvc exp show``'s columns the drop pattern keeps."""

from __future__ import annotations

import re

import pytest

from tracking.experiments import drop_pattern


@pytest.mark.parametrize(
    ("column", "kept"),
    [
        ("Experiment", True),
        ("accuracy", True),
        ("loss", True),
        ("macro_f1", True),
        ("int8_accuracy", True),
        ("drawn.accuracy", True),  # the drawn test set's accuracy, once an experiment has it
        ("train.epochs", True),
        ("export.promotion_tolerance", True),
        ("drawn.loss", False),
        ("drawn.images", False),
        ("drawnXaccuracy", False),  # the dot is a dot
        ("onnx_accuracy", False),
        ("macro_precision", False),
        ("Created", False),
        ("reports/metrics.json", False),
    ],
)
def test_the_drop_pattern_keeps_the_headline_figures_and_params(column: str, kept: bool) -> None:
    dropped = re.compile(drop_pattern()).match(column) is not None  # as DVC applies --drop
    assert dropped is not kept
