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
