"""Stage preprocess: checked input, a deterministic stratified split, and the data report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from factories.data import random_mnist
from factories.processes import error_lines, run_module, stage_args
from kernel.atomic import write_npz
from kernel.cli import CommandError
from kernel.params import PreprocessParams
from stages.dataset.arrays import load_split
from stages.preprocess import prepare

# --- prepare and its input checks ----------------------------------------------------------------


PARAMS = PreprocessParams(val_size=10, seed=0)


def test_prepare_returns_three_uint8_splits() -> None:
    raw = random_mnist(n_train=40, n_test=20)
    splits = prepare(raw, PARAMS)
    assert list(splits) == ["train", "val", "test"]
    assert len(splits["val"][1]) == 10 and len(splits["train"][1]) == 30
    np.testing.assert_array_equal(np.bincount(splits["val"][1], minlength=10), [1] * 10)
    np.testing.assert_array_equal(splits["test"][0], raw["x_test"])
    for x, y in splits.values():
        assert x.dtype == np.uint8 and y.dtype == np.uint8


def test_prepare_accepts_int64_labels() -> None:
    raw = random_mnist()
    raw["y_train"] = raw["y_train"].astype(np.int64)
    assert prepare(raw, PARAMS)["train"][1].dtype == np.uint8


def _with(name: str, change):
    def make() -> dict[str, np.ndarray]:
        raw = random_mnist(n_train=40, n_test=20)
        raw[name] = change(raw[name])
        return raw

    return make


def _label_at(index: int, value: int):
    def change(y: np.ndarray) -> np.ndarray:
        y = y.astype(np.int64)
        y[index] = value
        return y

    return change


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            _with("x_train", lambda x: x.astype(np.float32)),
            r"train set: images are float32\[40, 28, 28\], expected uint8\[N, 28, 28\]",
        ),
        (_with("x_test", lambda x: x[:, :, :27]), r"test set: images are uint8\[20, 28, 27\]"),
        (_with("x_train", lambda x: x.reshape(40, 784)), r"train set: images are uint8\[40, 784\]"),
        (_with("y_train", lambda y: y.astype(np.float64)), r"train set: labels are float64\[40\]"),
        (_with("y_test", lambda y: y.reshape(2, 10)), r"test set: labels are uint8\[2, 10\]"),
        (_with("y_train", _label_at(5, 10)), "train set: label 10 outside 0..9"),
        (_with("y_test", _label_at(0, -1)), "test set: label -1 outside 0..9"),
        (_with("y_train", lambda y: y[:-1]), "train set: 40 images but 39 labels"),
        (_with("x_test", lambda x: x[:0]), "test set: 0 images but 20 labels"),
        (
            lambda: {
                **random_mnist(),
                "x_test": np.zeros((0, 28, 28), np.uint8),
                "y_test": np.zeros(0, np.uint8),
            },
            "test set: no images",
        ),
        (
            _with("y_train", lambda y: np.where(y == 7, 3, y)),
            r"train set: class\(es\) \[7\] have fewer than 2 images",
        ),
        (
            _with("y_train", _label_at(slice(0, 39), 2)),
            r"class\(es\) \[0, 1, 3, 4, 5, 6, 7, 8, 9\] have fewer than 2 images",
        ),
    ],
    ids=[
        "float-images",
        "narrow-images",
        "flat-images",
        "float-labels",
        "2d-labels",
        "label-10",
        "label-negative",
        "length-mismatch",
        "no-test-images",
        "empty-test",
        "missing-class",
        "one-class-left",
    ],
)
def test_prepare_rejects_bad_input(make, message: str) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        prepare(make(), PARAMS)
    assert "\n" not in str(caught.value)


# --- the stage as DVC runs it --------------------------------------------------------------------


def test_stage_writes_splits_and_report(tmp_path: Path, params_file) -> None:
    raw = random_mnist(n_train=60, n_test=20, seed=5)
    write_npz(tmp_path / "raw" / "mnist.npz", raw)
    params = params_file(preprocess={"val_size": 20, "seed": 3})
    out_dir, report = tmp_path / "prepared", tmp_path / "reports" / "data.json"
    args = [
        "--params",
        params,
        *stage_args(
            "preprocess",
            {"raw": tmp_path / "raw" / "mnist.npz", "prepared": out_dir, "data_report": report},
        ),
    ]
    result = run_module("stages.preprocess", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["test.npz", "train.npz", "val.npz"]
    splits = {name: load_split(out_dir / f"{name}.npz") for name in ("train", "val", "test")}
    assert [len(y) for _, y in splits.values()] == [40, 20, 20]
    np.testing.assert_array_equal(splits["test"][0], raw["x_test"])
    assert sorted(p.name for p in report.parent.iterdir()) == ["data.json"]

    data = json.loads(report.read_text())
    assert sorted(data) == ["test", "train", "val"]
    for name, (x, y) in splits.items():
        assert data[name]["count"] == len(y)
        assert data[name]["class_counts"] == {str(c): int((y == c).sum()) for c in range(10)}
        assert data[name]["pixel_mean"] == pytest.approx(x.mean(), abs=1e-4)
        assert data[name]["pixel_std"] == pytest.approx(x.std(), abs=1e-4)
    assert data["val"]["class_counts"] == {str(c): 2 for c in range(10)}

    first = {p.name: p.read_bytes() for p in [*out_dir.iterdir(), report]}
    result = run_module("stages.preprocess", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in [*out_dir.iterdir(), report]} == first


def test_stage_rejects_bad_raw_data_with_one_line(tmp_path: Path, params_file) -> None:
    raw = random_mnist()
    raw["y_train"][3] = 10
    write_npz(tmp_path / "mnist.npz", raw)
    params = params_file()
    paths = {
        "raw": tmp_path / "mnist.npz",
        "prepared": tmp_path / "prepared",
        "data_report": tmp_path / "data.json",
    }
    result = run_module(
        "stages.preprocess", "--params", params, *stage_args("preprocess", paths), cwd=tmp_path
    )
    assert result.returncode == 1
    assert error_lines(result.stderr) == ["preprocess: error: train set: label 10 outside 0..9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.npz", "params.yaml"]


def test_a_failed_write_keeps_every_previous_split(tmp_path: Path, params_file) -> None:
    write_npz(tmp_path / "mnist.npz", random_mnist(n_train=60, n_test=20, seed=5))
    out_dir = tmp_path / "prepared"
    paths = {"raw": tmp_path / "mnist.npz", "prepared": out_dir, "data_report": tmp_path / "r.json"}
    first = params_file("first.yaml", preprocess={"val_size": 20, "seed": 3})
    done = run_module(
        "stages.preprocess", "--params", first, *stage_args("preprocess", paths), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    # another split whose report cannot replace what is in its place: a folder
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "folder.json" / "keep").write_text("")
    paths["data_report"] = tmp_path / "folder.json"
    other = params_file("other.yaml", preprocess={"val_size": 20, "seed": 4})
    failed = run_module(
        "stages.preprocess", "--params", other, *stage_args("preprocess", paths), cwd=tmp_path
    )
    assert failed.returncode == 1
    assert error_lines(failed.stderr) == [
        f"preprocess: error: {tmp_path / 'folder.json'}: Operation not permitted"
    ]
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "folder.json").iterdir()) == ["keep"]
