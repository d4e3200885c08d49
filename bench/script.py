"""The script the pipeline replaces, as a tutorial reader writes it: ``make bench``'s yardstick.

``python bench/script.py PARAMS MNIST_NPZ EPOCHS OUT_DIR [--fit-only]`` loads Keras's
``mnist.npz``, holds out ``preprocess.val_size`` training images, fits the MLP of
``params.yaml`` (``model.fit`` with its defaults, validation each epoch) for exactly EPOCHS
epochs, evaluates it on the test set, saves the ``.keras`` file, converts it with tf2onnx
(``from_function``) and checks onnxruntime against Keras on every test image. No tracking,
no registry, no gate beyond an assert; ``--fit-only`` stops after the fit. It imports
nothing from the project, on purpose: it is the work a person would do by hand.
"""

from __future__ import annotations

import sys
import time

started = time.perf_counter()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
import yaml  # noqa: E402


def main() -> None:
    params_path, mnist_path, epochs, out_dir = sys.argv[1:5]
    fit_only = "--fit-only" in sys.argv[5:]
    params = yaml.safe_load(open(params_path))
    train = params["train"]
    with np.load(mnist_path) as mnist:
        x_train, y_train = mnist["x_train"].astype("float32"), mnist["y_train"]
        x_test, y_test = mnist["x_test"].astype("float32"), mnist["y_test"]
    held_out = params["preprocess"]["val_size"]
    order = np.random.default_rng(params["preprocess"]["seed"]).permutation(len(y_train))
    val, fit = order[:held_out], order[held_out:]

    model = _compiled_model(train)
    fit_started = time.perf_counter()
    model.fit(
        x_train[fit],
        y_train[fit],
        batch_size=train["batch_size"],
        epochs=int(epochs),
        validation_data=(x_train[val], y_train[val]),
        verbose=2,
    )
    fit_seconds = time.perf_counter() - fit_started
    if not fit_only:
        _evaluate_save_convert(model, x_test, y_test, out_dir)
    print(
        f"script: fit {fit_seconds:.1f} s, total {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )


def _compiled_model(train: dict) -> keras.Model:
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
    return model


def _evaluate_save_convert(
    model: keras.Model, x_test: np.ndarray, y_test: np.ndarray, out_dir: str
) -> None:
    """Evaluate, save the .keras file, convert it with tf2onnx and check parity."""
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    model.save(f"{out_dir}/model.keras")

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="image")])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=17)
    with open(f"{out_dir}/model.onnx", "wb") as handle:
        handle.write(proto.SerializeToString())
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {"image": x_test})[0]
    keras_probs = model.predict(x_test, verbose=0)
    max_diff = float(np.abs(onnx_probs - keras_probs).max())
    assert max_diff < 1e-5 and (onnx_probs.argmax(1) == keras_probs.argmax(1)).all()
    print(f"script: test accuracy {accuracy:.4f}, parity max diff {max_diff:.1e}")


if __name__ == "__main__":
    main()
