"""The load of ``bench.serving_load``: locust users asking a served model for one image each,
over the Open Inference Protocol, one request after another with no pause.

Run by locust in ``.venv-serve`` (``locust -f bench/locustfile.py --headless ...``); what it
asks is set by the environment:

    LOAD_PROTOCOL   http (JSON tensors, locust's FastHttpUser) or grpc (MLServer's port + 1)
    LOAD_MODEL      the served model's name
    LOAD_IMAGES     an .npz with ``x`` (N, 28, 28): the images asked about, in turn
    LOAD_OUT        where the summary goes (JSON), written when locust quits

Locust keeps response times rounded to whole milliseconds below 100 ms; the summary keeps
its own, from the request event's exact figure, counted from the moment every user is
running (the spawn itself is not measured): answers a second, p50/p90/p99, errors by kind
(a 503 names its ``Retry-After``), the slowest request of all, answered or not. It also
holds every answer of the run, spawn included (what the request log must hold), and
locust's own CPU seconds, so the benchmark can say what the tool took of the machine.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import resource
import time

import numpy as np
from locust import User, constant, events, task
from locust.contrib.fasthttp import FastHttpUser

PROTOCOL = os.environ.get("LOAD_PROTOCOL", "http")
MODEL = os.environ.get("LOAD_MODEL", "mnist-digits")
IMAGES = os.environ.get("LOAD_IMAGES", "")
OUT = os.environ.get("LOAD_OUT", "")
TIMEOUT_SECONDS = 10.0
# distinct images, so the server's answers (and its request log) are not of one image only
DISTINCT = 256

_seconds: list[float] = []
_failures: collections.Counter[str] = collections.Counter()
_window: dict[str, float] = {"all_answers": 0, "slowest": 0.0}


@functools.cache
def _images() -> np.ndarray:
    with np.load(IMAGES) as split:
        return split["x"][:DISTINCT].astype(np.float32)


@functools.cache
def _json_bodies() -> tuple[bytes, ...]:
    """The requests' bodies, made once for every user: a user made at spawn time starts
    asking at once, and a spawn that encoded bodies per user would hold up those asking."""
    return tuple(
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, 28, 28],
                        "datatype": "FP32",
                        "data": image.ravel().tolist(),
                    }
                ]
            }  # fmt: skip
        ).encode()
        for image in _images()
    )


@functools.cache
def _grpc_requests() -> tuple[object, ...]:
    from tritonclient.grpc import service_pb2

    requests = []
    for image in _images():
        tensor = service_pb2.ModelInferRequest().InferInputTensor(
            name="image", datatype="FP32", shape=[1, 28, 28]
        )
        tensor.contents.fp32_contents.extend(image.ravel().tolist())
        requests.append(service_pb2.ModelInferRequest(model_name=MODEL, inputs=[tensor]))
    return tuple(requests)


@events.test_start.add_listener
def _prepare(**_: object) -> None:
    """Everything the users share, made before the first of them starts."""
    if PROTOCOL == "grpc":
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()  # grpc's calls yield to locust's other users
        _grpc_requests()
    else:
        _json_bodies()


@events.spawning_complete.add_listener
def _measure_from_here(**_: object) -> None:
    _seconds.clear()
    _failures.clear()
    _window["start"] = time.perf_counter()
    _window["cpu"] = _cpu_seconds()
    _window["slowest"] = 0.0


@events.request.add_listener
def _count(response_time: float, exception: Exception | None, **_: object) -> None:
    if exception is None:
        _window["all_answers"] += 1
    if "start" not in _window:
        return
    _window["slowest"] = max(_window["slowest"], response_time / 1e3)
    if exception is None:
        _seconds.append(response_time / 1e3)
    else:
        text = str(exception).strip()
        _failures[text.splitlines()[0][:120] if text else type(exception).__name__] += 1


@events.quitting.add_listener
def _summary(**_: object) -> None:
    if not OUT or "start" not in _window:
        return
    elapsed = time.perf_counter() - _window["start"]
    seconds = np.asarray(_seconds)
    percentiles = (
        {f"p{q}_ms": float(np.percentile(seconds, q) * 1e3) for q in (50, 90, 99)}
        if len(seconds)
        else {}
    )
    summary = {
        "answers": len(seconds),
        "errors": sum(_failures.values()),
        "errors_by_kind": dict(_failures.most_common(5)),
        "all_answers": _window["all_answers"],
        "seconds": elapsed,
        "answers_per_second": len(seconds) / elapsed,
        **percentiles,
        "slowest_ms": _window["slowest"] * 1e3,
        "tool_cpu_seconds": _cpu_seconds() - _window["cpu"],
    }
    with open(OUT, "w") as out:
        json.dump(summary, out)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class JsonUser(FastHttpUser):
    """One client asking ``POST /v2/models/<model>/infer`` with a JSON FP32 tensor."""

    wait_time = constant(0)
    network_timeout = TIMEOUT_SECONDS
    connection_timeout = TIMEOUT_SECONDS
    abstract = PROTOCOL != "http"

    def on_start(self) -> None:
        self._bodies = _json_bodies()
        self._next = 0

    @task
    def infer(self) -> None:
        body = self._bodies[self._next % len(self._bodies)]
        self._next += 1
        with self.client.post(
            f"/v2/models/{MODEL}/infer",
            data=body,
            headers={"Content-Type": "application/json"},
            name="infer",
            catch_response=True,
        ) as response:
            if response.status_code == 503:
                response.failure(f"HTTP 503, Retry-After {response.headers.get('Retry-After')}")
            elif response.status_code != 200 or b'"probabilities"' not in (response.content or b""):
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:80]}")


class GrpcUser(User):
    """One client calling ``ModelInfer`` on MLServer's gRPC port (the HTTP port + 1)."""

    wait_time = constant(0)
    abstract = PROTOCOL != "grpc"

    def on_start(self) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        host = self.host.removeprefix("http://").removeprefix("grpc://")
        self._channel = grpc.insecure_channel(host)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._requests = _grpc_requests()
        self._next = 0

    def on_stop(self) -> None:
        self._channel.close()

    @task
    def infer(self) -> None:
        request = self._requests[self._next % len(self._requests)]
        self._next += 1
        started = time.perf_counter()
        exception = None
        try:
            answer = self._stub.ModelInfer(request, timeout=TIMEOUT_SECONDS)
            if not answer.outputs:
                raise RuntimeError("an answer without outputs")
        except Exception as err:  # a refusal or a timeout is the figure being measured
            code = getattr(err, "code", None)
            exception = RuntimeError(f"gRPC {code().name}: {err.details()}") if code else err
        self.environment.events.request.fire(
            request_type="grpc",
            name="ModelInfer",
            response_time=(time.perf_counter() - started) * 1e3,
            response_length=0,
            exception=exception,
            context={},
        )
