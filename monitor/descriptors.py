"""A digit image in a few numbers: what drifts when people's digits are not MNIST's.

People draw thicker or thinner strokes, off-centre, smaller or larger, sometimes dark on
light; each of those moves one of these descriptors, computed from the 28x28 input the
model saw (raw pixel values 0..255, MNIST polarity: white ink on black).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# a pixel is ink from half intensity on, as MNIST's anti-aliased strokes are at their core
INK_LEVEL = 128
FULL_SCALE = 255.0
# the image's centre, in pixel coordinates (rows and columns 0..27)
CENTRE = 13.5
# eight-connected pieces within one image, never across images of a batch
_ONE_IMAGE_NEIGHBOURS = np.zeros((3, 3, 3), dtype=bool)
_ONE_IMAGE_NEIGHBOURS[1] = True

DESCRIPTORS = (
    "ink_fraction",  # share of the 784 pixels that are ink
    "stroke_width",  # pixels: twice the ink's area over its outline
    "height",  # pixels: rows from the first to the last with ink
    "width",  # pixels: columns from the first to the last with ink
    "centre_dx",  # pixels: intensity's centre of mass right of the image centre
    "centre_dy",  # pixels: below the image centre
    "mean_intensity",  # 0..1: the whole image, background included (1 - it for inverted)
    "max_intensity",  # 0..1
    "strokes",  # eight-connected pieces of ink
)
# the answer's own numbers, logged beside the descriptors
ANSWER_FIELDS = ("digit", "probability", "margin")


def describe(images: np.ndarray) -> dict[str, np.ndarray]:
    """``DESCRIPTORS`` of each image of ``images`` (N x 28 x 28, values 0..255), vectorised.

    A blank image has no ink: its size, stroke width and pieces are 0 and its centre
    offsets 0.
    """
    pixels = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28)
    ink = pixels >= INK_LEVEL
    area = ink.sum(axis=(1, 2))
    rows, columns = ink.any(axis=2), ink.any(axis=1)
    # an outline pixel is ink with a non-ink four-neighbour (the frame counts as non-ink)
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    inner = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    outline = (ink & ~inner).sum(axis=(1, 2))
    mass = pixels.sum(axis=(1, 2))
    positions = np.arange(28, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre_y = (pixels.sum(axis=2) @ positions) / mass
        centre_x = (pixels.sum(axis=1) @ positions) / mass
        stroke_width = 2 * area / outline
    labels, _ = ndimage.label(ink, structure=_ONE_IMAGE_NEIGHBOURS)
    # label numbers pieces in scan order and none spans two images, so image i holds the
    # labels just above the highest of the images before it: counted without a sort
    highest = np.maximum.accumulate(labels.reshape(len(pixels), -1).max(axis=1, initial=0))
    strokes = np.diff(highest, prepend=0).astype(np.int64)
    return {
        "ink_fraction": area / (28 * 28),
        "stroke_width": np.nan_to_num(stroke_width, nan=0.0, posinf=0.0),
        "height": _extent(rows),
        "width": _extent(columns),
        "centre_dx": np.nan_to_num(centre_x - CENTRE, nan=0.0),
        "centre_dy": np.nan_to_num(centre_y - CENTRE, nan=0.0),
        "mean_intensity": pixels.mean(axis=(1, 2)) / FULL_SCALE,
        "max_intensity": pixels.max(axis=(1, 2), initial=0.0) / FULL_SCALE,
        "strokes": strokes,
    }


def answers(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """The predicted digit, its probability and its margin over the runner-up, per image."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return {
        "digit": probabilities.argmax(axis=1),
        "probability": top_two[:, 1],
        "margin": top_two[:, 1] - top_two[:, 0],
    }


def _extent(marks: np.ndarray) -> np.ndarray:
    """Per image: from the first marked row (or column) to the last, inclusive; 0 if none."""
    first = marks.argmax(axis=1)
    last = marks.shape[1] - 1 - marks[:, ::-1].argmax(axis=1)
    return np.where(marks.any(axis=1), last - first + 1, 0)
