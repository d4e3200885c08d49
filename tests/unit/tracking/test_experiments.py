"""``make compare``: which of ``dvc exp show``'s columns the drop pattern keeps."""

from __future__ import annotations

import re

import pytest

from kernel.paths import PROJECT_ROOT
from tracking.experiments import (
    GAP,
    RUN_ID_CHARS,
    Row,
    drop_pattern,
    experiment_rows,
    param_sections,
    with_run_column,
)


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


# --- the run column (--runs) ----------------------------------------------------------------------

TABLE = """\
 ──────────────────────────────────────────────
  Experiment                accuracy   train.h…
                                       idden_u…
 ──────────────────────────────────────────────
  workspace                     0.93   [512,
                                       256]
  main                          0.91   [128]
  ├── a578539 [exp-three]       0.93   [64]
  └── aa97c99 [exp-two]         0.92   [32]
 ──────────────────────────────────────────────
"""


def test_the_run_column_goes_on_each_rows_first_line_and_the_headers() -> None:
    labels = ["workspace", "main", "a578539", "aa97c99"]
    shown = with_run_column(TABLE, labels, {"workspace": "f228b17b", "a578539": "f228b17b"})
    lines = shown.splitlines()
    width = max(len(line) for line in TABLE.splitlines())
    assert all(len(line) <= width + len(GAP) + RUN_ID_CHARS for line in lines)
    assert lines[0] == lines[3] == lines[-1] and set(lines[0].strip()) == {"─"}
    assert len(lines[0]) == width + len(GAP) + RUN_ID_CHARS
    assert lines[1].endswith(GAP + "Run") and lines[2].rstrip() == TABLE.splitlines()[2].rstrip()
    assert [line.split()[-1] for line in lines[4:9]] == ["f228b17b", "256]", "-", "f228b17b", "-"]


def test_the_rows_are_read_as_dvc_labels_them() -> None:
    def data(md5: str | None, experiment: str = "mnist") -> dict:
        deps = {"models/run.json": {"hash": md5}} if md5 else {}
        params = {"params.yaml": {"data": {"train": {"experiment_name": experiment}}}}
        return {"deps": deps, "params": params}

    sha = "a578539" + "0" * 33
    shown = [
        {"rev": "workspace", "name": None, "data": data("m1")},
        {
            "rev": "b" * 40,
            "name": "main",
            "data": data("m2"),
            "experiments": [{"name": "exp-three", "revs": [{"rev": sha, "data": data(None)}]}],
        },
        {"rev": "c" * 40, "name": None, "data": None},
    ]
    assert experiment_rows(shown, "models/run.json") == [
        Row("workspace", None, "m1", "mnist"),
        Row("main", None, "m2", "mnist"),
        Row("a578539", "exp-three", None, "mnist"),
        Row("ccccccc", None, None, None),
    ]
