"""A served upgrade without downtime: ``@champion`` moves, ``python -m serving reload`` (what
``make serve-reload`` runs) switches the running MLServer to the new version while a client
keeps sending, and the request log names the version that answered each request.

A tiny model trained and exported into a store of its own (v1, @champion), registered a
second time (v2), served from .venv-serve as ``make serve`` serves it.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from factories.params import TINY_EXPORT
from factories.processes import error_lines, run_module
from factories.trained import export_args, train_tiny
from harness.network import free_port, free_port_pair, wait_for_http
from kernel.paths import PROJECT_ROOT
from monitor.request_log import image_digest
from stages import export

SERVE_BIN = PROJECT_ROOT / ".venv-serve" / "bin"
NAME = TINY_EXPORT["registered_model_name"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory, mlflow_template_db) -> SimpleNamespace:
    """v1 as export hands it off (@candidate, @champion), and v2: the same model registered
    again, as a retrained one would be."""
    if not (SERVE_BIN / "mlserver").exists():
        pytest.fail(f"{SERVE_BIN}/mlserver is missing: run `make serve-setup` (make test does)")
    ws = train_tiny(tmp_path_factory.mktemp("reload"), mlflow_template_db)
    with ws.store():
        import mlflow

        export.main(export_args(ws, ws.root / "export"))
        client = mlflow.MlflowClient()
        first = client.get_model_version_by_alias(NAME, "champion")
        second = mlflow.register_model(first.source, NAME).version
    env = {**os.environ, "MLFLOW_TRACKING_URI": ws.uri, "PYTHONPATH": str(PROJECT_ROOT)}
    return SimpleNamespace(
        ws=ws, env=env, first=str(first.version), second=str(second), log=ws.root / "logs"
    )


@pytest.fixture(scope="module")
def server(registered):
    """``python -m serving`` on two free loopback ports, serving @champion (v1)."""
    port = free_port_pair()
    output = registered.ws.root / "mlserver.log"
    with open(output, "w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(port),
             "--mlserver", str(SERVE_BIN / "mlserver")],
            cwd=registered.ws.root, env=registered.env, stdout=sink, stderr=sink,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        wait_for_http(
            f"http://127.0.0.1:{port}/v2/models/{NAME}/ready",
            timeout=180,
            alive=lambda: process.poll() is None,
        )
        yield SimpleNamespace(port=port, output=output, process=process)
    finally:
        process.terminate()
        process.wait(timeout=60)


def _request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _infer(port: int, image: np.ndarray) -> tuple[int, dict]:
    request = {"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "UINT8",
                           "data": image.astype(int).ravel().tolist()}]}  # fmt: skip
    return _request(port, "POST", f"/v2/models/{NAME}/infer", request)


def _image(seed: int) -> np.ndarray:
    """A digit-like image of its own (its digest names it in the log)."""
    image = np.zeros((28, 28), np.uint8)
    rng = np.random.default_rng(seed)
    image[6:22, 10:18] = rng.integers(100, 256, (16, 8))
    return image


def _records(folder: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("requests/requests-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _logged(folder: Path, count: int, timeout: float = 30) -> list[dict]:
    """The log's records once it holds ``count`` (the writer is a thread of the server)."""
    deadline = time.monotonic() + timeout
    while True:
        records = _records(folder)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _reload(registered, port: int, *args: str) -> subprocess.CompletedProcess:
    return run_module(
        "serving", "reload", "--port", str(port), *args,
        cwd=registered.ws.root, env=registered.env, timeout=300,
    )  # fmt: skip


def _set_champion(registered, version: str) -> None:
    with registered.ws.store():
        from tracking.registry import set_alias

        set_alias(NAME, "champion", version)


