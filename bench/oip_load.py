"""Load generator for a served model, run in ``.venv-serve``, side by side with the Predictor.

``python -m bench.oip_load HOST:PORT MODEL MODEL.onnx TEST.npz [UNLOGGED_HOST:PORT]`` prints
one JSON object: batch-1 latency (p50/p99) and batch-64 throughput over the Open Inference
Protocol with NVIDIA's tritonclient (one connection, requests one after another, JSON
tensors), and the same two figures for ``digits_predict.Predictor`` in this process,
measured alternately; with a second server that keeps no request log, its figures too
(``oip_unlogged``), alternated with the first's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import numpy as np
import tritonclient.http as oip

from bench.inference import timed_calls

BATCH = 64


def _latency(seconds: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(seconds, 50) * 1e3),
        "p99_ms": float(np.percentile(seconds, 99) * 1e3),
        "calls": len(seconds),
    }


def _throughput(seconds: np.ndarray) -> dict[str, float]:
    median = float(np.median(seconds))
    return {"batch": BATCH, "p50_ms": median * 1e3, "images_per_second": BATCH / median}


def main() -> None:
    url, model, onnx_path, test_path = sys.argv[1:5]
    unlogged_url = sys.argv[5] if len(sys.argv) > 5 else None
    from digits_predict import Predictor

    with np.load(test_path) as split:
        images = split["x"].astype(np.float32)
    wanted = [oip.InferRequestedOutput("probabilities", binary_data=False)]
    clients = {"oip": oip.InferenceServerClient(url, connection_timeout=10, network_timeout=60)}
    if unlogged_url:
        clients["oip_unlogged"] = oip.InferenceServerClient(
            unlogged_url, connection_timeout=10, network_timeout=60
        )

    def served(side: str, batch: np.ndarray) -> Callable[[], object]:
        tensor = oip.InferInput("image", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=False)
        client = clients[side]
        return lambda: client.infer(model, [tensor], outputs=wanted).as_numpy("probabilities")

    predictor = Predictor(onnx_path)
    one, many = images[:1], images[:BATCH]
    # same answers first: the figures below are of servers that classify correctly
    for side in clients:
        served_answer = served(side, many)()
        np.testing.assert_allclose(served_answer, predictor.predict(many).probabilities, atol=1e-6)
    results: dict[str, dict[str, list]] = {side: {} for side in clients}
    results["predictor_in_process"] = {}
    for _ in range(2):  # alternated, so drift in machine load hits all alike
        for side in clients:
            results[side].setdefault("batch1", []).append(timed_calls(served(side, one), 500, 50))
        results["predictor_in_process"].setdefault("batch1", []).append(
            timed_calls(lambda: predictor.predict(one), 500, 50)
        )
        for side in clients:
            results[side].setdefault("batch64", []).append(timed_calls(served(side, many), 100, 10))
        results["predictor_in_process"].setdefault("batch64", []).append(
            timed_calls(lambda: predictor.predict(many), 100, 10)
        )
    summary = {
        side: {
            "batch1": _latency(np.concatenate(runs["batch1"])),
            "batch64": _throughput(np.concatenate(runs["batch64"])),
        }
        for side, runs in results.items()
    }
    for client in clients.values():
        client.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
