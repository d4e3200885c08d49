"""Stage preprocess: checked input, a deterministic stratified split, and the data report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import damage_npz, error_lines, make_arrays, run_module

from stages.atomic import write_npz
from stages.config import PreprocessParams
from stages.datasets import check_images_labels, load_npz, load_split
from stages.errors import StageError
from stages.preprocess import allocate_per_class, describe_split, prepare, split_stratified


def skewed(n_per_class: tuple[int, ...] = (30, 12, 7, 50, 2, 9, 21, 3, 40, 16), seed: int = 0):
    """Images whose first pixel records their index, labels with very unequal class sizes."""
    y = np.repeat(np.arange(10, dtype=np.uint8), n_per_class)
    y = np.random.default_rng(seed).permutation(y)
    x = np.zeros((len(y), 28, 28), dtype=np.uint8)
    x[:, 0, 0] = np.arange(len(y)) % 256
    x[:, 0, 1] = np.arange(len(y)) // 256
    return x, y


def image_ids(x: np.ndarray) -> set[int]:
    return set((x[:, 0, 0].astype(int) + 256 * x[:, 0, 1].astype(int)).tolist())


# --- allocate_per_class --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "total"),
    [((10,) * 10, 10), ((10,) * 10, 7), ((30, 12, 7, 50, 2, 9, 21, 3, 40, 16), 19),
     ((5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949), 5000), ((1, 1, 1), 2),
     ((100, 1), 1)],
)
def test_allocate_per_class_sums_to_total_in_proportion(counts: tuple[int, ...],
                                                        total: int) -> None:
    counts_array = np.array(counts)
    taken = allocate_per_class(counts_array, total)
    assert taken.sum() == total
    assert np.all(taken >= 0) and np.all(taken <= counts_array)
    exact = counts_array * total / counts_array.sum()
    assert np.all(np.abs(taken - exact) < 1)


def test_allocate_per_class_breaks_ties_by_class_index() -> None:
    np.testing.assert_array_equal(allocate_per_class(np.array([5, 5, 5, 5]), 2), [1, 1, 0, 0])


# --- split_stratified ----------------------------------------------------------------------------


@pytest.mark.parametrize("val_size", [10, 17, 60, 189])
def test_split_has_exact_val_size_and_partitions(val_size: int) -> None:
    x, y = skewed()
    (x_train, y_train), (x_val, y_val) = split_stratified(x, y, val_size, seed=1)
    assert len(y_val) == len(x_val) == val_size
    assert len(y_train) == len(x_train) == len(y) - val_size
    train_ids, val_ids = image_ids(x_train), image_ids(x_val)
    assert not train_ids & val_ids and train_ids | val_ids == set(range(len(y)))
    # every image keeps its own label
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_val])), np.sort(y))


@pytest.mark.parametrize("val_size", [20, 37, 100])
def test_split_is_stratified(val_size: int) -> None:
    x, y = skewed()
    _, (_, y_val) = split_stratified(x, y, val_size, seed=3)
    expected = np.bincount(y, minlength=10) * val_size / len(y)
    got = np.bincount(y_val, minlength=10)
    assert np.all(np.abs(got - expected) <= 1), (got, expected)


def test_split_is_deterministic_per_seed() -> None:
    x, y = skewed()
    first = split_stratified(x, y, 40, seed=7)
    again = split_stratified(x.copy(), y.copy(), 40, seed=7)
    other = split_stratified(x, y, 40, seed=8)
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert image_ids(first[1][0]) != image_ids(other[1][0])


@pytest.mark.parametrize("val_size", [0, 200, 500])
def test_split_rejects_impossible_val_size(val_size: int) -> None:
    x, y = skewed()
    with pytest.raises(StageError, match=f"preprocess.val_size = {val_size}: expected between 1"):
        split_stratified(x, y, val_size, seed=0)


# --- prepare and its input checks ----------------------------------------------------------------


PARAMS = PreprocessParams(val_size=10, seed=0)


def test_prepare_returns_three_uint8_splits() -> None:
    raw = make_arrays(n_train=40, n_test=20)
    splits = prepare(raw, PARAMS)
    assert list(splits) == ["train", "val", "test"]
    assert len(splits["val"][1]) == 10 and len(splits["train"][1]) == 30
    np.testing.assert_array_equal(np.bincount(splits["val"][1], minlength=10), [1] * 10)
    np.testing.assert_array_equal(splits["test"][0], raw["x_test"])
    for x, y in splits.values():
        assert x.dtype == np.uint8 and y.dtype == np.uint8


def test_prepare_accepts_int64_labels() -> None:
    raw = make_arrays()
    raw["y_train"] = raw["y_train"].astype(np.int64)
    assert prepare(raw, PARAMS)["train"][1].dtype == np.uint8


def _with(name: str, change):
    def make() -> dict[str, np.ndarray]:
        raw = make_arrays(n_train=40, n_test=20)
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
        (_with("x_train", lambda x: x.astype(np.float32)),
         r"train set: images are float32\[40, 28, 28\], expected uint8\[N, 28, 28\]"),
        (_with("x_test", lambda x: x[:, :, :27]),
         r"test set: images are uint8\[20, 28, 27\]"),
        (_with("x_train", lambda x: x.reshape(40, 784)), r"train set: images are uint8\[40, 784\]"),
        (_with("y_train", lambda y: y.astype(np.float64)), r"train set: labels are float64\[40\]"),
        (_with("y_test", lambda y: y.reshape(2, 10)), r"test set: labels are uint8\[2, 10\]"),
        (_with("y_train", _label_at(5, 10)), "train set: label 10 outside 0..9"),
        (_with("y_test", _label_at(0, -1)), "test set: label -1 outside 0..9"),
        (_with("y_train", lambda y: y[:-1]), "train set: 40 images but 39 labels"),
        (_with("x_test", lambda x: x[:0]), "test set: 0 images but 20 labels"),
        (lambda: {**make_arrays(), "x_test": np.zeros((0, 28, 28), np.uint8),
                  "y_test": np.zeros(0, np.uint8)}, "test set: no images"),
        (_with("y_train", lambda y: np.where(y == 7, 3, y)),
         r"train set: class\(es\) \[7\] have fewer than 2 images"),
        (_with("y_train", _label_at(slice(0, 39), 2)),
         r"class\(es\) \[0, 1, 3, 4, 5, 6, 7, 8, 9\] have fewer than 2 images"),
    ],
    ids=["float-images", "narrow-images", "flat-images", "float-labels", "2d-labels", "label-10",
         "label-negative", "length-mismatch", "no-test-images", "empty-test", "missing-class",
         "one-class-left"],
)
def test_prepare_rejects_bad_input(make, message: str) -> None:
    with pytest.raises(StageError, match=message) as caught:
        prepare(make(), PARAMS)
    assert "\n" not in str(caught.value)


def test_check_images_labels_accepts_good_arrays() -> None:
    raw = make_arrays()
    check_images_labels(raw["x_train"], raw["y_train"], "train")  # returns without raising


def test_describe_split_counts_and_pixel_statistics() -> None:
    x = np.zeros((4, 28, 28), dtype=np.uint8)
    x[0] = 255
    y = np.array([1, 1, 9, 0], dtype=np.uint8)
    report = describe_split(x, y)
    assert report["count"] == 4
    assert report["class_counts"] == {str(c): {0: 1, 1: 2, 9: 1}.get(c, 0) for c in range(10)}
    assert report["pixel_mean"] == pytest.approx(63.75)
    assert report["pixel_std"] == pytest.approx(round(float(np.std(x.astype(float))), 4))
    json.dumps(report)  # plain JSON types only


# --- load_npz ------------------------------------------------------------------------------------


def test_load_split_round_trips(tmp_path: Path) -> None:
    raw = make_arrays()
    write_npz(tmp_path / "s.npz", {"x": raw["x_test"], "y": raw["y_test"]})
    x, y = load_split(tmp_path / "s.npz")
    np.testing.assert_array_equal(x, raw["x_test"])
    np.testing.assert_array_equal(y, raw["y_test"])


def _npy(path: Path) -> None:
    np.save(path, np.zeros(3))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: None, "not found \\(run the stage that writes it first"),
        (lambda path: path.write_bytes(b"garbage"), "not a readable .npz file"),
        (lambda path: write_npz(path, {"x": np.zeros(2)}), r"missing array\(s\) y; expected x, y"),
        (lambda path: _npy(path), "not a readable .npz file"),
        (lambda path: write_npz(path, {"x": np.zeros((2, 28, 28), np.uint8),
                                       "y": np.array([1, 12])}), "label 12 outside 0..9"),
    ],
    ids=["missing", "garbage", "missing-array", "npy", "bad-label"],
)
def test_load_split_rejects_bad_files(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "split.npz"
    make(path)
    if path.with_suffix(".npz.npy").exists():  # np.save appends .npy
        path.with_suffix(".npz.npy").rename(path)
    with pytest.raises(StageError, match=message):
        load_split(path)


@pytest.mark.parametrize(
    ("how", "saver"),
    [("encrypted-flag", np.savez), ("unknown-compression", np.savez_compressed),
     ("npy-header", np.savez), ("deflate-stream", np.savez_compressed), ("truncated", np.savez)],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_load_split_rejects_damaged_archives(tmp_path: Path, how: str, saver) -> None:
    raw = make_arrays()
    buffer = io.BytesIO()
    saver(buffer, x=raw["x_train"], y=raw["y_train"])
    (tmp_path / "split.npz").write_bytes(damage_npz(buffer.getvalue(), how))
    with pytest.raises(StageError, match="split.npz: not a readable .npz file"):
        load_split(tmp_path / "split.npz")


def test_load_npz_names_the_arrays_it_needs(tmp_path: Path) -> None:
    write_npz(tmp_path / "a.npz", {"x_train": np.zeros(1), "y_train": np.zeros(1)})
    with pytest.raises(StageError, match=r"missing array\(s\) x_test, y_test"):
        load_npz(tmp_path / "a.npz", ("x_train", "y_train", "x_test", "y_test"))


# --- the stage as DVC runs it --------------------------------------------------------------------


def test_stage_writes_splits_and_report(tmp_path: Path, params_file) -> None:
    raw = make_arrays(n_train=60, n_test=20, seed=5)
    write_npz(tmp_path / "raw" / "mnist.npz", raw)
    params = params_file(preprocess={"val_size": 20, "seed": 3})
    out_dir, report = tmp_path / "prepared", tmp_path / "reports" / "data.json"
    args = ["--params", params, "--raw", tmp_path / "raw" / "mnist.npz", "--out-dir", out_dir,
            "--report", report]
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
    raw = make_arrays()
    raw["y_train"][3] = 10
    write_npz(tmp_path / "mnist.npz", raw)
    params = params_file()
    result = run_module("stages.preprocess", "--params", params, "--raw", tmp_path / "mnist.npz",
                        "--out-dir", tmp_path / "prepared", "--report", tmp_path / "data.json",
                        cwd=tmp_path)
    assert result.returncode == 1
    assert error_lines(result.stderr) == ["preprocess: error: train set: label 10 outside 0..9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.npz", "params.yaml"]
