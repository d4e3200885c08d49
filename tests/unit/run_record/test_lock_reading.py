"""``run_record.dvc_lock``: what dvc.lock says, read as train reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.run_record.dvc_lock import LockedStage, holds, producers, read_lock, text_md5

LOCK = {
    "fetch": LockedStage({"stages/fetch.py": "f0"}, {"data/raw/mnist.npz": "r1"}),
    "preprocess": LockedStage(
        {"data/raw/mnist.npz": "r1"}, {"data/prepared": "p1.dir", "reports/data.json": "d1"}
    ),
    "feedback": LockedStage({"data/feedback-store": "s1.dir"}, {"data/feedback.npz": "b1"}),
    "train": LockedStage({"data/prepared": "p1.dir"}, {"models/run.json": "m1"}),
    "evaluate": LockedStage({"data/prepared/test.npz": "t1"}, {"reports/metrics.json": "e1"}),
}


@pytest.mark.parametrize(
    ("inputs", "upstream"),
    [
        (["data/prepared"], {"data/prepared", "reports/data.json", "data/raw/mnist.npz"}),
        (["./data/prepared/", "data/feedback.npz"], {"data/prepared", "reports/data.json",
                                                     "data/raw/mnist.npz", "data/feedback.npz"}),
        (["data/prepared/test.npz"], {"data/prepared", "reports/data.json", "data/raw/mnist.npz"}),
        (["models/run.json"], {"models/run.json", "data/prepared", "reports/data.json",
                               "data/raw/mnist.npz"}),
        (["data/elsewhere.npz"], set()),
    ],
)  # fmt: skip
def test_producers_are_the_stages_upstream_of_the_inputs(inputs, upstream) -> None:
    found = producers(LOCK, inputs)
    assert set(found) == upstream
    assert found.get("data/prepared", "p1.dir") == "p1.dir"


@pytest.mark.parametrize(
    "text",
    ["", "stages: [1, 2]\n", "schema: '2.0'\n", "stages: {a: {deps: 3}}\n", "{ unclosed\n"],
)
def test_a_lock_that_cannot_be_read_reads_as_empty(tmp_path: Path, text: str) -> None:
    (tmp_path / "dvc.lock").write_text(text)
    assert read_lock(tmp_path) == {}
    assert read_lock(tmp_path / "missing") == {}


def test_holds_compares_a_files_bytes_with_the_locks_md5(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"a": 1}\n')
    assert holds(tmp_path, "a.json", text_md5('{"a": 1}\n'))
    assert not holds(tmp_path, "a.json", text_md5('{"a": 2}\n'))
    assert not holds(tmp_path, "missing.json", text_md5(""))
    assert not holds(tmp_path, ".", "whatever.dir"), "a folder's md5 is not recomputed"
