"""The served model under many clients at once, asked by locust (``bench/locustfile.py``,
the load benchmark's tool): nothing lost, memory bounded, a SIGKILL leaving whole lines, and
beyond its queue quick 503s instead of waits. ``python -m serving`` on loopback, as ``make
serve`` runs it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from factories.served import NAME, SERVE_BIN, registered_tiny, served, start_serving, wait_ready
from harness.load import peak_rss_mb, run_locust
from harness.network import free_port_pair
from monitor.window import read_window

# what the served tiny model's server may hold at its peak under load (it starts near 250 MB)
RSS_BOUND_MB = 600


@pytest.fixture(scope="module")
def registered(tmp_path_factory, mlflow_template_db) -> SimpleNamespace:
    model = registered_tiny(tmp_path_factory.mktemp("load"), mlflow_template_db)
    model.load_images = model.ws.root / "load-images.npz"
    np.savez(model.load_images, x=model.images.astype(np.float32))
    return model


def _log_lines(folder: Path) -> list[bytes]:
    return [line for path in sorted(folder.glob("requests-*.jsonl"))
            for line in path.read_bytes().splitlines(keepends=True)]  # fmt: skip


def _settled(folder: Path, expected: int, timeout: float = 10) -> list[bytes]:
    """The log's lines once its writer has caught up with ``expected`` (it writes every
    quarter second), or what it holds after ``timeout``."""
    deadline = time.monotonic() + timeout
    while len(lines := _log_lines(folder)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return lines


def test_32_clients_for_20_s_get_every_answer_and_each_is_logged_once(registered) -> None:
    log_dir = registered.ws.root / "logs" / "requests"
    before = len(_log_lines(log_dir))
    with served(registered) as server:
        http_run = run_locust(SERVE_BIN, "http", 32, 20, server.base, NAME,
                              registered.load_images, registered.env)  # fmt: skip
        grpc_run = run_locust(SERVE_BIN, "grpc", 64, 5, f"http://127.0.0.1:{server.port + 1}",
                              NAME, registered.load_images, registered.env)  # fmt: skip
        answers = http_run["all_answers"] + grpc_run["all_answers"]
        lines = _settled(log_dir, before + answers)[before:]
        peak = peak_rss_mb(server.server.pid)
    for run in (http_run, grpc_run):
        assert run["errors"] == 0, run["errors_by_kind"]
    assert http_run["answers"] > 1000, http_run  # a real load: hundreds a second at least
    assert len(lines) == answers, (len(lines), answers)
    records = [json.loads(line) for line in lines]
    assert all(line.endswith(b"\n") for line in lines)
    assert len({(r["request"], r["index"]) for r in records}) == answers, "one line per answer"
    assert peak < RSS_BOUND_MB, peak


def test_a_server_killed_under_load_leaves_whole_lines_and_its_restart_logs_beside(
    registered, tmp_path
) -> None:
    log_dir = registered.ws.root / "logs" / "requests"
    files_before = set(log_dir.glob("requests-*.jsonl"))
    port = free_port_pair()
    output = tmp_path / "server.log"
    server = start_serving(registered, port, output)
    try:
        wait_ready(port, server)
        killed: dict[str, float] = {}

        def kill_midway() -> None:
            time.sleep(4)
            killed["at"] = time.monotonic()
            os.kill(server.pid, signal.SIGKILL)  # `python -m serving` became the server

        threading.Thread(target=kill_midway, daemon=True).start()
        cut = run_locust(SERVE_BIN, "http", 32, 8, f"http://127.0.0.1:{port}", NAME,
                         registered.load_images, registered.env)  # fmt: skip
        server.wait(timeout=30)
        assert server.returncode == -signal.SIGKILL and "at" in killed
        assert cut["errors"] > 0, "locust saw the server go"  # it kept asking after the kill
        first_files = set(log_dir.glob("requests-*.jsonl")) - files_before
        assert len(first_files) == 1, first_files
        server = start_serving(registered, port, output)
        wait_ready(port, server)
        again = run_locust(SERVE_BIN, "http", 8, 3, f"http://127.0.0.1:{port}", NAME,
                           registered.load_images, registered.env)  # fmt: skip
        assert again["errors"] == 0, again["errors_by_kind"]
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    files = set(log_dir.glob("requests-*.jsonl")) - files_before
    (restarted,) = files - first_files  # a file of its own, beside the killed server's
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path.name} ends in part of a line"
        for line in data.splitlines():
            json.loads(line)  # whole records only
    assert len(restarted.read_bytes().splitlines()) == again["all_answers"], again
    assert len(read_window(log_dir)) >= again["all_answers"]  # what `make monitor` reads


def test_256_clients_are_answered_or_refused_at_once_and_none_waits_past_its_timeout(
    registered,
) -> None:
    """Eight times the clients of the 32-client test: each request is answered, or refused
    with 503 and Retry-After; none waits past the client's 10 s, memory stays bounded."""
    with served(registered) as server:
        run = run_locust(SERVE_BIN, "http", 256, 10, server.base, NAME, registered.load_images,
                         registered.env)  # fmt: skip
        peak = peak_rss_mb(server.server.pid)
        after = run_locust(SERVE_BIN, "http", 1, 2, server.base, NAME, registered.load_images,
                           registered.env)  # fmt: skip
    refusals = {kind for kind in run["errors_by_kind"] if kind.startswith("HTTP 503")}
    assert set(run["errors_by_kind"]) == refusals <= {"HTTP 503, Retry-After 1"}, run
    assert run["answers"] > 1000 and run["slowest_ms"] < 10_000, run
    assert peak < RSS_BOUND_MB, peak
    assert after["errors"] == 0 and after["answers"] > 0, after


def _stall_a_body(port: int) -> socket.socket:
    """A request whose headers announce 100 bytes of body, of which one comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST /v2/models/{NAME}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
    )
    return sock


def test_past_its_queue_a_request_gets_503_with_retry_after_at_once(registered) -> None:
    """Four bodies in hand (stalled, each holding its place up to 2 s) fill a queue of four:
    the next request is refused at once, and answered once the stalled ones are let go."""
    image = registered.images[0].astype(np.float32).ravel().tolist()
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32",
                                   "data": image}]}).encode()  # fmt: skip
    with served(registered, "--max-queued", "4") as server:
        stalled = [_stall_a_body(server.port) for _ in range(4)]
        time.sleep(0.5)  # their first bytes are in: four requests in hand
        started = time.monotonic()
        refused = _post(server.port, body)
        refused_in = time.monotonic() - started
        time.sleep(3)  # past the 2 s a stalled body may pause: they get 408 and go
        answered = _post(server.port, body)
        for sock in stalled:
            sock.close()
    status, headers, error = refused
    assert status == 503 and refused_in < 1, (refused, refused_in)
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert "4 requests in hand" in error and "try again in 1 s" in error
    assert answered[0] == 200, answered


def _post(port: int, body: bytes) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", f"/v2/models/{NAME}/infer", body,
                           {"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        text = response.read().decode()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, text
    finally:
        connection.close()
