"""Turn image files and .npy arrays into the model's input: MNIST-form 28x28 pixels.

An image of a digit (any size, any Pillow mode) is made to look like an MNIST digit the
way LeCun et al. made MNIST: grayscale, white ink on black, cropped to the ink, scaled so
the longer side is 20 px, and placed in a 28x28 field with its centre of mass at the centre.
A .npy file is taken to be MNIST-form already and is only validated.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from digits_predict.arrays import as_image_batch, check_images_shape, check_pixel_dtype
from digits_predict.contract import IMAGE_SHAPE
from digits_predict.errors import InputError

__all__ = [
    "DIGIT_BOX",
    "MAX_IMAGE_PIXELS",
    "MIN_CONTRAST",
    "LoadedInput",
    "load_array",
    "load_image",
    "load_input",
    "to_mnist_form",
]

# Larger images are refused before their pixels are decoded (a decompression-bomb guard that
# is stricter than Pillow's own 89-megapixel warning); 50 MP is beyond any camera photo of a
# digit that is worth classifying.
MAX_IMAGE_PIXELS = 50_000_000
# MNIST digits fill a 20x20 box inside the 28x28 field.
DIGIT_BOX = 20
# Images are reduced to at most this many pixels per side before the float work: enough to
# keep a digit that fills a tenth of the frame, small enough to keep memory flat.
_WORKING_SIZE = 1024
# The least difference between the darkest and brightest pixel (on a 0..255 scale) that can
# still be a digit rather than a blank page with a little noise.
MIN_CONTRAST = 16.0
# The background noise floor is estimated from the border; capping it keeps a digit that
# runs into the border from being mistaken for noise.
_MAX_NOISE_FLOOR = 0.5
# In a noisy picture, the ink strength (0..1) a pixel needs to count towards the digit's
# bounding box: well above what survives the noise floor, well below a pen stroke.
_SIGNIFICANT_INK = 0.25
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_NPY_MAGIC = b"\x93NUMPY"
_IMAGE_FORMATS = "an image file (PNG, JPEG, BMP, GIF, TIFF, WebP, ...) or a .npy array"


@dataclass(frozen=True)
class LoadedInput:
    """The images found in one input file: ``names[i]`` names ``images[i]``.

    ``images`` is float32 (N, 28, 28) in 0..255. An image file or a (28, 28) .npy yields one
    image named after the file; a (N, 28, 28) .npy yields N, named ``file.npy[i]``.
    """

    names: tuple[str, ...]
    images: np.ndarray


def load_input(path: str | os.PathLike[str]) -> LoadedInput:
    """Load an image file or a .npy file (told apart by content, not by suffix)."""
    path = Path(path)
    _check_readable_file(path)
    if _is_npy(path):
        array = load_array(path)
        if array.ndim == 2:
            return LoadedInput(names=(str(path),), images=array[np.newaxis])
        names = tuple(f"{path}[{index}]" for index in range(len(array)))
        return LoadedInput(names=names, images=array)
    return LoadedInput(names=(str(path),), images=load_image(path)[np.newaxis])


def load_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a .npy of MNIST-form pixels: (28, 28) or (N, 28, 28), finite, within 0..255.

    The header is checked before any data is read, so a header that claims a vast shape, a
    pickled object array or a truncated file is refused without allocating its claimed size.
    Returns float32 with the stored shape.
    """
    path = Path(path)
    _check_readable_file(path)
    with path.open("rb") as file:
        shape, dtype = _read_npy_header(file)
        check_pixel_dtype(dtype)
        check_images_shape(shape)
        data_start = file.tell()
    data_bytes = math.prod(shape) * dtype.itemsize
    stored_bytes = path.stat().st_size - data_start
    if stored_bytes < data_bytes:
        raise InputError(
            f".npy header promises {data_bytes} bytes of {dtype} {shape} data but the file "
            f"holds {stored_bytes}; expected a complete file written by numpy.save"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot read the .npy data ({_first_line(err)})") from None
    batch = as_image_batch(array)
    return batch[0] if array.ndim == 2 else batch


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an image file of a digit as MNIST-form float32 (28, 28) pixels in 0..255."""
    path = Path(path)
    _check_readable_file(path)
    return to_mnist_form(_grayscale_pixels(path))


def to_mnist_form(gray: np.ndarray) -> np.ndarray:
    """Make a 2-D grayscale picture of a digit (values 0..255) look like an MNIST digit.

    Decides the polarity from the border (a bright border means dark ink, which is
    inverted), removes the background level and the border's noise, crops to the ink,
    scales the longer side to 20 px and centres the centre of mass in a 28x28 field.
    Returns float32 (28, 28) in 0..255; raises ``InputError`` for a blank picture.
    """
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2 or gray.size == 0:
        raise InputError(f"picture has shape {gray.shape}; expected a 2-D grayscale picture")
    if not np.all(np.isfinite(gray)):
        raise InputError("picture holds NaN or infinite pixel values; expected finite 0..255")
    lowest, highest = float(gray.min()), float(gray.max())
    if highest - lowest < MIN_CONTRAST:
        raise InputError(
            f"image is blank: its pixels span only {highest - lowest:.0f} of 255 levels; "
            f"expected a digit standing out from its background by at least {MIN_CONTRAST:.0f}"
        )
    ink, noise_floor = _ink_strength((gray - lowest) / (highest - lowest))
    # In a clean picture every non-zero pixel is ink, so MNIST-form input keeps its exact
    # extent; in a noisy one, specks that rose above the noise floor must not stretch the box.
    significant = ink > (_SIGNIFICANT_INK if noise_floor > 0.0 else 0.0)
    rows = np.flatnonzero(significant.any(axis=1))
    columns = np.flatnonzero(significant.any(axis=0))
    if rows.size == 0:
        raise InputError(
            "image is blank: nothing stands out from the background noise; expected a digit"
        )
    digit = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    return (_centre_by_mass(_scale_to_box(digit)) * 255.0).astype(np.float32)


def _ink_strength(normalized: np.ndarray) -> tuple[np.ndarray, float]:
    """From 0..1 intensities, the ink as 0..1 on a 0 background (white on black).

    Also returns the noise floor that was removed (0 for a clean picture).
    """
    border = _border(normalized)
    # The border is mostly background, whatever the digit touches: a bright border means a
    # dark digit on a light page, which MNIST shows inverted.
    if np.median(border) > 0.5:
        normalized = 1.0 - normalized
        border = 1.0 - border
    background = float(np.median(border))
    ink = np.clip((normalized - background) / (1.0 - background), 0.0, 1.0)
    border_ink = np.clip((border - background) / (1.0 - background), 0.0, 1.0)
    # JPEG artefacts, paper texture and uneven light leave faint "ink" everywhere; anything
    # no stronger than most of the border is background. A clean image has a zero floor and
    # passes through unchanged, so MNIST-form input stays as it was.
    noise_floor = min(float(np.percentile(border_ink, 95)), _MAX_NOISE_FLOOR)
    if noise_floor > 0.0:
        ink = np.clip((ink - noise_floor) / (1.0 - noise_floor), 0.0, 1.0)
    return ink, noise_floor


def _border(pixels: np.ndarray) -> np.ndarray:
    """The outermost row and column of pixels on every side (all pixels of a thin image)."""
    if min(pixels.shape) <= 2:
        return pixels.ravel()
    return np.concatenate([pixels[0, :], pixels[-1, :], pixels[1:-1, 0], pixels[1:-1, -1]])


def _scale_to_box(digit: np.ndarray) -> np.ndarray:
    """Resize so the longer side is DIGIT_BOX pixels, keeping the aspect ratio."""
    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return digit
    # Lanczos averages properly when shrinking and stays sharp when enlarging; its slight
    # over- and undershoot is clipped away.
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place the digit in the 28x28 field with its centre of mass at pixel (14, 14).

    (14, 14) is where MNIST's centres of mass sit on average. The shift is whole pixels,
    as in MNIST, and is limited so that no ink is pushed out of the field.
    """
    field = np.zeros(IMAGE_SHAPE, dtype=np.float64)
    height, width = digit.shape
    mass = digit.sum()
    if mass <= 0.0:  # only conceivable for a faint speck that resampling smoothed away
        raise InputError("image is blank after scaling; expected a digit")
    centre_row = (digit.sum(axis=1) @ np.arange(height)) / mass
    centre_column = (digit.sum(axis=0) @ np.arange(width)) / mass
    top = _placement(IMAGE_SHAPE[0] // 2 - centre_row, IMAGE_SHAPE[0] - height)
    left = _placement(IMAGE_SHAPE[1] // 2 - centre_column, IMAGE_SHAPE[1] - width)
    field[top : top + height, left : left + width] = digit
    return field


def _placement(offset: float, largest: int) -> int:
    return min(max(round(offset), 0), largest)


def _grayscale_pixels(path: Path) -> np.ndarray:
    """Decode an image file into 2-D grayscale float64 pixels on a 0..255 scale."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about damage it works around (e.g. "Corrupt EXIF data"); the pixels
            # are what matter, and a warning would break the one-line-per-input promise.
            warnings.simplefilter("ignore")
            # Pillow only warns between 89 and 179 megapixels; an error stops it decoding.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise InputError(_too_large(width, height))
                image, white = _in_workable_mode(ImageOps.exif_transpose(image))
                return _as_gray_array(_reduced(image), white)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"image is too large to decode safely; expected at most "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        ) from None
    except Image.UnidentifiedImageError:
        raise InputError(f"not a recognised image format; expected {_IMAGE_FORMATS}") from None
    # A decoder fed arbitrary bytes can fail in any way (OSError for a truncated file,
    # SyntaxError, struct.error, ValueError, IndexError, MemoryError, ...): each is a bad
    # file, not a bug here, and the user needs one line, not a traceback.
    except Exception as err:
        raise InputError(
            f"cannot decode the image ({type(err).__name__}: {_first_line(err)}); "
            f"expected {_IMAGE_FORMATS}"
        ) from None


def _in_workable_mode(image: Image.Image) -> tuple[Image.Image, float | None]:
    """Convert to L, RGBA (when there is transparency), I or F; also say what value is white.

    White is None for 32-bit I and F images, whose range only their data can tell.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        # reduce() cannot handle I;16, and I holds the same values.
        return image.convert("I"), 65535.0
    if mode in ("I", "F"):
        return image, None
    if mode == "L":
        return image, 255.0
    has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
    target = "RGBA" if has_alpha else "L"
    try:
        return image.convert(target), 255.0
    except ValueError:
        # Exotic modes lack some direct conversions (La only reaches LA, LAB only RGB/RGBA).
        via = "LA" if mode == "La" else "RGBA"
        return image.convert(via).convert(target), 255.0


def _reduced(image: Image.Image) -> Image.Image:
    factor = math.ceil(max(image.size) / _WORKING_SIZE)
    # reduce() averages factor x factor blocks: cheap, and enough since the digit ends up
    # 20 px tall anyway.
    return image.reduce(factor) if factor > 1 else image


def _as_gray_array(image: Image.Image, white: float | None) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode == "RGBA":
        return _flatten_alpha(pixels)
    if white is None:
        white = _white_level(image.mode, float(np.nanmax(pixels, initial=0.0)))
    return np.clip(pixels * (255.0 / white), 0.0, 255.0)


def _white_level(mode: str, brightest: float) -> float:
    """Guess the white level of a 32-bit image from its brightest pixel.

    A float image that stays within 0..1 uses 1.0 as white (the usual float convention);
    an integer image is 16-bit data (what older Pillow made of 16-bit PNGs) unless it never
    exceeds 255. Anything else is read on the 0..255 scale.
    """
    if mode == "F" and brightest <= 1.0:
        return 1.0
    if mode == "I" and brightest > 255.0:
        return 65535.0
    return 255.0


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Composite onto the background that contrasts with the opaque (drawn) pixels.

    A fixed white background would erase white ink on a transparent canvas, and a black
    one dark ink; choosing by the drawn pixels' brightness keeps the digit visible.
    """
    # ITU-R 601-2 luma, as Pillow's convert("L") uses.
    luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    opacity = rgba[..., 3] / 255.0
    total_opacity = opacity.sum()
    if total_opacity == 0.0:
        raise InputError("image is fully transparent; expected a visible digit")
    drawn_brightness = float((luma * opacity).sum() / total_opacity)
    background = 255.0 if drawn_brightness < 127.5 else 0.0
    return luma * opacity + background * (1.0 - opacity)


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"no such file; expected {_IMAGE_FORMATS}")
    if not path.is_file():
        raise InputError(f"not a regular file; expected {_IMAGE_FORMATS}")
    if path.stat().st_size == 0:
        raise InputError(f"file is empty (0 bytes); expected {_IMAGE_FORMATS}")
    if not os.access(path, os.R_OK):
        raise InputError("file is not readable (permission denied)")


def _is_npy(path: Path) -> bool:
    if path.suffix.lower() == ".npy":
        return True
    with path.open("rb") as file:
        return file.read(len(_NPY_MAGIC)) == _NPY_MAGIC


def _read_npy_header(file: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Read the .npy magic and header: (shape, dtype), or raise ``InputError``."""
    try:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, _fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            # Version 3 exists only for structured dtypes with non-ASCII field names,
            # which are not pixels anyway.
            raise InputError(
                f".npy format version {version[0]}.{version[1]} is not supported; "
                "expected a plain numeric array written by numpy.save"
            )
    except InputError:
        raise
    # numpy parses the header of arbitrary bytes with ast and tokenize, which fail with
    # ValueError, SyntaxError, tokenize.TokenError, ...: all mean "not a .npy file".
    except Exception as err:
        raise InputError(
            f"not a valid .npy file ({_first_line(err)}); expected a numeric array "
            "written by numpy.save"
        ) from None
    return tuple(shape), dtype


def _too_large(width: int, height: int) -> str:
    return (
        f"image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
        f"expected at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
    )


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
