"""Small MNIST-shaped data made on the spot, and the files it comes in.

Two kinds of images, for two purposes:

- ``random_mnist``: uniform noise of MNIST's shapes and dtype, for the format,
  digest and split code, which must not care what the pixels show;
- ``digit_images``: digits 0..9 rendered with Pillow's font, white on black, with
  random size, shift and stroke: they look like MNIST, so a tiny model learns them
  in seconds and the predictor's image path can be checked against Keras.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kernel.atomic import write_npz
from stages.dataset.formats import IDX_FILES

Split = tuple[np.ndarray, np.ndarray]
# train / validation / test sizes of the tiny prepared data
SPLIT_SIZES = {"train": 300, "val": 60, "test": 100}


def random_mnist(n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Four MNIST-shaped uint8 arrays of noise; labels cycle 0..9, each digit n/10 times."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": ((np.arange(n_test) + 3) % 10).astype(np.uint8),
    }


def digit_images(count: int, seed: int) -> Split:
    """``count`` rendered digits (labels cycling through 0..9, shuffled) and their labels."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    rng.shuffle(labels)
    fonts = {size: ImageFont.load_default(size=size) for size in (18, 20, 22, 24)}
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        canvas = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(canvas).text(
            (14 + int(rng.integers(-2, 3)), 14 + int(rng.integers(-2, 3))),
            str(label),
            fill=int(rng.integers(200, 256)),
            anchor="mm",
            font=fonts[int(rng.choice(list(fonts)))],
            stroke_width=int(rng.integers(0, 2)),
            stroke_fill=255,
        )
        noise = rng.integers(0, 30, size=(28, 28))
        images[index] = np.clip(np.asarray(canvas, dtype=np.int64) + noise * (noise > 25), 0, 255)
    return images, labels


def digit_mnist(train: int = 600, test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """The four raw arrays (what fetch writes) made of rendered digits."""
    x_train, y_train = digit_images(train, seed)
    x_test, y_test = digit_images(test, seed + 1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def digit_splits(seed: int = 0) -> dict[str, Split]:
    """Prepared train / val / test splits (what preprocess writes) of rendered digits."""
    return {
        name: digit_images(count, seed + offset)
        for offset, (name, count) in enumerate(SPLIT_SIZES.items())
    }


def write_prepared(folder: Path, splits: dict[str, Split]) -> Path:
    """The three ``.npz`` files the preprocess stage writes."""
    for name, (x, y) in splits.items():
        write_npz(folder / f"{name}.npz", {"x": x, "y": y})
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding ``array``."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(
    folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = False, sub: str = ""
) -> Path:
    """Write the four IDX files into ``folder/sub`` (``sub="MNIST/raw"`` is torchvision's)."""
    target = folder / sub if sub else folder
    target.mkdir(parents=True, exist_ok=True)
    for name, stem in IDX_FILES.items():
        data = idx_bytes(arrays[name])
        if gz:
            (target / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (target / stem).write_bytes(data)
    return folder


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Each way damage_npz breaks an archive, with the writer whose layout that damage needs.
NPZ_DAMAGES = [
    ("encrypted-flag", np.savez),
    ("unknown-compression", np.savez_compressed),
    ("npy-header", np.savez),
    ("deflate-stream", np.savez_compressed),
    ("truncated", np.savez),
]


def damage_npz(data: bytes, how: str) -> bytes:
    """Damage an .npz the ways a bad disk or a bad copy does, each giving a different exception."""
    damaged = bytearray(data)
    central = data.index(b"PK\x01\x02")  # first central-directory entry
    if how == "encrypted-flag":
        damaged[central + 8] |= 0x01
    elif how == "unknown-compression":
        damaged[central + 10] = 99
    elif how == "npy-header":  # a stored member: the .npy header is plain text
        start = data.index(b"{'descr'")
        damaged[data.index(b"}", start)] = ord("(")
    elif how == "deflate-stream":  # a compressed member: its first deflate block type
        name_len, extra_len = struct.unpack("<HH", data[26:30])
        damaged[30 + name_len + extra_len] |= 0x06
    elif how == "truncated":
        del damaged[len(data) // 2 :]
    else:
        raise ValueError(how)
    return bytes(damaged)
