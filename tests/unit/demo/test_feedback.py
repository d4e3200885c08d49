"""``POST /feedback`` on the page's server (in this process, on loopback): a correction is
stored once per image with the version the server knows; every bad submission is a 4xx with
one line and nothing stored; one page cannot flood the store."""

from __future__ import annotations

import http.client
import json
import threading

import numpy as np
import pytest

from monitor.request_log import ServedModel, image_digest

FP32 = ServedModel("mnist-digits", "4", "champion")


def _image(shift: int = 0) -> np.ndarray:
    image = np.zeros((28, 28), dtype=np.float32)
    image[4:24, 12 + shift : 16 + shift] = 255
    return image


@pytest.fixture
def server(tmp_path, serve, feedback):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!DOCTYPE html><title>digits</title>\n")
    store = feedback.FeedbackStore(tmp_path / "store")
    limit = feedback.RateLimit(per_key=5, total=8)
    page_feedback = feedback.PageFeedback(store, {"fp32": FP32}, limit)
    server = serve.make_server(site, 0, feedback=page_feedback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, tmp_path / "store"
    finally:
        server.shutdown()
        server.server_close()


def _request(server, method: str, body: bytes | str | None = None, headers: dict | None = None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    sent = {"Content-Type": "application/json", "Origin": f"http://{host}:{port}"}
    sent.update(headers or {})
    data = body.encode() if isinstance(body, str) else body
    connection.request(method, "/feedback", body=data, headers={k: v for k, v in sent.items() if v})
    response = connection.getresponse()
    reply = response.status, response.read().decode()
    connection.close()
    return reply


def _correction(**change) -> str:
    report = {
        "page": "page-0123456789",
        "model": "fp32",
        "image": _image().ravel().tolist(),
        "answer": 7,
        "label": 1,
    }
    report.update(change)
    return json.dumps({k: v for k, v in report.items() if v is not None})


def _stored(folder) -> list[dict]:
    return (
        [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        if folder.exists()
        else []
    )


def test_a_correction_is_stored_once_per_image_with_the_servers_version(server) -> None:
    site_server, folder = server
    assert _request(site_server, "GET") == (200, '{"count": 0}')
    status, text = _request(site_server, "POST", _correction())
    assert (status, json.loads(text)) == (201, {"stored": True, "count": 1})
    # the same image again, from another page, with another label: the first one stays
    status, text = _request(site_server, "POST", _correction(page="another-page-id", label=2))
    assert (status, json.loads(text)) == (200, {"stored": False, "count": 1})
    status, text = _request(site_server, "POST", _correction(image=_image(3).ravel().tolist()))
    assert (status, json.loads(text)) == (201, {"stored": True, "count": 2})
    records = {r["digest"]: r for r in _stored(folder)}
    first = records[image_digest(_image())]
    assert (first["label"], first["answer"], first["version"], first["alias"]) == (
        1, 7, "4", "champion",
    )  # fmt: skip
    assert np.array(first["image"]).reshape(28, 28).tolist() == _image().tolist()
    assert (folder / f"{first['digest']}.json").is_file()
    assert not list(folder.glob(".partial-*")), "no half-written file left"
    assert _request(site_server, "GET") == (200, '{"count": 2}')


BAD = [
    ("not json", "the body is not JSON"),
    (_correction(extra=1), "expected an object with keys"),
    (_correction(page="short"), "page must be the page's id"),
    (_correction(model="int8"), "model 'int8' is not one this page serves"),
    (_correction(label=10), "label = 10: expected a digit 0..9"),
    (_correction(label=-1), "label = -1: expected a digit 0..9"),
    (_correction(label="3"), "label = '3': expected a digit 0..9"),
    (_correction(label=True), "label = True: expected a digit 0..9"),
    (_correction(answer=12), "answer = 12: expected a digit 0..9"),
    (_correction(image=[0] * 100), "image has 100 values; expected a list of 784 numbers"),
    (_correction(image=[300] * 784), "image values must be pixel values 0..255"),
    (_correction(image=[0] * 784), "the image is blank"),
    (_correction(image=[100] * 784), "the image is blank"),
]


@pytest.mark.parametrize(("body", "said"), BAD)
def test_a_bad_submission_is_400_with_one_line_and_nothing_stored(server, body, said) -> None:
    site_server, folder = server
    status, text = _request(site_server, "POST", body)
    assert status == 400 and said in text and text.count("\n") == 1, text
    assert _stored(folder) == []


def test_other_origins_types_and_oversized_bodies_are_refused(server, feedback) -> None:
    site_server, folder = server
    assert _request(site_server, "POST", _correction(), {"Origin": "http://evil.example"})[0] == 403
    assert _request(site_server, "POST", _correction(), {"Content-Type": "text/plain"})[0] == 415
    status, text = _request(site_server, "POST", b"x" * (64 * 1024 + 1))
    assert status == 413 and "at most" in text
    assert _stored(folder) == []


def test_one_page_is_limited_per_minute_and_so_are_all_pages(server) -> None:
    site_server, folder = server
    statuses = [
        _request(site_server, "POST", _correction(image=_image(k % 8 - 4).ravel().tolist(),
                                                  label=k % 10))[0]
        for k in range(6)
    ]  # fmt: skip
    assert statuses[:5] == [201] * 5 and statuses[5] == 429, statuses
    status, text = _request(
        site_server, "POST", _correction(page="second-page-id", image=_image(-6).ravel().tolist())
    )
    assert status == 201, text
    many = [
        _request(site_server, "POST", _correction(page=f"page-number-{k}", answer=k % 10))[0]
        for k in range(3)
    ]
    assert 429 in many, many  # 8 a minute in all
    last = _request(site_server, "POST", _correction(page="page-number-x"))
    assert last[0] == 429 and "a minute in all" in last[1]
    assert len(_stored(folder)) == 6


def test_the_rate_limit_forgets_after_a_minute(feedback) -> None:
    limit = feedback.RateLimit(per_key=2, total=10)
    limit.take("a", now=0.0)
    limit.take("a", now=1.0)
    with pytest.raises(feedback.TooMany, match="more than 2 corrections a minute from this page"):
        limit.take("a", now=2.0)
    limit.take("a", now=61.0)
