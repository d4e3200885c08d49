"""model.elastic: Simard's elastic distortion, in fit only, repeatable by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factories.params import train_params


def _digit_like(count: int = 6) -> np.ndarray:
    """Scaled 0..1 as the layer sees them: a vertical and a horizontal bar, a ring."""
    images = np.zeros((count, 28, 28), np.float32)
    images[0::3, 6:22, 12:16] = 1.0
    images[1::3, 12:16, 6:22] = 1.0
    rows, cols = np.mgrid[:28, :28]
    images[2::3] = ((np.hypot(rows - 14, cols - 14) - 7) ** 2 < 4).astype(np.float32)
    return images


def _distorted(alpha: float, seed: int, images: np.ndarray | None = None) -> np.ndarray:
    from stages.model.elastic import ElasticDistortion

    layer = ElasticDistortion(alpha, seed=seed)
    return np.asarray(layer(_digit_like() if images is None else images, training=True))


def test_it_distorts_in_training_keeps_shape_and_range_and_repeats_by_seed() -> None:
    first, again, other = _distorted(34.0, 1), _distorted(34.0, 1), _distorted(34.0, 2)
    assert first.shape == _digit_like().shape
    assert first.min() >= 0.0 and first.max() <= 1.0 + 1e-6, "bilinear reads stay in range"
    assert not np.array_equal(first, _digit_like()), "training sees distorted images"
    assert np.array_equal(first, again), "the same seed, the same distortions"
    assert not np.array_equal(first, other), "another seed, other distortions"


def test_each_image_gets_its_own_field_and_both_directions_move() -> None:
    same = np.repeat(_digit_like()[2:3], 4, axis=0)  # four copies of the ring
    out = _distorted(34.0, 3, same)
    assert not np.array_equal(out[0], out[1]), "one field per image, not per batch"
    # a vertical bar changes only if columns move, a horizontal one only if rows move: the
    # two directions have their own noise (Keras's RandomElasticTransform shares it)
    bars = np.repeat(_digit_like()[:2], 8, axis=0)
    moved = np.abs(_distorted(34.0, 4, bars) - bars)
    assert moved[0::2].mean() > 0.01 and moved[1::2].mean() > 0.01


def test_the_field_is_smooth_so_a_digit_keeps_its_ink_and_place() -> None:
    images = _digit_like(30)
    out = _distorted(34.0, 5, images)
    ink_before, ink_after = images.sum(axis=(1, 2)), out.sum(axis=(1, 2))
    assert np.all(np.abs(ink_after / ink_before - 1) < 0.5), "strokes bend, they do not vanish"
    rows = np.arange(28)[None, :, None]
    centre_before = (images * rows).sum(axis=(1, 2)) / ink_before
    centre_after = (out * rows).sum(axis=(1, 2)) / ink_after
    assert np.all(np.abs(centre_after - centre_before) < 6), "displacements of a few pixels"
    # a stronger field moves more
    weaker = np.abs(_distorted(8.0, 5, images) - images).mean()
    assert weaker < np.abs(out - images).mean()


def test_inference_and_zero_strength_leave_the_image_as_given() -> None:
    from stages.model.elastic import ElasticDistortion

    images = _digit_like()
    assert np.array_equal(
        np.asarray(ElasticDistortion(34.0, seed=1)(images, training=False)), images
    )
    assert np.array_equal(np.asarray(ElasticDistortion(0.0, seed=1)(images, training=True)), images)


def test_gaussian_kernel_is_normalised_and_symmetric() -> None:
    from stages.model.elastic import gaussian_kernel

    kernel = gaussian_kernel(4.0)
    assert kernel.shape == (25,)  # 3 sigma either side
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(kernel, kernel[::-1]) and kernel.argmax() == 12


def test_the_model_has_it_first_only_when_asked_and_labels_never_pass_through_it() -> None:
    from stages.model.build import build_model

    model = build_model(train_params(augment_elastic=34.0, augment_shift=0.1, seed=1))
    names = [layer.name for layer in model.layers if layer.name.startswith("augment_")]
    assert names[:2] == ["augment_elastic", "augment_channels"]
    assert model.get_layer("augment_elastic").input.shape[1:] == (28, 28)
    plain = build_model(train_params())
    assert "augment_elastic" not in [layer.name for layer in plain.layers]
    images = _digit_like() * 255
    assert np.array_equal(model.predict(images, verbose=0), model.predict(images, verbose=0))


def test_a_saved_model_with_it_loads_in_safe_mode_and_answers_the_same(tmp_path: Path) -> None:
    from stages.model.build import build_model
    from stages.model.keras_io import load_keras_model, save_keras_model

    model = build_model(train_params(augment_elastic=20.0, seed=1))
    save_keras_model(model, tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    assert loaded.get_layer("augment_elastic").get_config()["alpha"] == 20.0
    images = _digit_like() * 255
    assert np.array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


def test_the_exported_onnx_graph_has_no_trace_of_it() -> None:
    from stages.handoff.onnx_convert import convert_to_onnx
    from stages.model.build import build_model

    model = build_model(train_params(augment_elastic=34.0, hidden_units=[8], seed=1))
    ops = {node.op_type for node in convert_to_onnx(model, 17).graph.node}
    assert not ops & {"GatherND", "RandomUniform", "RandomUniformLike", "Conv"}


def test_bilinear_reads_between_pixels_and_zero_outside_the_frame() -> None:
    from stages.model.elastic import _bilinear

    images = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28) / 1568
    rows = np.broadcast_to(np.arange(28, dtype=np.float32)[None, :, None], images.shape)
    cols = np.broadcast_to(np.arange(28, dtype=np.float32)[None, None, :], images.shape)

    def read(at_rows: np.ndarray, at_cols: np.ndarray) -> np.ndarray:
        return np.asarray(_bilinear(images, at_rows.astype(np.float32), at_cols.astype(np.float32)))

    assert np.allclose(read(rows, cols), images), "the identity field reads each pixel"
    moved = read(rows + 1, cols)  # one row down: the last row reads the frame's outside
    assert np.allclose(moved[:, :-1], images[:, 1:]) and not moved[:, -1].any()
    half = read(rows, cols + 0.5)
    assert np.allclose(half[:, :, :-1], (images[:, :, :-1] + images[:, :, 1:]) / 2)
    assert np.allclose(half[:, :, -1], images[:, :, -1] / 2), "half of a pixel, half of zero"
    for far in (-40.0, -1.0, 28.0, 60.0):
        assert not read(np.full_like(rows, far), cols).any(), f"row {far} is outside"
        assert not read(rows, np.full_like(cols, far)).any(), f"column {far} is outside"
