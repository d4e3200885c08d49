"""Elastic distortion of training digits (Simard, Steinkraus and Platt, 2003), as a Keras layer.

Each image gets its own smooth random displacement field: uniform noise in [-1, 1] per
pixel and direction, blurred by a Gaussian of ``sigma`` pixels and scaled by ``alpha``
pixels; the image is resampled there (bilinear, zero outside the frame). Everything is
batched TensorFlow ops (a separable blur, one flat gather per corner), so it costs the fit
little: about 2 ms a batch of 128 on 2 cores. Keras's own ``RandomElasticTransform`` is
not used: it draws the same noise for both directions (the field only moves pixels along
the diagonal), one strength for a whole batch, and loops over the batch in Python, which
needs a known batch size.

Like Keras's random layers it acts only in training; the saved and exported model sees
the image as given. The class is registered, so a ``.keras`` file that has it loads in
safe mode once this module is imported (``keras_io`` does).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

# Simard et al.'s smoothing for 28 x 28 digits
DEFAULT_SIGMA = 4.0


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian, 3 sigma either side."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


@keras.saving.register_keras_serializable(package="digits")
class ElasticDistortion(keras.layers.Layer):
    """(N, H, W) images → the same images, elastically distorted in training only."""

    def __init__(
        self, alpha: float, sigma: float = DEFAULT_SIGMA, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.sigma = float(sigma)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training or self.alpha == 0:
            return images
        import tensorflow as tf

        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        noise = keras.random.uniform(
            (batch, height, width, 2), -1.0, 1.0, dtype=images.dtype, seed=self.generator
        )
        field = self.alpha * self._blurred(noise)
        rows = tf.cast(tf.range(height), images.dtype)[None, :, None] + field[..., 0]
        cols = tf.cast(tf.range(width), images.dtype)[None, None, :] + field[..., 1]
        return _bilinear(images, rows, cols)

    def _blurred(self, noise: Any) -> Any:
        """Each of the field's two channels blurred by the Gaussian, rows then columns."""
        import tensorflow as tf

        kernel = tf.constant(gaussian_kernel(self.sigma), dtype=noise.dtype)
        size = kernel.shape[0]
        along_rows = tf.tile(tf.reshape(kernel, (size, 1, 1, 1)), (1, 1, 2, 1))
        along_cols = tf.tile(tf.reshape(kernel, (1, size, 1, 1)), (1, 1, 2, 1))
        noise = tf.nn.depthwise_conv2d(noise, along_rows, (1, 1, 1, 1), "SAME")
        return tf.nn.depthwise_conv2d(noise, along_cols, (1, 1, 1, 1), "SAME")

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "seed": self.seed}


def _bilinear(images: Any, rows: Any, cols: Any) -> Any:
    """``images`` (N, H, W) read at the fractional ``rows`` and ``cols`` (N, H, W) each,
    bilinearly; outside the frame reads 0.

    The images get a border of zeros and are read as one flat vector, so each corner is one
    gather of precomputed indices (2.5 x faster than a masked ``gather_nd`` per corner)."""
    import tensorflow as tf

    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    flat = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1]]), [-1])
    # in the bordered frame, clipped so that a far-off point reads the border's zeros
    rows = tf.clip_by_value(rows + 1, 0, tf.cast(height + 1, rows.dtype))
    cols = tf.clip_by_value(cols + 1, 0, tf.cast(width + 1, cols.dtype))
    top = tf.minimum(tf.cast(tf.floor(rows), tf.int32), height)
    left = tf.minimum(tf.cast(tf.floor(cols), tf.int32), width)
    down, right = rows - tf.cast(top, rows.dtype), cols - tf.cast(left, cols.dtype)
    stride = width + 2
    at = tf.range(batch)[:, None, None] * ((height + 2) * stride) + top * stride + left
    upper_left, upper_right = tf.gather(flat, at), tf.gather(flat, at + 1)
    lower_left, lower_right = tf.gather(flat, at + stride), tf.gather(flat, at + stride + 1)
    upper = upper_left + (upper_right - upper_left) * right
    lower = lower_left + (lower_right - lower_left) * right
    return upper + (lower - upper) * down
