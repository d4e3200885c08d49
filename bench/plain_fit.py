"""The tutorials' training script: the same model and data, ``model.fit``, no tracking.

``python bench/plain_fit.py PARAMS DATA_DIR EPOCHS`` fits exactly EPOCHS epochs
with validation data (as the train stage does each epoch) and saves nothing. It
imports nothing from the project, on purpose: it is the script a tutorial reader writes,
shapes and all, which the train stage is measured against.
"""

from __future__ import annotations

import sys
import time

started = time.perf_counter()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402


def main() -> None:
    params_path, data_dir, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    train = yaml.safe_load(open(params_path))["train"]
    with np.load(f"{data_dir}/train.npz") as split:
        x_train, y_train = split["x"].astype("float32"), split["y"]
    with np.load(f"{data_dir}/val.npz") as split:
        x_val, y_val = split["x"].astype("float32"), split["y"]
    keras.utils.set_random_seed(train["seed"])
    tf.config.experimental.enable_op_determinism()
    layers = [keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()]
    for units in train["hidden_units"]:
        layers += [
            keras.layers.Dense(units, activation=train["activation"]),
            keras.layers.Dropout(train["dropout"]),
        ]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(train["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    fit_started = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=train["batch_size"],
        epochs=epochs,
        validation_data=(x_val, y_val),
        verbose=2,
    )
    print(
        f"plain_fit: fit {time.perf_counter() - fit_started:.1f} s, "
        f"total {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
