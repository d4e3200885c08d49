"""model.build: the architecture params.yaml describes, with the contract's named tensors."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from factories.params import train_params
from kernel.params import Activation

# --- build_model ---------------------------------------------------------------------------------


def test_build_model_contract() -> None:
    import keras

    from stages.model.build import build_model

    model = build_model(train_params())
    assert [tensor.name for tensor in model.inputs] == ["image"]
    assert model.input_shape == (None, 28, 28)
    assert model.output_names == ["probabilities"]
    assert model.layers[-1].name == "probabilities"
    assert model.output_shape == (None, 10)

    rescaling = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    assert len(rescaling) == 1
    scaled = keras.Model(model.input, rescaling[0].output)
    raw = np.stack([np.zeros((28, 28)), np.full((28, 28), 255.0)]).astype(np.float32)
    scaled_values = np.asarray(scaled(raw))
    assert scaled_values.min() == 0.0
    assert scaled_values.max() == pytest.approx(1.0)

    probabilities = model.predict(raw, verbose=0)
    assert probabilities.shape == (2, 10)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def _layers_of(model, kind) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_build_model_cnn() -> None:
    import keras

    from stages.model.build import build_model

    model = build_model(train_params(architecture="cnn", conv_filters=(4, 8), hidden_units=(8,)))
    assert model.name == "mnist_cnn"
    filters = [layer.filters for layer in _layers_of(model, keras.layers.Conv2D)]
    assert list(dict.fromkeys(filters)) == [4, 8]  # one block per entry, in order
    assert len(_layers_of(model, keras.layers.MaxPooling2D)) == 2
    assert model.output_shape == (None, 10)
    assert model.predict(np.zeros((1, 28, 28), np.float32), verbose=0).shape == (1, 10)


def test_build_model_batch_norm_and_dropout() -> None:
    import keras

    from stages.model.build import build_model

    model = build_model(train_params(batch_norm=True, dropout=0.25, hidden_units=(16, 8)))
    assert len(_layers_of(model, keras.layers.BatchNormalization)) == 2
    assert [layer.rate for layer in _layers_of(model, keras.layers.Dropout)] == [0.25, 0.25]
    hidden = [model.get_layer(f"dense_{index}") for index in (0, 1)]
    assert [layer.units for layer in hidden] == [16, 8]
    assert not any(layer.use_bias for layer in hidden)  # batch norm has the offset
    without = build_model(train_params(batch_norm=False, dropout=0.0))
    assert not _layers_of(without, keras.layers.BatchNormalization)
    assert not _layers_of(without, keras.layers.Dropout)
    assert without.get_layer("dense_0").use_bias


def test_augment_shift_moves_training_images_only() -> None:
    import keras

    from stages.model.build import build_model

    model = build_model(train_params(augment_shift=0.2, seed=1))
    assert any(isinstance(layer, keras.layers.RandomTranslation) for layer in model.layers)
    images = np.zeros((4, 28, 28), np.float32)
    images[:, 10:18, 10:18] = 255.0
    shift = model.get_layer("augment_shift")
    scaled = images[..., None] / 255.0
    moved = np.asarray(shift(scaled, training=True))
    assert not np.array_equal(moved, scaled), "training must see shifted images"
    assert np.array_equal(np.asarray(shift(scaled, training=False)), scaled)
    first = model.predict(images, verbose=0)
    assert np.array_equal(first, model.predict(images, verbose=0)), "inference is not random"


def test_build_model_optimizers() -> None:
    import keras

    from stages.model.build import build_model

    sgd = build_model(train_params(optimizer="sgd", learning_rate=0.05, momentum=0.9)).optimizer
    assert isinstance(sgd, keras.optimizers.SGD)
    assert float(sgd.learning_rate) == pytest.approx(0.05)
    assert float(sgd.momentum) == pytest.approx(0.9)
    adam = build_model(train_params(optimizer="adam", learning_rate=0.002)).optimizer
    assert isinstance(adam, keras.optimizers.Adam)
    assert float(adam.learning_rate) == pytest.approx(0.002)


@pytest.mark.parametrize("activation", typing.get_args(Activation))
def test_build_model_each_activation(activation: str) -> None:
    import keras

    from stages.model.build import build_model

    model = build_model(train_params(activation=activation))
    layer = model.get_layer(f"{activation}_0")
    assert layer.activation is keras.activations.get(activation)
    assert np.isfinite(model.predict(np.full((1, 28, 28), 255.0, np.float32), verbose=0)).all()


# --- the optional training params (augmentations, smoothing, schedules, AdamW, EMA, pooling) ----


def _square(count: int = 4) -> np.ndarray:
    images = np.zeros((count, 28, 28, 1), np.float32)
    images[:, 8:20, 12:16] = 1.0  # a bar, scaled 0..1 as the layers see it
    return images


@pytest.mark.parametrize(
    ("param", "value", "layer"),
    [("augment_rotation", 15.0, "augment_rotation"), ("augment_zoom", 0.15, "augment_zoom")],
)
def test_each_augmentation_changes_training_images_only_keeps_shape_and_repeats_by_seed(
    param: str, value: float, layer: str
) -> None:
    from stages.model.build import build_model

    def augmented(seed: int) -> np.ndarray:
        model = build_model(train_params(**{param: value}, seed=seed))
        return np.asarray(model.get_layer(layer)(_square(), training=True))

    first, again, other = augmented(1), augmented(1), augmented(2)
    assert first.shape == _square().shape, "the image's shape is kept"
    assert not np.array_equal(first, _square()), "training sees changed images"
    assert np.array_equal(first, again), "the same seed, the same changes"
    assert not np.array_equal(first, other), "another seed, other changes"
    model = build_model(train_params(**{param: value}, seed=1))
    assert np.array_equal(np.asarray(model.get_layer(layer)(_square(), training=False)), _square())
    # labels are never touched: the layers sit inside the model, between image and network
    assert model.get_layer(layer).input.shape[1:] == (28, 28, 1)


def test_the_augmentations_follow_each_other_only_when_asked() -> None:
    from stages.model.build import build_model

    names = [layer.name for layer in build_model(train_params(
        augment_rotation=10.0, augment_zoom=0.1, augment_shift=0.1)).layers]  # fmt: skip
    order = ["augment_rotation", "augment_zoom", "augment_shift"]
    assert [n for n in names if n in order] == order
    plain = [layer.name for layer in build_model(train_params()).layers]
    assert not [n for n in plain if n.startswith("augment")]


def test_label_smoothing_spreads_the_targets() -> None:
    import keras

    from stages.model.build import build_model

    loss = build_model(train_params(label_smoothing=0.1)).loss
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    one_hot = np.eye(10, dtype=np.float32)[[3]]
    sure = np.eye(10, dtype=np.float32)[[3]] * 0.999 + 0.0001
    assert float(loss(one_hot, sure)) > float(keras.losses.CategoricalCrossentropy()(one_hot, sure))


@pytest.mark.parametrize("schedule", ["cosine", "one_cycle"])
def test_the_schedules_rise_and_fall_over_the_fit(schedule: str) -> None:
    from stages.model.build import build_model

    params = train_params(lr_schedule=schedule, learning_rate=0.01, reduce_lr_patience=0)
    steps = params.epochs * 100
    schedule_of = build_model(params, steps_per_epoch=100).optimizer._learning_rate
    at = [float(schedule_of(step)) for step in (0, int(0.3 * steps), steps)]
    assert at[-1] == pytest.approx(0.0, abs=1e-6), "ends near 0"
    if schedule == "one_cycle":
        assert at[0] == pytest.approx(0.01 / 25) and at[1] == pytest.approx(0.01)
    else:
        assert at[0] == pytest.approx(0.01) and at[1] < 0.01


def test_adamw_ema_and_global_pooling() -> None:
    import keras

    from stages.model.build import build_model

    adamw = build_model(train_params(optimizer="adamw", weight_decay=0.01)).optimizer
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(0.01)
    ema = build_model(train_params(ema_momentum=0.99, early_stopping_patience=0)).optimizer
    assert ema.use_ema and ema.ema_momentum == pytest.approx(0.99)
    assert not build_model(train_params()).optimizer.use_ema
    cnn = build_model(train_params(architecture="cnn", conv_filters=[4], global_pooling=True))
    assert cnn.get_layer("global_pooling").output.shape[1:] == (4,)
