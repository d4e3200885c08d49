"""Validate pixel arrays against the model's input contract and bring them to its form."""

from __future__ import annotations

import numpy as np

from digits_predict.contract import IMAGE_SHAPE, VALUE_RANGE
from digits_predict.errors import InputError

_EXPECTED = (
    f"expected a real numeric array of shape {IMAGE_SHAPE} or (N, {IMAGE_SHAPE[0]}, "
    f"{IMAGE_SHAPE[1]}) with finite pixel values {VALUE_RANGE[0]}..{VALUE_RANGE[1]}"
)
_LOW, _HIGH = VALUE_RANGE
# An image whose brightest pixel is at most this was most likely divided by 255 (or is
# blank): the model, which rescales internally, would answer it with near-uniform garbage.
PRESCALED_MAX = 1.0


def check_pixel_dtype(dtype: np.dtype) -> None:
    """Raise ``InputError`` unless ``dtype`` holds real numbers (int, uint or float)."""
    if dtype.hasobject:
        raise InputError(
            f"array holds Python objects (dtype {dtype}), which are refused because reading "
            f"them means unpickling; {_EXPECTED}"
        )
    # bool is not a pixel value, complex has no order, strings and records are no numbers.
    if dtype.kind not in "iuf":
        raise InputError(f"array has dtype {dtype}, which is not real pixel values; {_EXPECTED}")


def check_images_shape(shape: tuple[int, ...]) -> None:
    """Raise ``InputError`` unless ``shape`` is one image or a non-empty batch of images."""
    if shape[-2:] != IMAGE_SHAPE or len(shape) not in (2, 3):
        raise InputError(f"array has shape {shape}; {_EXPECTED}")
    if len(shape) == 3 and shape[0] < 1:
        raise InputError(f"array holds no images (shape {shape}); {_EXPECTED}")


def as_image_batch(images: object) -> np.ndarray:
    """Return ``images`` as a C-contiguous float32 (N, 28, 28) batch, or raise ``InputError``.

    A single (28, 28) image becomes a batch of one. float32 C-contiguous input is not copied.
    """
    if isinstance(images, np.ndarray):
        array = images
    else:
        try:
            array = np.asarray(images)
        except (ValueError, TypeError) as err:  # ragged nested lists and the like
            raise InputError(f"cannot read as an array ({err}); {_EXPECTED}") from None
    check_pixel_dtype(array.dtype)
    check_images_shape(array.shape)
    if array.ndim == 2:
        array = array[np.newaxis]
    # uint8 cannot leave 0..255, so the lower bound is skipped for the most common pixel type.
    if array.dtype != np.uint8:
        lowest, highest = array.min(), array.max()
        # NaN fails both comparisons, and infinities fail one, so this one test lets only
        # finite in-range arrays through; the slower diagnosis runs only on failure.
        if not (lowest >= _LOW and highest <= _HIGH):
            raise InputError(_describe_bad_values(array))
    brightest = array.max(axis=(1, 2))
    if np.any(brightest <= PRESCALED_MAX):
        raise InputError(_describe_prescaled(brightest))
    return np.ascontiguousarray(array, dtype=np.float32)


def _describe_prescaled(brightest: np.ndarray) -> str:
    dim = np.flatnonzero(brightest <= PRESCALED_MAX)
    which = ", ".join(str(i) for i in dim[:5]) + (
        f" and {len(dim) - 5} more" if len(dim) > 5 else ""
    )
    return (
        f"image(s) {which} of {len(brightest)} have no pixel above {PRESCALED_MAX:g}: scaled to "
        f"0..1 (divided by 255) or blank; expected raw pixel values {_LOW}..{_HIGH}, white "
        "digit on black (the model rescales internally)"
    )


def _describe_bad_values(array: np.ndarray) -> str:
    if array.dtype.kind == "f":
        non_finite = int(np.count_nonzero(~np.isfinite(array)))
        if non_finite:
            return f"array holds {non_finite} NaN or infinite value(s); {_EXPECTED}"
    return f"array values span {array.min()}..{array.max()}, outside {_LOW}..{_HIGH}; {_EXPECTED}"
