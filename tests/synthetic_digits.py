"""Small MNIST-like data sets made on the spot: digits 0..9 rendered with Pillow's font.

They look like MNIST (white digit on black, 28x28 uint8) so a tiny model learns
them in seconds and the predictor's image path can be checked against Keras.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def render_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (labels cycling through 0..9) with random size, shift and stroke."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    rng.shuffle(labels)
    fonts = {size: ImageFont.load_default(size=size) for size in (18, 20, 22, 24)}
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        canvas = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(canvas).text(
            (14 + int(rng.integers(-2, 3)), 14 + int(rng.integers(-2, 3))), str(label),
            fill=int(rng.integers(200, 256)), anchor="mm",
            font=fonts[int(rng.choice(list(fonts)))], stroke_width=int(rng.integers(0, 2)),
            stroke_fill=255)
        noise = rng.integers(0, 30, size=(28, 28))
        images[index] = np.clip(np.asarray(canvas, dtype=np.int64) + noise * (noise > 25), 0, 255)
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                    *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """The four files of LeCun's layout, gzip-compressed."""
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in names.items():
        (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(arrays[key]), mtime=0))


def synthetic_mnist(train: int = 600, test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    x_train, y_train = render_digits(train, seed)
    x_test, y_test = render_digits(test, seed + 1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
