"""The registered model served as a deployment engineer would: MLServer over the Open
Inference Protocol, asked by NVIDIA's tritonclient and by plain HTTP; ``mlflow models
serve``; and the Triton model repository, read with Triton's own config schema.

tritonclient and MLServer live in ``.venv-serve`` (``make serve-setup``); the tests drive
them there as separate processes, the way a client on another machine would.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from digits_predict import Predictor
from digits_predict.contract import MAX_BATCH_SIZE
from factories.params import TINY_EXPORT
from factories.processes import error_lines, run_module
from factories.served import SERVE_BIN, registered_tiny, served
from harness.network import free_port, free_port_pair, wait_for_http
from serving.guard import MAX_BODY_BYTES, MiB
from serving.triton import write_repository

NAME = TINY_EXPORT["registered_model_name"]
EXPECTED = r"expected one input 'image', datatype FP32 \(or UINT8\), shape \[N, 28, 28\] with"


@pytest.fixture(scope="module")
def registered(tmp_path_factory, mlflow_template_db) -> SimpleNamespace:
    """A tiny model trained and exported into a store of its own: v1, @candidate, @champion."""
    return registered_tiny(tmp_path_factory.mktemp("serving"), mlflow_template_db)


def _start(command: list[str], registered, log: Path, env: dict | None = None):
    with open(log, "w") as sink:
        return subprocess.Popen(
            command,
            cwd=registered.ws.root,
            env=env or registered.env,
            stdout=sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def mlserver(registered) -> SimpleNamespace:
    """``python -m serving`` (what ``make serve`` runs) on two free loopback ports."""
    with served(registered, output=registered.ws.root / "mlserver.log") as server:
        yield server


def _client(url: str, *args: str) -> subprocess.CompletedProcess:
    """``serving.client`` (tritonclient) from .venv-serve, as a deployment would run it."""
    return subprocess.run(
        [str(SERVE_BIN / "python"), "-m", "serving.client", "--url", url, "--model", NAME, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _post(url: str, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _request(images, name="image", datatype="FP32", shape=None, data=None) -> dict:
    images = np.asarray(images)
    shape = list(images.shape) if shape is None else shape
    values = images.ravel().tolist() if data is None else data
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": values}]}


def test_tritonclient_sees_the_named_contract_and_gets_the_predictors_answers(
    mlserver, registered, tmp_path
) -> None:
    digits = tmp_path / "digits.npy"
    np.save(digits, registered.images)
    result = _client(mlserver.url, "--json", str(digits))
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    metadata = reply["metadata"]
    assert metadata["name"] == NAME
    assert (metadata["versions"], metadata["platform"]) == (["1"], "mlflow")
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("image", "FP32", [-1, 28, 28])
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [
        ("probabilities", "FP32", [-1, 10])
    ]
    served = np.array([answer["probabilities"] for answer in reply["answers"]], np.float32)
    expected = Predictor(registered.model).predict(registered.images)
    assert [answer["digit"] for answer in reply["answers"]] == expected.digits.tolist()
    np.testing.assert_allclose(served, expected.probabilities, rtol=0, atol=1e-6)
    assert [answer["input"] for answer in reply["answers"]][:2] == [f"{digits}[0]", f"{digits}[1]"]


def test_the_server_answers_health_and_version(mlserver) -> None:
    with urllib.request.urlopen(f"{mlserver.base}/v2/health/live", timeout=10) as response:
        assert response.status == 200
    status, body = _post(
        f"{mlserver.base}/v2/models/{NAME}/infer", _request(np.full((1, 28, 28), 200))
    )
    assert status == 200 and body["model_version"] == "1"
    assert [(o["name"], o["shape"]) for o in body["outputs"]] == [("probabilities", [1, 10])]


# what MLServer's process does with the model settings: its own loader, then our runtime's check
READ_REQUEST_LOG_SETTINGS = """
import sys
from mlserver.repository.load import load_model_settings
from monitor.log_settings import RequestLogSettings
model = load_model_settings(sys.argv[1])
handed = RequestLogSettings.from_extra(model.parameters.extra["request_log"], "model settings")
print(handed.model_dump_json())
"""


def test_mlservers_runtime_gets_the_monitor_params_the_server_started_with(
    mlserver, registered
) -> None:
    """The request log's settings cross into MLServer's process (another venv) as the typed
    ``monitor`` section of the workspace's params.yaml, through MLServer's settings loader."""
    from kernel.params import load_params
    from monitor.log_settings import RequestLogSettings

    port = mlserver.url.rsplit(":", 1)[1]
    settings = registered.ws.root / ".serve" / port / NAME / "model-settings.json"
    done = subprocess.run(
        [str(SERVE_BIN / "python"), "-c", READ_REQUEST_LOG_SETTINGS, str(settings)],
        capture_output=True,
        text=True,
        env=registered.env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    received = RequestLogSettings.model_validate_json(done.stdout)
    params = load_params(registered.ws.root / "params.yaml")
    assert received.monitor == params.monitor
    assert received.folder == str((registered.ws.root / params.monitor.log_dir).resolve())
    assert received.tracking_uri == registered.ws.uri


def test_uint8_pixels_as_mnist_stores_them_get_the_float_answer(mlserver, registered) -> None:
    url = f"{mlserver.base}/v2/models/{NAME}/infer"
    as_uint8 = _post(url, _request(registered.images[:4], datatype="UINT8"))
    as_float = _post(url, _request(registered.images[:4].astype(np.float32)))
    assert as_uint8[0] == as_float[0] == 200
    assert as_uint8[1]["outputs"][0]["data"] == as_float[1]["outputs"][0]["data"]


_IMAGES = np.full((2, 28, 28), 200, dtype=np.uint8)
BAD_REQUESTS = {
    "pre-scaled": (_request(_IMAGES / 255), 400, r"image\(s\) 0, 1 of 2 have no pixel above 1"),
    "wrong name": (_request(_IMAGES, name="input-0"), 400, r"request has inputs \['input-0'\]; "),
    "flat shape": (_request(_IMAGES, shape=[2, 784]), 400, r"has shape \[2, 784\]; "),
    "fp64": (_request(_IMAGES, datatype="FP64"), 400, r"has datatype FP64; "),
    "empty batch": (_request(_IMAGES, shape=[0, 28, 28], data=[]), 400, r"shape \[0, 28, 28\]"),
    "short data": (_request(_IMAGES, data=[1.0, 2.0]), 400, r"has 2 values for shape"),
    "huge batch": (
        _request(_IMAGES, shape=[MAX_BATCH_SIZE + 1, 28, 28], data=[1.0]),
        400,
        rf"holds {MAX_BATCH_SIZE + 1} images, more than {MAX_BATCH_SIZE} per request",
    ),
    "negative pixels": (_request(-_IMAGES.astype(np.float32)), 400, r"outside 0..255; expected"),
    "uint8 above 255": (
        _request(_IMAGES.astype(int) + 100, datatype="UINT8"),
        400,
        r"is UINT8 but holds values that are not integers 0..255 \(300..300\)",
    ),
    "uint8 fractions": (
        _request(_IMAGES / 2 + 0.5, datatype="UINT8"),
        400,
        r"not integers 0..255 \(100.5..100.5\)",
    ),
    "codec override": (
        {**_request(_IMAGES / 255), "parameters": {"content_type": "np"}},
        400,
        r"have no pixel above 1",
    ),
    "input codec override": (
        {
            "inputs": [
                {**_request(_IMAGES)["inputs"][0], "parameters": {"content_type": "datetime"}}
            ]
        },
        200,
        None,
    ),
    "ragged data": (
        _request(_IMAGES, data=[[1.0, 2.0], [3.0]]),
        400,
        r"not a regular list of numbers",
    ),
    "deep nesting": (
        _request(_IMAGES, data=json.loads("[" * 500 + "1" + "]" * 500)),
        400,
        r"not a regular list of numbers|has 1 values",
    ),
    "strings": (_request(_IMAGES, data=["a"] * 1568), 400, r"not a regular list of numbers"),
    "no inputs": ({"inputs": []}, 400, r"request has inputs \[\]; "),
    "unknown datatype": (_request(_IMAGES, datatype="FLOAT"), 422, r"Input should be"),
    "not json": (b"{not json", 422, r"JSON decode error"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_gets_a_4xx_saying_what_was_expected(mlserver, case) -> None:
    body, status, message = BAD_REQUESTS[case]
    got, reply = _post(f"{mlserver.base}/v2/models/{NAME}/infer", body)
    assert got == status, reply
    if status == 400:
        text = reply["error"]
        assert "\n" not in text
        assert re.search(message, text), text
        if "pixel" not in text and "UINT8" not in text:
            assert re.search(EXPECTED, text), text
    elif status == 422:  # FastAPI's validation of the protocol's JSON, before our runtime
        assert any(re.search(message, item["msg"]) for item in reply["detail"]), reply
    # and the server keeps serving
    got, _ = _post(f"{mlserver.base}/v2/models/{NAME}/infer", _request(_IMAGES))
    assert got == 200


def test_tritonclient_reports_the_servers_refusal(mlserver) -> None:
    snippet = (
        "import numpy as np, sys\n"
        "from tritonclient.utils import InferenceServerException\n"
        "from serving.client import DigitsClient\n"
        f"client = DigitsClient({mlserver.url!r}, {NAME!r})\n"
        "try:\n"
        "    client.probabilities(np.full((3, 28, 28), 0.5, np.float32))\n"
        "except InferenceServerException as err:\n"
        "    print(err.status(), err.message())\n"
    )
    result = subprocess.run(
        [str(SERVE_BIN / "python"), "-c", snippet], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("400 image(s) 0, 1, 2 of 3 have no pixel above 1"), (
        result.stdout
    )


def test_stock_tritonclient_binary_tensors_get_a_422_the_client_explains(mlserver) -> None:
    """tritonclient's default (binary tensors) is refused by MLServer 1.7; the client's
    message says what to send instead."""
    snippet = (
        "import numpy as np, tritonclient.http as oip\n"
        "from tritonclient.utils import InferenceServerException\n"
        "from serving.client import _message\n"
        f"client = oip.InferenceServerClient({mlserver.url!r})\n"
        "tensor = oip.InferInput('image', [1, 28, 28], 'FP32')\n"
        "tensor.set_data_from_numpy(np.full((1, 28, 28), 200, np.float32))\n"
        "try:\n"
        f"    client.infer({NAME!r}, [tensor])\n"
        "except InferenceServerException as err:\n"
        "    print(_message(err))\n"
    )
    result = subprocess.run(
        [str(SERVE_BIN / "python"), "-c", snippet], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP 422: "), result.stdout
    assert result.stdout.rstrip().endswith(
        "send them with binary_data=False, as DigitsClient does)"
    )


def test_the_client_names_an_unknown_model_and_exits_2(mlserver, tmp_path) -> None:
    digits = tmp_path / "one.npy"
    np.save(digits, _IMAGES[:1])
    result = subprocess.run(
        [
            str(SERVE_BIN / "python"),
            "-m",
            "serving.client",
            "--url",
            mlserver.url,
            "--model",
            "no-such-model",
            str(digits),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert line.startswith("serving.client: error: ") and "no-such-model" in line


def _send(
    mlserver, path: str, body: bytes | None = None, headers: dict | None = None, chunked=False
) -> tuple[int, dict]:
    """One request as an attacker sends it: any Host, Origin or size, the body in 1 MiB pieces
    (chunked, or after a Content-Length), the answer read whether or not the server took it all.
    """
    host, port = mlserver.url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.putrequest("POST" if body is not None else "GET", path, skip_host=True)
        headers = {"Host": mlserver.url, "Content-Type": "application/json", **(headers or {})}
        if body is not None:
            headers["Transfer-Encoding" if chunked else "Content-Length"] = (
                "chunked" if chunked else str(len(body))
            )
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        view = memoryview(body or b"")
        try:
            for start in range(0, len(view), MiB):
                piece = view[start : start + MiB]
                connection.send(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: its answer is still to be read
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


class _PeakRSS:
    """The server's resident memory at rest, and its peak (``VmHWM``) since entering."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.clear_refs = Path(f"/proc/{pid}/clear_refs")

    def _field(self, name: str) -> float:
        for line in self.status.read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {name} in {self.status}")

    def __enter__(self) -> _PeakRSS:
        self.clear_refs.write_text("5")  # the peak starts again from the current size
        self.before = self._field("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.growth = self._field("VmHWM") - self.before


def _assert_serving(mlserver) -> None:
    status, reply = _post(f"{mlserver.base}/v2/models/{NAME}/infer", _request(_IMAGES))
    assert status == 200, reply


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_cap_gets_413_and_the_server_does_not_grow(mlserver, framing) -> None:
    """50 MiB once took MLServer ~1 GiB up (20x the body); now it is refused unread."""
    body = b"[" * (50 * MiB)
    with _PeakRSS(mlserver.server.pid) as rss:
        started = time.monotonic()
        status, reply = _send(
            mlserver, f"/v2/models/{NAME}/infer", body, chunked=framing == "chunked"
        )
        took = time.monotonic() - started
    assert status == 413, reply
    assert re.fullmatch(
        r"(a request body of 52,428,800 bytes|a chunked request body) is larger than this "
        r"server's limit of 16,777,216 bytes \(16 MiB\); send fewer images per request",
        reply["error"],
    )
    print(f"{framing}: 413 in {took:.2f} s, peak RSS growth {rss.growth:.0f} MiB")
    assert rss.growth < 64, f"the server grew {rss.growth:.0f} MiB for a refused body"
    _assert_serving(mlserver)


def _padded(payload: dict, size: int) -> bytes:
    """The request as JSON, padded with whitespace (valid JSON) to exactly ``size`` bytes."""
    text = json.dumps(payload).encode()
    assert len(text) <= size
    return text[:-1] + b" " * (size - len(text)) + text[-1:]


def test_the_largest_batch_in_a_body_at_the_cap_is_answered(mlserver) -> None:
    """1024 images, each pixel a full-precision float32, as JSON: under the cap, and answered."""
    images = np.random.default_rng(0).uniform(2, 255, (MAX_BATCH_SIZE, 28, 28)).astype(np.float32)
    body = _padded(_request(images), MAX_BODY_BYTES)
    with _PeakRSS(mlserver.server.pid) as rss:
        status, reply = _send(mlserver, f"/v2/models/{NAME}/infer", body)
    assert status == 200, reply
    assert reply["outputs"][0]["shape"] == [MAX_BATCH_SIZE, 10]
    print(f"a valid batch at the cap: peak RSS growth {rss.growth:.0f} MiB")
    assert rss.growth < 400
    status, reply = _send(mlserver, f"/v2/models/{NAME}/infer", body + b" ")
    assert status == 413, reply


def _filled(item: bytes) -> bytes:
    """A request whose data is ``item`` repeated to fill the cap."""
    head = b'{"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": ['
    count = (MAX_BODY_BYTES - len(head) - 4) // (len(item) + 1)
    return head + b",".join([item] * count) + b"]}]}"


# the most Python objects per byte of JSON that MLServer's parser would make within the cap:
# lists (64 bytes each for 3 bytes of JSON), objects and strings are refused by their count
# before the parse; numbers are parsed and refused by the runtime. Each body is built when a
# test asks for it: 16 MiB apiece, they would cost every collection of the suite.
ADVERSARIAL_BODIES = {
    "empty lists": (b"[]", r"holds 5,592,\d{3} JSON lists, objects and strings, more"),
    "empty objects": (b"{}", r"holds 5,592,\d{3} JSON lists, objects and strings"),
    "strings": (b'"ab"', r"holds 3,355,\d{3} JSON lists, objects and strings"),
    "floats": (b"1.5", r"has 4194\d{3} values for shape \[1, 28, 28\]"),
    "small integers": (b"1", r"has 838\d{4} values for shape \[1, 28, 28\]"),
}


@pytest.mark.parametrize("case", list(ADVERSARIAL_BODIES))
def test_a_body_at_the_cap_costs_a_few_hundred_mib_at_most(mlserver, case) -> None:
    item, message = ADVERSARIAL_BODIES[case]
    body = _filled(item)
    assert MAX_BODY_BYTES - 8 <= len(body) <= MAX_BODY_BYTES
    with _PeakRSS(mlserver.server.pid) as rss:
        status, reply = _send(mlserver, f"/v2/models/{NAME}/infer", body)
    print(f"{case}, {len(body) / MiB:.1f} MiB: peak RSS growth {rss.growth:.0f} MiB")
    assert status == 400 and re.search(message, reply["error"]), reply
    assert rss.growth < 384
    _assert_serving(mlserver)


def test_bodies_sent_at_once_are_parsed_a_few_at_a_time(mlserver) -> None:
    """Sixteen clients at the cap at once cost eight bodies (``MAX_HELD_BODIES``, 128 MiB)
    and what one parse does: the others wait unread, and two (``MAX_CONCURRENT_BODIES``) are
    parsed and answered at once. Without that wait, each would hold its 16 MiB and its
    parse, ~290 MiB."""
    body = _filled(ADVERSARIAL_BODIES["floats"][0])
    statuses = []

    def client() -> None:
        statuses.append(_send(mlserver, f"/v2/models/{NAME}/infer", body)[0])

    with _PeakRSS(mlserver.server.pid) as rss:
        clients = [threading.Thread(target=client) for _ in range(16)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=120)
    print(f"16 bodies of 16 MiB at once: peak RSS growth {rss.growth:.0f} MiB")
    assert statuses == [400] * 16
    assert rss.growth < 512
    _assert_serving(mlserver)


def _stall(mlserver, sent: bytes) -> socket.socket:
    """A client that announces a body of 100 bytes, sends ``sent`` of it and stalls."""
    host, port = mlserver.url.split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    head = (
        f"POST /v2/models/{NAME}/infer HTTP/1.1\r\nHost: {mlserver.url}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def _answer_then_close(sock: socket.socket) -> tuple[str, bytes]:
    """The status line and body the server sent before it closed the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


@pytest.mark.parametrize("sent", [b"", b"{"], ids=["headers only", "one byte"])
def test_clients_that_stall_their_bodies_keep_no_honest_request_waiting(mlserver, sent) -> None:
    """Eight clients send a request's headers (and a byte of its body) and stall; an honest
    request sent after them is answered in a few seconds, as long as the server lets one of
    them hold a place (``CHUNK_SECONDS``), and each of them gets 408 and a closed connection."""
    stallers = [_stall(mlserver, sent) for _ in range(8)]
    try:
        time.sleep(0.5)  # all eight are in the server before the honest request
        started = time.monotonic()
        _assert_serving(mlserver)
        waited = time.monotonic() - started
        print(
            f"8 clients stalling after {len(sent)} bytes: an honest request waited {waited:.2f} s"
        )
        assert waited < 5
        for sock in stallers:
            status, body = _answer_then_close(sock)
            assert status.startswith("HTTP/1.1 408 "), status
            assert body.count(b"\n") == 0 and json.loads(body)["error"].endswith(", at once")
    finally:
        for sock in stallers:
            sock.close()


_GRPC_STALLS = """
import json, sys, threading, time
import grpc
from mlserver.grpc import dataplane_pb2 as pb, dataplane_pb2_grpc
address, model, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
never = threading.Event()

def nothing():  # a stream of requests that never sends one
    never.wait()
    yield pb.ModelInferRequest()

stalling = dataplane_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
held = [stalling.ModelStreamInfer(nothing()) for _ in range(calls)]
time.sleep(1)  # the calls are open on the server
honest = dataplane_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
answers, started = [], time.monotonic()
while time.monotonic() - started < 40:
    try:
        honest.ModelReady(pb.ModelReadyRequest(name=model), timeout=5)
        answers.append(["OK", round(time.monotonic() - started, 1)])
        break
    except grpc.RpcError as err:
        answers.append([err.code().name, err.details()])
    time.sleep(0.5)
print(json.dumps(answers))
"""


def test_grpc_takes_a_bounded_number_of_calls_and_stalled_ones_end(mlserver) -> None:
    """Calls beyond MAX_CONCURRENT_RPCS get RESOURCE_EXHAUSTED at once, before their
    message is read; calls that stall are ended with their connection's age."""
    host, port = mlserver.url.split(":")
    result = subprocess.run(
        # as many stalled calls as serving.mlserver_app's MAX_CONCURRENT_RPCS
        [str(SERVE_BIN / "python"), "-c", _GRPC_STALLS, f"{host}:{int(port) + 1}", NAME, "64"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers = json.loads(result.stdout)
    print(f"gRPC calls while 64 stall: {answers[0]}, ..., {answers[-1]} ({len(answers)} calls)")
    assert answers[0][0] == "RESOURCE_EXHAUSTED", answers
    # the connection lives 10 s (+10% jitter), its calls 5 s more: then the places are free
    assert answers[-1][0] == "OK" and answers[-1][1] < 20, answers
    _assert_serving(mlserver)


def test_a_cross_origin_unload_does_nothing_and_the_model_answers(mlserver) -> None:
    """A web page's form post: text/plain from another origin, no preflight."""
    for path in (f"/v2/repository/models/{NAME}/unload", f"/v2/repository/models/{NAME}/load"):
        for headers in (
            {"Origin": "http://evil.example", "Content-Type": "text/plain"},
            {},  # a local client, same Host and no Origin: refused all the same
        ):
            status, reply = _send(mlserver, path, b"", headers)
            assert status in (403, 404), reply
            assert "\n" not in reply["error"]
    status, reply = _send(mlserver, "/v2/repository/index", b"{}")
    assert status == 404 and "restart `make serve`" in reply["error"], reply
    with urllib.request.urlopen(f"{mlserver.base}/v2/models/{NAME}/ready", timeout=10) as ready:
        assert ready.status == 200
    _assert_serving(mlserver)


def test_a_page_of_another_origin_cannot_run_inference(mlserver) -> None:
    body = json.dumps(_request(_IMAGES)).encode()
    status, reply = _send(mlserver, f"/v2/models/{NAME}/infer", body, {"Origin": "null"})
    assert status == 403 and reply["error"].startswith("requests from web pages of other")
    same_origin = {"Origin": f"http://{mlserver.url}"}
    assert _send(mlserver, f"/v2/models/{NAME}/infer", body, same_origin)[0] == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost", "127.0.0.2:{port}"]
)
def test_a_foreign_host_header_is_refused(mlserver, host) -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1."""
    port = mlserver.url.split(":")[1]
    for path, body in ((f"/v2/models/{NAME}", None), (f"/v2/models/{NAME}/infer", b"{}")):
        status, reply = _send(mlserver, path, body, {"Host": host.format(port=port)})
        assert status == 400, reply
        assert reply["error"].startswith(f"Host '{host.format(port=port)}' is not this server's")


@pytest.mark.parametrize("name", ["localhost", "[::1]", "LOCALHOST"])
def test_the_loopback_names_are_answered(mlserver, name) -> None:
    port = mlserver.url.split(":")[1]
    status, reply = _send(mlserver, f"/v2/models/{NAME}", None, {"Host": f"{name}:{port}"})
    assert status == 200 and reply["name"] == NAME, reply


def test_a_compressed_body_is_refused(mlserver) -> None:
    """MLServer would inflate a gzip body whole: a 16 MiB bomb is gigabytes."""
    import gzip

    body = gzip.compress(json.dumps(_request(_IMAGES)).encode())
    headers = {"Content-Encoding": "gzip"}
    status, reply = _send(mlserver, f"/v2/models/{NAME}/infer", body, headers)
    assert status == 415 and "Content-Encoding gzip" in reply["error"], reply


_GRPC_REPOSITORY = """
import json, sys
import grpc
from mlserver.grpc import dataplane_pb2 as pb, dataplane_pb2_grpc
from mlserver.grpc import model_repository_pb2 as mr, model_repository_pb2_grpc
channel, model = grpc.insecure_channel(sys.argv[1]), sys.argv[2]
inference = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
old = model_repository_pb2_grpc.ModelRepositoryServiceStub(channel)  # the deprecated service
calls = {
    "unload": (inference.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=model)),
    "load": (inference.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=model)),
    "index": (inference.RepositoryIndex, pb.RepositoryIndexRequest()),
    "old unload": (old.RepositoryModelUnload, mr.RepositoryModelUnloadRequest(model_name=model)),
}
answers = {}
for call, (method, request) in calls.items():
    try:
        method(request)
        answers[call] = "OK"
    except grpc.RpcError as err:
        answers[call] = [err.code().name, err.details()]
ready = inference.ModelReady(pb.ModelReadyRequest(name=model)).ready
print(json.dumps({"answers": answers, "ready": ready}))
"""


def test_grpc_cannot_unload_the_model_either(mlserver) -> None:
    host, port = mlserver.url.split(":")
    result = subprocess.run(
        [str(SERVE_BIN / "python"), "-c", _GRPC_REPOSITORY, f"{host}:{int(port) + 1}", NAME],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reply = json.loads(result.stdout)
    print(f"gRPC repository calls: {reply['answers']}")
    assert reply["ready"] is True
    for name, answer in reply["answers"].items():
        assert answer != "OK", name
        assert "the model repository API" in answer[1], (name, answer)
    assert reply["answers"]["unload"][0] == "NOT_FOUND"
    _assert_serving(mlserver)


def test_mlflow_models_serve_works_without_the_venv_on_path(registered) -> None:
    port = free_port()
    bare = {key: value for key, value in registered.env.items() if key != "VIRTUAL_ENV"}
    bare["PATH"] = os.pathsep.join(
        p for p in bare.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
    )
    command = [sys.executable, "-m", "serving", "--server", "mlflow", "--port", str(port)]
    server = _start(command, registered, registered.ws.root / "mlflow-serve.log", env=bare)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", timeout=180, alive=lambda: server.poll() is None)
        images = registered.images[:5].astype(np.float32)
        status, reply = _post(f"{base}/invocations", {"inputs": {"image": images.tolist()}})
        expected = Predictor(registered.model).predict(images).probabilities
        assert status == 200
        served = np.array(reply["predictions"]["probabilities"], np.float32)
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
        status, reply = _post(f"{base}/invocations", {"inputs": {"image": (images / 255).tolist()}})
        assert status == 400 and reply["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "have no pixel above 1: scaled to 0..1" in reply["message"]
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_serving_an_unknown_alias_says_so_and_keeps_the_previous_model(
    registered, tmp_path
) -> None:
    port = free_port_pair()
    serve_dir = tmp_path / "serve"
    kept = serve_dir / str(port) / NAME / "model" / "MLmodel"
    kept.parent.mkdir(parents=True)
    kept.write_text("the previous model\n")
    result = run_module(
        "serving", "--alias", "nope", "--serve-dir", serve_dir, "--port", str(port),
        "--mlserver", SERVE_BIN / "mlserver", cwd=registered.ws.root, env=registered.env,
    )  # fmt: skip
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"serving: error: models:/{NAME}@nope: no such registered model or alias; "
        "run `make repro` first"
    ]
    assert kept.read_text() == "the previous model\n"
    assert [p.name for p in (serve_dir / str(port)).iterdir()] == [NAME]


def test_serving_again_replaces_the_model_whole(registered, tmp_path) -> None:
    import mlflow

    from serving.serve_folder import fetch

    with registered.ws.store():
        first_version, first = fetch(NAME, "champion", tmp_path)
        (first / "stale.txt").write_text("left by the previous download\n")
        second_version, second = fetch(NAME, "candidate", tmp_path)
        champion = mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion").version
    assert first == second == tmp_path / NAME / "model"
    assert first_version == second_version == str(champion)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]  # no scratch folder left
    files = sorted(p.name for p in second.iterdir())
    assert files == sorted(
        ["MLmodel", "code", "conda.yaml", "input_example.json", "model.onnx", "python_env.yaml",
         "registered_model_meta", "requirements.txt", "serving_input_example.json"]
    )  # fmt: skip
    assert (second.stat().st_mode & 0o777) == 0o755


def test_serving_on_a_taken_port_says_so_before_downloading(registered, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_module(
            "serving", "--server", "mlflow", "--port", str(port), "--serve-dir", tmp_path / "s",
            cwd=registered.ws.root, env=registered.env,
        )  # fmt: skip
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"serving: error: 127.0.0.1:{port}, for HTTP, is taken by another")
    assert not (tmp_path / "s").exists()


def test_serving_names_the_grpc_port_when_that_one_is_taken(registered, tmp_path) -> None:
    """MLServer takes the port after --port for gRPC: a user who chose 8079 must learn that
    8080 is the one in the way."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        grpc_port = taken.getsockname()[1]
        result = run_module(
            "serving", "--port", str(grpc_port - 1), "--serve-dir", tmp_path / "s",
            "--mlserver", sys.executable,
            cwd=registered.ws.root, env=registered.env,
        )  # fmt: skip
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(
        f"serving: error: 127.0.0.1:{grpc_port}, for gRPC (MLServer takes the port after "
        f"--port {grpc_port - 1}), is taken"
    ), line
    assert not (tmp_path / "s").exists()


_READ_CONFIG = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
config = text_format.Parse(open(sys.argv[1]).read(), model_config_pb2.ModelConfig())
print(json.dumps(json_format.MessageToDict(config)))
"""


def test_the_triton_repository_matches_the_onnx_graph(registered, tmp_path) -> None:
    import onnx

    folder = write_repository(registered.model, tmp_path / "model_repository", NAME)
    assert (folder / "1" / "model.onnx").read_bytes() == registered.model.read_bytes()
    result = subprocess.run(
        [str(SERVE_BIN / "python"), "-c", _READ_CONFIG, str(folder / "config.pbtxt")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config = json.loads(result.stdout)
    graph = onnx.load(registered.model).graph

    triton_types = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.UINT8: "TYPE_UINT8"}

    def described(values):
        return [
            {
                "name": v.name,
                "dataType": triton_types[v.type.tensor_type.elem_type],
                "dims": [str(d.dim_value) for d in v.type.tensor_type.shape.dim[1:]],
            }
            for v in values
        ]

    assert config["name"] == NAME and config["backend"] == "onnxruntime"
    assert config["maxBatchSize"] == MAX_BATCH_SIZE
    assert (
        config["input"]
        == described(graph.input)
        == [{"name": "image", "dataType": "TYPE_FP32", "dims": ["28", "28"]}]
    )
    assert config["output"] == described(graph.output)
    assert config["instanceGroup"] == [{"count": 1, "kind": "KIND_CPU"}]
    assert "maxQueueDelayMicroseconds" in config["dynamicBatching"]


def test_a_triton_repository_from_a_missing_model_is_refused(registered, tmp_path) -> None:
    result = run_module(
        "serving.triton", tmp_path / "missing.onnx", tmp_path / "repo", cwd=registered.ws.root
    )
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"triton: error: {tmp_path / 'missing.onnx'} does not exist; run `make repro` first"
    ]
    assert not (tmp_path / "repo").exists()


def test_a_version_from_before_the_served_contract_is_refused_and_the_served_one_kept(
    registered, tmp_path
) -> None:
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    images = registered.images[:2].astype(np.float32)
    with registered.ws.store():
        client = mlflow.MlflowClient()
        with mlflow.start_run():  # as export logged it before: unnamed tensors, plain ONNX pyfunc
            logged = mlflow.onnx.log_model(
                onnx.load(registered.model),
                name="onnx_model",
                signature=infer_signature(
                    images, Predictor(registered.model).predict(images).probabilities
                ),
            )
        version = mlflow.register_model(logged.model_uri, NAME).version
        client.set_registered_model_alias(NAME, "legacy", version)
    serve_dir, port = tmp_path / "serve", free_port()
    kept = serve_dir / str(port) / NAME / "model" / "MLmodel"
    kept.parent.mkdir(parents=True)
    kept.write_text("the served model\n")
    result = run_module(
        "serving", "--server", "mlflow", "--alias", "legacy", "--serve-dir", serve_dir,
        "--port", str(port), cwd=registered.ws.root, env=registered.env,
    )  # fmt: skip
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"serving: error: {NAME} v{version} (@legacy) was registered before the served contract "
        "(signature image -> probabilities, inputs checked by digits_predict.pyfunc); export a "
        "new version (`dvc repro -f export`) and serve it (ALIAS=candidate)"
    ]
    assert kept.read_text() == "the served model\n"
