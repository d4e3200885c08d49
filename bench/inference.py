"""onnxruntime vs Keras on the exported model: batch-1 latency and 10,000-image throughput.

``python -m bench.inference MODEL.keras MODEL.onnx TEST.npz`` prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def timed_calls(call, runs: int, warmup: int = 20) -> np.ndarray:  # noqa: ANN001
    """Wall seconds of ``runs`` calls of ``call`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    seconds = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter()
        call()
        seconds[i] = time.perf_counter() - started
    return seconds


def _summary(seconds: np.ndarray) -> dict[str, float]:
    return {
        "p50_us": float(np.percentile(seconds, 50) * 1e6),
        "p99_us": float(np.percentile(seconds, 99) * 1e6),
        "calls": int(len(seconds)),
    }


def _throughput(call, images: int, repeats: int = 5) -> dict[str, float]:  # noqa: ANN001
    seconds = float(np.median(timed_calls(call, repeats, warmup=1)))
    return {"seconds": seconds, "images_per_second": images / seconds}


def main() -> None:
    keras_path, onnx_path, test_path = sys.argv[1:4]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from digits_predict import Predictor

    with np.load(test_path) as split:
        images = split["x"].astype(np.float32)
    one = images[:1]
    predictor = Predictor(onnx_path)  # one thread: what a batch of one wants
    batch_predictor = Predictor(onnx_path, threads=0)  # onnxruntime's default: every core

    import keras

    model = keras.saving.load_model(keras_path, compile=False)
    session = predictor._session  # the raw onnxruntime session, for a like-for-like call
    feed_name = session.get_inputs()[0].name
    batch_session = batch_predictor._session
    results = {
        "batch1": {
            "onnxruntime_session": _summary(
                timed_calls(lambda: session.run(None, {feed_name: one}), 5000)
            ),
            "predictor_api": _summary(timed_calls(lambda: predictor.predict(one), 5000)),
            "keras_direct_call": _summary(timed_calls(lambda: model(one, training=False), 500)),
            "keras_predict": _summary(timed_calls(lambda: model.predict(one, verbose=0), 200)),
        },
        "batch10000": {
            "onnxruntime_session": _throughput(
                lambda: batch_session.run(None, {feed_name: images}), len(images)
            ),
            "onnxruntime_session_1_thread": _throughput(
                lambda: session.run(None, {feed_name: images}), len(images)
            ),
            "keras_predict_default_batch": _throughput(
                lambda: model.predict(images, verbose=0), len(images)
            ),
            "keras_predict_batch_10000": _throughput(
                lambda: model.predict(images, batch_size=len(images), verbose=0), len(images)
            ),
        },
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
