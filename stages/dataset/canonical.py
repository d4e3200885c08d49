"""Canonical MNIST: the four arrays, their shapes and pinned digests, and the check.

Every source must yield exactly these bytes; ``verify_canonical`` is the gate.
Pure functions over arrays; no network, no TensorFlow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from digits_predict.contract import IMAGE_SHAPE, NUM_CLASSES
from kernel.cli import CommandError

__all__ = [
    "ARRAY_NAMES",
    "DIGESTS",
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "SHAPES",
    "Mnist",
    "array_digest",
    "dataset_digest",
    "sha256_hex",
    "verify_canonical",
]

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
SHAPES = {
    "x_train": (60000, *IMAGE_SHAPE),
    "y_train": (60000,),
    "x_test": (10000, *IMAGE_SHAPE),
    "y_test": (10000,),
}
# sha256 of each array's C-order uint8 bytes: the same whichever source served them.
DIGESTS = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


@dataclass(frozen=True)
class Mnist:
    """The four arrays of MNIST, uint8, C-contiguous."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_NAMES}


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def array_digest(array: np.ndarray) -> str:
    return sha256_hex(memoryview(np.ascontiguousarray(array)).cast("B"))


def dataset_digest(arrays: dict[str, np.ndarray]) -> str:
    """One digest for a set of arrays: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        if array.size:  # an empty array's view cannot be cast to bytes; it has none to add
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def verify_canonical(
    arrays: dict[str, np.ndarray], digests: Mapping[str, str] | None = None
) -> Mnist:
    """Check names, shapes, dtype and the pinned digest of each array."""
    digests = DIGESTS if digests is None else digests
    missing = [name for name in ARRAY_NAMES if name not in arrays]
    if missing:
        raise CommandError(
            f"missing array(s) {', '.join(missing)}; expected {', '.join(ARRAY_NAMES)}"
        )
    checked = {}
    for name in ARRAY_NAMES:
        array = np.ascontiguousarray(arrays[name])
        if array.shape != SHAPES[name] or array.dtype != np.uint8:
            raise CommandError(
                f"{name} is {array.dtype}{list(array.shape)}; expected uint8{list(SHAPES[name])}"
            )
        actual = array_digest(array)
        if actual != digests[name]:
            raise CommandError(
                f"{name} checksum mismatch: sha256 {actual[:16]}…, expected {digests[name][:16]}…"
            )
        checked[name] = array
    return Mnist(**checked)
