"""int8 against fp32 with onnxruntime: 10,000-image throughput, batch-1 latency, size, accuracy.

``python -m bench.int8 MODEL.onnx MODEL.int8.onnx TEST.npz`` prints one JSON object. The two
models are timed alternately, so drift in the machine's load hits both alike; each is also
run on one thread, which is what an edge CPU or a busy server gives a model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.inference import timed_calls

ROUNDS = 3


def _session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    fp32_path, int8_path, test_path = sys.argv[1:4]
    with np.load(test_path) as split:
        images, labels = split["x"].astype(np.float32), split["y"]
    models = {"fp32": fp32_path, "int8": int8_path}
    sessions = {
        (name, threads): _session(path, threads)
        for name, path in models.items()
        for threads in (0, 1)  # 0: onnxruntime's default, every core
    }
    # one image per call, as the quantize stage's gate measures: dynamic quantization scales
    # activations per batch, so a batch's answers differ slightly from one image's
    answers = {
        name: np.concatenate([sessions[(name, 1)].run(None, {"image": x[None]})[0] for x in images])
        for name in models
    }
    in_one_batch = sessions[("int8", 0)].run(None, {"image": images})[0]
    seconds: dict[str, list[np.ndarray]] = {}
    for _ in range(ROUNDS):
        for (name, threads), session in sessions.items():
            key = f"{name}_{'all_threads' if threads == 0 else '1_thread'}"
            seconds.setdefault(f"{key}_10000", []).append(
                timed_calls(lambda s=session: s.run(None, {"image": images}), 3, warmup=1)
            )
            if threads == 1:
                seconds.setdefault(f"{name}_batch1", []).append(
                    timed_calls(lambda s=session: s.run(None, {"image": images[:1]}), 2000, 50)
                )
    results = {}
    for name, path in models.items():
        predicted = answers[name].argmax(axis=1)
        results[name] = {
            "file_bytes": Path(path).stat().st_size,
            "test_accuracy": float((predicted == labels).mean()),
            "batch1_p50_us": float(np.median(np.concatenate(seconds[f"{name}_batch1"])) * 1e6),
        }
        for threads in ("all_threads", "1_thread"):
            median = float(np.median(np.concatenate(seconds[f"{name}_{threads}_10000"])))
            results[name][f"images_per_second_{threads}"] = len(images) / median
    results["agreement"] = float(
        (answers["fp32"].argmax(axis=1) == answers["int8"].argmax(axis=1)).mean()
    )
    results["max_abs_diff"] = float(np.abs(answers["fp32"] - answers["int8"]).max())
    results["int8_one_batch_vs_one_image_agreement"] = float(
        (in_one_batch.argmax(axis=1) == answers["int8"].argmax(axis=1)).mean()
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
