"""The classifier, built from ``TrainParams``: raw 0..255 pixels in, 10 probabilities out.

Scaling lives inside the model (a Rescaling layer), so the exported model takes
raw pixels and deployment cannot get the scaling wrong. The model is Functional
with a named input and output; the ONNX export and its contract rely on both.
"""

from __future__ import annotations

import keras

from digits_predict.contract import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME
from kernel.params import TrainParams
from stages.model.elastic import ElasticDistortion

KerasTensor = keras.KerasTensor

# Batches per call of the compiled training step. One call per batch costs the default
# MLP about a third of its fit in Python overhead on 2 cores; the batches, their order
# and the weights are the same at any value (epoch-level callbacks are untouched).
STEPS_PER_EXECUTION = 64


def _hidden_block(x: KerasTensor, units: int, params: TrainParams, index: int) -> KerasTensor:
    x = keras.layers.Dense(units, use_bias=not params.batch_norm, name=f"dense_{index}")(x)
    if params.batch_norm:
        x = keras.layers.BatchNormalization(name=f"batch_norm_{index}")(x)
    x = keras.layers.Activation(params.activation, name=f"{params.activation}_{index}")(x)
    if params.dropout > 0:
        x = keras.layers.Dropout(params.dropout, name=f"dropout_{index}")(x)
    return x


def _conv_blocks(x: KerasTensor, params: TrainParams) -> KerasTensor:
    """Per entry of ``conv_filters``: ``conv_per_block`` 3x3 convolutions, then 2x2 max-pool."""
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="channels")(x)
    for index, filters in enumerate(params.conv_filters):
        for repeat in range(params.conv_per_block):
            name = f"{index}_{repeat}"
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=not params.batch_norm, name=f"conv_{name}"
            )(x)
            if params.batch_norm:
                x = keras.layers.BatchNormalization(name=f"conv_norm_{name}")(x)
            x = keras.layers.Activation(params.activation, name=f"conv_act_{name}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{index}")(x)
    return x


def _augmented(x: KerasTensor, params: TrainParams) -> KerasTensor:
    """Elastic distortions (``elastic.py``), random rotations, zooms and shifts of the images
    (Keras's preprocessing layers), in fit only, all vectorised TensorFlow ops: the saved
    and exported model sees the image as given. Each layer is added only when its param
    asks for it, so a network without them keeps its layers and weights as before."""
    layers = []
    if params.augment_elastic > 0:
        x = ElasticDistortion(params.augment_elastic, seed=params.seed, name="augment_elastic")(x)
    if params.augment_rotation > 0:
        layers.append(keras.layers.RandomRotation(
            params.augment_rotation / 360, fill_mode="constant", seed=params.seed,
            name="augment_rotation",
        ))  # fmt: skip
    if params.augment_zoom > 0:
        layers.append(keras.layers.RandomZoom(
            params.augment_zoom, params.augment_zoom, fill_mode="constant", seed=params.seed,
            name="augment_zoom",
        ))  # fmt: skip
    if params.augment_shift > 0:
        layers.append(keras.layers.RandomTranslation(
            params.augment_shift, params.augment_shift, fill_mode="constant", seed=params.seed,
            name="augment_shift",
        ))  # fmt: skip
    if not layers:
        return x
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="augment_channels")(x)
    for layer in layers:
        x = layer(x)
    return keras.layers.Reshape(IMAGE_SHAPE, name="augment_done")(x)


def build_model(params: TrainParams, steps_per_epoch: int = 1) -> keras.Model:
    """Compiled Functional model: ``image`` (N, 28, 28) float32 0..255 → ``probabilities``.

    ``steps_per_epoch`` sizes a learning-rate schedule (``train.lr_schedule``)."""
    inputs = keras.Input(shape=IMAGE_SHAPE, dtype="float32", name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale_0_1")(inputs)
    x = _augmented(x, params)
    if params.architecture == "cnn":
        x = _conv_blocks(x, params)
    if params.global_pooling:
        x = keras.layers.GlobalAveragePooling2D(name="global_pooling")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, units in enumerate(params.hidden_units):
        x = _hidden_block(x, units, params, index)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=f"mnist_{params.architecture}")
    model.compile(
        optimizer=make_optimizer(params, steps_per_epoch * params.epochs),
        # with label smoothing the targets are one-hot (fit.py makes them so)
        loss=(
            keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)
            if params.label_smoothing > 0
            else "sparse_categorical_crossentropy"
        ),
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def learning_rate(
    params: TrainParams, total_steps: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``train.learning_rate`` as it is, or the schedule ``train.lr_schedule`` names."""
    if params.lr_schedule == "constant":
        return params.learning_rate
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(params.learning_rate, max(total_steps, 1))
    warmup = max(int(0.3 * total_steps), 1)
    return keras.optimizers.schedules.CosineDecay(
        params.learning_rate / 25,
        max(total_steps - warmup, 1),
        warmup_target=params.learning_rate,
        warmup_steps=warmup,
    )


def make_optimizer(params: TrainParams, total_steps: int = 1) -> keras.optimizers.Optimizer:
    rate = learning_rate(params, total_steps)
    # EMA only when asked: the optimizer's variables, and so the saved file, stay as before
    ema = {"use_ema": True, "ema_momentum": params.ema_momentum} if params.ema_momentum else {}
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=params.momentum, **ema)
    if params.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=params.weight_decay, **ema)
    return keras.optimizers.Adam(learning_rate=rate, **ema)
