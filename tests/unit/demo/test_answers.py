"""``POST /answers`` on the page's server (in this process, on loopback): a good report, naming
a page id the server handed out, lands in the request log under the version the server
knows; every bad one is a 4xx with one line and nothing logged, whatever number it holds;
one page id, and all of them together, are held to their limits a minute."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.request_log import RequestLog, ServedModel
from monitor.window import read_window

FP32 = ServedModel("mnist-digits", "4", "champion")
PER_PAGE, IN_ALL = 5, 8


@pytest.fixture
def server(tmp_path, running, answers, pages):
    log = RequestLog(tmp_path / "log", "page")
    limit = pages.RateLimit(PER_PAGE, IN_ALL, "answers")
    page_answers = answers.PageAnswers(log, {"fp32": FP32}, pages.PageIds(), limit)
    _, client = running(answers=page_answers)
    try:
        yield client, tmp_path / "log", log
    finally:
        log.close()


def _answer(page: str | None = "", **change) -> str:
    image = np.zeros((28, 28))
    image[4:24, 12:16] = 255
    probabilities = [0.02] * 10
    probabilities[1] = 0.82
    report = {
        "page": page,
        "model": "fp32",
        "image": image.ravel().tolist(),
        "probabilities": probabilities,
    }
    report.update(change)
    return json.dumps({k: v for k, v in report.items() if v is not None})


def _with_pixel(text: str, where: str = "image") -> str:
    """An answer whose first ``where`` value is ``text`` as it is (JSON that json.dumps
    would not write: a number of thousands of digits, 1e400)."""
    report = json.loads(_answer())
    report[where][0] = "@"
    return json.dumps(report).replace('"@"', text, 1)


def _logged(folder, log) -> int:
    log.flush()
    return 0 if not folder.exists() else len(read_window(folder))


def test_a_reported_answer_is_logged_under_the_servers_version(server) -> None:
    client, folder, log = server
    assert client.request("POST", "/answers", _answer(client.session())) == (204, "")
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
    (_answer(image=["0"] * 784), "image holds '0', which is not a number"),
    (_answer(image=[300] * 784), "image values must be pixel values 0..255; found 300"),
    (_answer(image=[True] * 784), "image holds True, which is not a number"),
    (_answer(image=[-1] * 784), "image values must be pixel values 0..255; found -1"),
    (_answer(probabilities=[0.1] * 9), "probabilities has 9 values"),
    (_answer(probabilities=[0.5] * 10), "probabilities sum to 5.0000; expected 1"),
    (_answer(probabilities=[-1, 2] + [0] * 8), "probabilities values must be within 0..1"),
    (_answer().replace("0.82", "NaN"), "probabilities values must be within 0..1; found nan"),
    # numbers that cannot be pixels, however JSON writes them
    (_with_pixel("9" * 4000), "pixel values 0..255; found a number of 4000 digits"),
    (_with_pixel("-" + "9" * 4000), "pixel values 0..255; found a negative number of 4000 digits"),
    (_with_pixel("9" * 5000), "pixel values 0..255; found a number of 5000 digits"),
    (_with_pixel("1" + "0" * 33), "pixel values 0..255; found a number of 34 digits"),
    (_with_pixel("1" + "0" * 20), "pixel values 0..255; found 100000000000000000000"),
    (_with_pixel("1e400"), "pixel values 0..255; found inf"),
    (_with_pixel("-1e400"), "pixel values 0..255; found -inf"),
    (_with_pixel("Infinity"), "pixel values 0..255; found inf"),
    (_with_pixel("NaN"), "pixel values 0..255; found nan"),
    (_with_pixel("-0.5"), "pixel values 0..255; found -0.5"),
    (_with_pixel("true"), "image holds True, which is not a number"),
    (_with_pixel("null"), "image holds None, which is not a number"),
    (_with_pixel("9" * 5000, "probabilities"), "within 0..1; found a number of 5000 digits"),
]


@pytest.mark.parametrize(("body", "said"), BAD)
def test_a_bad_report_is_400_with_one_line_and_nothing_logged(server, body, said) -> None:
    client, folder, log = server
    body = body.replace('"page": ""', json.dumps({"page": client.session()})[1:-1])
    status, text = client.request("POST", "/answers", body)
    assert status == 400 and said in text and text.count("\n") == 1, text
    assert len(text) < 300, "a line, however long what was sent"
    assert _logged(folder, log) == 0


@pytest.mark.parametrize("page", ["made-up-by-the-client", "", 12, None, "x" * 40_000], ids=repr)
def test_a_page_id_the_server_did_not_hand_out_is_400_and_nothing_logged(server, page) -> None:
    client, folder, log = server
    client.session()
    body = _answer(page) if page is not None else _answer(None)
    status, text = client.request("POST", "/answers", body)
    assert status == 400 and text.count("\n") == 1, text
    said = "expected an object with keys" if page is None else "not an id this server handed out"
    assert said in text, text
    assert _logged(folder, log) == 0


def test_one_page_id_and_all_of_them_are_held_to_their_limits(server) -> None:
    client, folder, log = server
    flooder, honest = client.session(), client.session()
    statuses = [client.request("POST", "/answers", _answer(flooder))[0] for _ in range(12)]
    assert statuses == [204] * PER_PAGE + [429] * 7, statuses
    # the refused ones took nothing from the others: the honest page's answers are logged
    assert client.request("POST", "/answers", _answer(honest))[0] == 204
    others = [client.session() for _ in range(3)]
    statuses = [client.request("POST", "/answers", _answer(page))[0] for page in others]
    assert statuses == [204, 204, 429], statuses  # IN_ALL a minute from all pages together
    status, text = client.request("POST", "/answers", _answer(honest))
    assert status == 429 and "a minute from all pages together" in text
    assert _logged(folder, log) == IN_ALL


@pytest.mark.parametrize(
    ("headers", "path", "status", "said"),
    [
        ({"Origin": "http://evil.example"}, "/answers", 403, "not http://evil.example"),
        ({"Content-Type": "text/plain"}, "/answers", 415, "expected Content-Type application"),
        ({"Host": "evil.example:8120"}, "/answers", 400, "Host 'evil.example:8120'"),
        ({}, "/index.html", 404, "nothing here takes a POST"),
    ],
)
def test_other_origins_types_hosts_and_paths_are_refused(server, headers, path, status, said):
    client, folder, log = server
    got, text = client.request("POST", path, _answer(client.session()), headers)
    assert got == status and said in text and text.count("\n") == 1, text
    assert _logged(folder, log) == 0


def test_an_oversized_body_is_413_before_it_is_read(server, answers) -> None:
    client, folder, log = server
    status, text = client.request("POST", "/answers", b"x" * (answers.MAX_ANSWER_BYTES + 1))
    assert status == 413 and f"at most {answers.MAX_ANSWER_BYTES}" in text
    assert _logged(folder, log) == 0


def test_a_server_without_a_log_or_a_store_takes_no_post(running) -> None:
    _, client = running()
    for path in ("/answers", "/session", "/feedback"):
        assert client.request("POST", path, _answer())[0] == 404, path
