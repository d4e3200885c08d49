"""``make compare``: which of ``dvc exp show``'s columns the drop pattern keeps."""

from __future__ import annotations

import re

import pytest

from kernel.paths import PROJECT_ROOT
from tracking.experiments import drop_pattern, param_sections


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
        ("feedback.train_weight", True),  # every section of params.yaml, not a list of them
        ("monitor.window", True),
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
    sections = param_sections(PROJECT_ROOT / "params.yaml")
    dropped = re.compile(drop_pattern(sections)).match(column) is not None  # as DVC applies it
    assert dropped is not kept


def test_the_sections_are_those_of_the_params_file(tmp_path) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 1\nnewsection:\n  knob: 2\n")
    assert param_sections(tmp_path / "params.yaml") == ("train", "newsection")
    assert re.compile(drop_pattern(("newsection",))).match("newsection.knob") is None
    for unreadable in ("", "[1, 2]\n", "train: [\n"):
        (tmp_path / "params.yaml").write_text(unreadable)
        assert param_sections(tmp_path / "params.yaml") == ()
    assert param_sections(tmp_path / "missing.yaml") == ()