def test_the_champion_moves_and_the_running_server_switches_without_a_failed_request(
    registered, server
) -> None:
    port, first, second = server.port, registered.first, registered.second
    model_dir = registered.ws.root / ".serve" / str(port) / NAME
    status, metadata = _request(port, "GET", f"/v2/models/{NAME}")
    assert status == 200 and metadata["versions"] == [first]

    # nothing moved: said in one line, nothing touched
    same = _reload(registered, port)
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines() == [
        f"serving: http://127.0.0.1:{port} already serves {NAME} v{first} (@champion); "
        "nothing to do"
    ]
    assert sorted(p.name for p in model_dir.iterdir()) == ["model", "model-settings.json"]

    before, after = _image(1), _image(2)
    assert _infer(port, before)[0] == 200

    # a client sending one request after another, all through the switch
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        images = [_image(seed) for seed in range(10, 20)]
        while not stop.is_set():
            status, reply = _infer(port, images[len(answers) % len(images)])
            answers.append((status, reply.get("model_version")))
            time.sleep(0.01)  # continuous, leaving the two cores to the server and the reload

    sender = threading.Thread(target=client)
    sender.start()
    try:
        while len(answers) < 20:
            time.sleep(0.05)
        _set_champion(registered, second)
        switched = _reload(registered, port)
        sent_at_switch = len(answers)
        while len(answers) < sent_at_switch + 20:
            time.sleep(0.05)
    finally:
        stop.set()
        sender.join(timeout=120)
    assert switched.returncode == 0, switched.stderr
    assert switched.stdout.splitlines() == [
        f"serving: switched {NAME} from v{first} to v{second} (@champion) on "
        f"http://127.0.0.1:{port}"
    ]
    print(f"{len(answers)} requests during the test, {sent_at_switch} before the reload ended")

    # every request answered, v1 until the switch, v2 from then on
    assert {status for status, _ in answers} == {200}, answers
    versions = [version for _, version in answers]
    switch = versions.index(second)
    assert versions[:switch] == [first] * switch and switch >= 20
    assert versions[switch:] == [second] * (len(versions) - switch)

    status, metadata = _request(port, "GET", f"/v2/models/{NAME}")
    assert status == 200 and metadata["versions"] == [second]
    assert _infer(port, after)[1]["model_version"] == second
    # the old version's folder is gone
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "model-settings.json",
        f"model-v{second}",
    ]
    settings = json.loads((model_dir / "model-settings.json").read_text())
    assert settings["parameters"]["version"] == second
    assert settings["parameters"]["uri"] == f"./model-v{second}"

    # the request log: each answer with the version that gave it, the old log closed whole
    records = _logged(registered.log, len(answers) + 2)
    assert len(records) == len(answers) + 2
    by_digest = {record["digest"]: record["version"] for record in records}
    assert by_digest[image_digest(before.astype(np.float32))] == first
    assert by_digest[image_digest(after.astype(np.float32))] == second
    logged = [record["version"] for record in records]
    assert logged.count(first) == versions.count(first) + 1
    assert logged.count(second) == versions.count(second) + 1
    assert {record["alias"] for record in records} == {"champion"}
    output = server.output.read_text()
    assert f"serving: loaded {NAME} v{first} (@champion)" in output
    assert f"serving: loaded {NAME} v{second} (@champion)" in output

    # and back: @champion returns to v1, the same way
    _set_champion(registered, first)
    back = _reload(registered, port)
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip().endswith(f"from v{second} to v{first} (@champion) on "
                                        f"http://127.0.0.1:{port}")  # fmt: skip
    assert _infer(port, after)[1]["model_version"] == first
    assert sorted(p.name for p in model_dir.iterdir()) == ["model-settings.json", f"model-v{first}"]


def test_a_missing_alias_is_one_line_and_the_server_keeps_serving(registered, server) -> None:
    status, metadata = _request(server.port, "GET", f"/v2/models/{NAME}")
    served = metadata["versions"][0]
    settings = registered.ws.root / ".serve" / str(server.port) / NAME / "model-settings.json"
    kept = settings.read_bytes()
    result = _reload(registered, server.port, "--alias", "nope")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"serving: error: models:/{NAME}@nope: no such registered model or alias; "
        f"http://127.0.0.1:{server.port} goes on serving {NAME} v{served}"
    ]
    assert settings.read_bytes() == kept
    assert _infer(server.port, _image(3))[0] == 200


def test_a_version_without_the_served_contract_is_refused_and_the_old_one_served(
    registered, server
) -> None:
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    images = np.zeros((2, 28, 28), np.float32)
    with registered.ws.store():
        with mlflow.start_run():  # as export logged it before: unnamed tensors, plain pyfunc
            logged = mlflow.onnx.log_model(
                onnx.load(registered.ws.root / "export" / "model.onnx"),
                name="onnx_model",
                signature=infer_signature(images, np.zeros((2, 10), np.float32)),
            )
        legacy = mlflow.register_model(logged.model_uri, NAME).version
        mlflow.MlflowClient().set_registered_model_alias(NAME, "legacy", legacy)
    _, metadata = _request(server.port, "GET", f"/v2/models/{NAME}")
    served = metadata["versions"][0]
    model_dir = registered.ws.root / ".serve" / str(server.port) / NAME
    files = sorted(p.name for p in model_dir.iterdir())
    kept = (model_dir / "model-settings.json").read_bytes()
    result = _reload(registered, server.port, "--alias", "legacy")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"serving: error: {NAME} v{legacy} (@legacy) was registered before the served contract "
        "(signature image -> probabilities, inputs checked by digits_predict.pyfunc); export a "
        "new version (`dvc repro -f export`) and serve it (ALIAS=candidate)"
    ]
    assert sorted(p.name for p in model_dir.iterdir()) == files
    assert (model_dir / "model-settings.json").read_bytes() == kept
    assert not list(model_dir.parent.glob(".download-*"))
    assert _infer(server.port, _image(4))[1]["model_version"] == served


def test_a_reload_without_a_server_is_one_line(registered, tmp_path) -> None:
    port = free_port()
    result = _reload(registered, port)
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"serving: error: no server answers on http://127.0.0.1:{port} (")
    assert line.endswith(f"start one with `make serve SERVE_PORT={port}`")
