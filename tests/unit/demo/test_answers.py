"""``POST /answers`` on the page's server (in this process, on loopback): a good report lands
in the request log under the version the server knows; every bad one is a 4xx with one line
and nothing logged."""

from __future__ import annotations

import http.client
import json
import threading

import numpy as np
import pytest

from monitor.request_log import RequestLog, ServedModel
from monitor.window import read_window

FP32 = ServedModel("mnist-digits", "4", "champion")


@pytest.fixture
def server(tmp_path, serve, answers):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!DOCTYPE html><title>digits</title>\n")
    log = RequestLog(tmp_path / "log", "page")
    server = serve.make_server(site, 0, answers=answers.PageAnswers(log, {"fp32": FP32}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, tmp_path / "log", log
    finally:
        server.shutdown()
        server.server_close()
        log.close()


def _post(server, body: bytes | str, headers: dict | None = None, path: str = "/answers"):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    data = body.encode() if isinstance(body, str) else body
    sent = {"Content-Type": "application/json", "Origin": f"http://{host}:{port}"}
    sent.update(headers or {})
    connection.request("POST", path, body=data, headers={k: v for k, v in sent.items() if v})
    response = connection.getresponse()
    reply = response.status, response.read().decode()
    connection.close()
    return reply


def _answer(**change) -> str:
    image = np.zeros((28, 28))
    image[4:24, 12:16] = 255
    probabilities = [0.02] * 10
    probabilities[1] = 0.82
    report = {"model": "fp32", "image": image.ravel().tolist(), "probabilities": probabilities}
    report.update(change)
    return json.dumps({k: v for k, v in report.items() if v is not None})


def test_a_reported_answer_is_logged_under_the_servers_version(server) -> None:
    site_server, folder, log = server
    assert _post(site_server, _answer()) == (204, "")
    log.flush()
    (record,) = read_window(folder).to_dict("records")
    assert (record["source"], record["model"], str(record["version"]), record["alias"]) == (
        "page", "mnist-digits", "4", "champion",
    )  # fmt: skip
    assert record["digit"] == 1 and record["probability"] == pytest.approx(0.82)
    assert (record["height"], record["width"]) == (20, 4)


BAD = [
    ("not json", "the body is not JSON"),
    ("[1, 2]", "expected an object with keys"),
    (_answer(extra=1), "expected an object with keys"),
    (_answer(model="int8"), "model 'int8' is not one this page serves"),
    (_answer(image=[0] * 783), "image has 783 values; expected a list of 784 numbers"),
    (_answer(image=[[0] * 28] * 28), "image has 28 values; expected a list of 784"),
    (_answer(image=["0"] * 784), "image holds something that is not a finite number"),
    (_answer(image=[300] * 784), "image values must be pixel values 0..255"),
    (_answer(image=[True] * 784), "not a finite number"),
    (_answer(probabilities=[0.1] * 9), "probabilities has 9 values"),
    (_answer(probabilities=[0.5] * 10), "probabilities sum to 5.0000; expected 1"),
    (_answer(probabilities=[-1, 2] + [0] * 8), "probabilities must each be within 0..1"),
    (_answer().replace("0.82", "NaN"), "not a finite number"),
]


@pytest.mark.parametrize(("body", "said"), BAD)
def test_a_bad_report_is_400_with_one_line_and_nothing_logged(server, body, said) -> None:
    site_server, folder, log = server
    status, text = _post(site_server, body)
    assert status == 400 and said in text and text.count("\n") == 1, text
    log.flush()
    assert not folder.exists() or read_window(folder).empty


@pytest.mark.parametrize(
    ("headers", "path", "status", "said"),
    [
        ({"Origin": "http://evil.example"}, "/answers", 403, "not http://evil.example"),
        ({"Content-Type": "text/plain"}, "/answers", 415, "expected Content-Type application"),
        ({}, "/index.html", 404, "nothing here takes a POST"),
    ],
)
def test_other_origins_types_and_paths_are_refused(server, headers, path, status, said) -> None:
    site_server, folder, log = server
    got, text = _post(site_server, _answer(), headers, path)
    assert got == status and said in text, text
    log.flush()
    assert not folder.exists()


def test_an_oversized_body_is_413_before_it_is_read(server, answers) -> None:
    site_server, folder, _ = server
    status, text = _post(site_server, b"x" * (answers.MAX_ANSWER_BYTES + 1))
    assert status == 413 and f"at most {answers.MAX_ANSWER_BYTES}" in text
    assert not folder.exists()


def test_a_server_without_a_log_takes_no_post(tmp_path, serve) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!DOCTYPE html><title>digits</title>\n")
    server = serve.make_server(site, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _post(server, _answer())[0] == 404
    finally:
        server.shutdown()
        server.server_close()
