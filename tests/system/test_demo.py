"""The draw-a-digit page (``demo/``) in a real browser, against the Python side it mirrors.

A tiny model is trained and exported here; the site is built around it by ``demo.build``
and served by ``demo.serve`` on a free loopback port. Strokes are drawn with Playwright's
mouse, PNGs go in through the file input and by drag and drop, and what the page publishes
(``window.lastResult``: the 28x28 input, the probabilities, the digit) is checked against
``digits_predict``: the same pixels as ``to_mnist_form``, the same probabilities as the
``Predictor``, the same blank verdicts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import importlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from PIL import Image

from digits_predict import InputError, Predictor, load_image, to_mnist_form
from digits_predict import images as python_images
from factories.processes import run_module
from factories.trained import export_args, train_tiny
from feedback.store import FeedbackStore
from harness.browser import chromium, draw_stroke, last_result_sequence
from harness.network import free_port, wait_for_http
from kernel.paths import PROJECT_ROOT
from stages import export
from stages.handoff.onnx_runtime import set_metadata
from stages.handoff.quantization import quantize_model

# How far (in levels of 255) the page's 28x28 input may be from Python's for the same
# picture. Both resample with Pillow's Lanczos-3 weights in Pillow's order, so only float
# rounding can part them: the pictures below come out identical, and 1.5e-5 is the largest
# difference seen on any picture (a noisy one, where summation order shows).
PIXEL_TOLERANCE = 1e-3
# onnxruntime-web (WebAssembly) and onnxruntime (native) on the same input.
PROBABILITY_TOLERANCE = 1e-5
# Strokes in pad pixels, one list of points per stroke.
SEVEN = [[(70, 60), (210, 60), (120, 235)]]
FOUR = [[(165, 40), (70, 170), (215, 170)], [(165, 100), (165, 250)]]
ZERO = [
    [
        (140 + 60 * np.sin(angle), 140 - 95 * np.cos(angle))
        for angle in np.linspace(0, 2 * np.pi, 25)
    ]
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, mlflow_template_db) -> SimpleNamespace:
    """A tiny model trained and exported in a folder of its own, and the digits it was tested on."""
    ws = train_tiny(tmp_path_factory.mktemp("demo"), mlflow_template_db)
    out = ws.root / "export"
    with ws.store():
        export.main(export_args(ws, out))
    x_test, _ = ws.splits["test"]
    model = out / "model.onnx"
    return SimpleNamespace(
        root=ws.root, model=model, images=x_test, predictor=Predictor(model), ws=ws
    )


def _build(out: Path, *model_args: str | Path) -> str:
    """``python -m demo.build --out out ...``; returns what it said."""
    built = run_module("demo.build", "--out", out, *model_args, cwd=PROJECT_ROOT)
    assert built.returncode == 0, built.stderr
    return built.stderr


@contextlib.contextmanager
def _server(site: Path, *args: str | Path, log: Path | None = None) -> Iterator[SimpleNamespace]:
    """``python -m demo.serve`` (with ``args``) on a free loopback port, stopped afterwards;
    yields its URL, its port, its process and the file its stdout and stderr go to."""
    port = free_port()
    log = log or site.with_name(f"{site.name}-serve.log")
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "demo.serve",
                "--site",
                str(site),
                "--port",
                str(port),
                *map(str, args),
            ],  # fmt: skip
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            stdout=sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, timeout=30, alive=lambda: server.poll() is None, poll=0.1)
        yield SimpleNamespace(url=url, port=port, process=server, log=log)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert f"demo: the page is on {url}" in log.read_text()


@contextlib.contextmanager
def _served(site: Path) -> Iterator[str]:
    """``python -m demo.serve`` on a free loopback port, stopped afterwards; yields its URL."""
    with _server(site) as server:
        yield server.url


def _metadata_props(model_bytes: bytes) -> dict[str, str]:
    return {entry.key: entry.value for entry in onnx.load_from_string(model_bytes).metadata_props}


def _with_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """``model_bytes`` with ``metadata`` for its metadata_props."""
    model = onnx.load_from_string(model_bytes)
    set_metadata(model, metadata)
    return model.SerializeToString()


def _quantized(fp32: Path, out: Path, made_from: str | None = None) -> Path:
    """The fp32 model quantized to int8 (dynamic, as the quantize stage does an MLP), with
    the fp32 model's contract metadata and, as the fp32 model it was made from, the sha256
    ``made_from`` (by default the fp32 model's own)."""
    fp32_bytes = fp32.read_bytes()
    int8_bytes = quantize_model(fp32_bytes, "dynamic", np.empty((0, 28, 28), np.float32))
    made_from = made_from or hashlib.sha256(fp32_bytes).hexdigest()
    metadata = {**_metadata_props(fp32_bytes), "fp32_model_sha256": made_from}
    out.write_bytes(_with_metadata(int8_bytes, metadata))
    return out


@pytest.fixture(scope="module")
def int8(tiny) -> SimpleNamespace:
    """The tiny model quantized: a second model that answers differently from the first."""
    model = _quantized(tiny.model, tiny.root / "model.int8.onnx")
    return SimpleNamespace(model=model, predictor=Predictor(model))


@pytest.fixture
def demo_module(monkeypatch):
    """Imports a module of ``demo`` into this process (the project root joins the path)."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    return importlib.import_module


@pytest.fixture(scope="module")
def site(tiny, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site") / "site"
    said = _build(site, "--model", tiny.model)
    assert "with fp32" in said, said
    return site


@pytest.fixture(scope="module")
def served(site) -> Iterator[SimpleNamespace]:
    with _server(site) as server:
        yield server


@pytest.fixture(scope="module")
def site_url(served) -> str:
    return served.url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def _open(browser, url: str, model_state: str = "ready"):
    page = browser.new_page(viewport={"width": 800, "height": 700})
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    page.wait_for_function("document.body.dataset.modelState !== 'loading'", timeout=30000)
    assert page.evaluate("document.body.dataset.modelState") == model_state
    # the empty pad's own blank verdict comes first; wait for it so it is not mistaken later
    page.wait_for_function("window.lastResult && window.lastResult.sequence >= 1")
    return page


@pytest.fixture
def page(browser, site_url):
    page = _open(browser, site_url)
    yield page
    errors = page.errors
    page.close()
    assert not errors, errors


def _after(page, before: int) -> dict:
    """The page's next result after the one numbered ``before``."""
    page.wait_for_function(f"window.lastResult && window.lastResult.sequence > {before}")
    return page.evaluate("window.lastResult")


def _draw(page, strokes) -> dict:
    """Draw ``strokes`` (pad pixels) with the mouse; the page's answer to the last one."""
    for stroke in strokes:
        result = _after(page, draw_stroke(page, stroke, steps=10))
    return result


def _drop(page, path: Path) -> None:
    """Drop ``path`` on the page as a person dragging it from a file manager would."""
    payload = base64.b64encode(path.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([name, payload]) => {
            const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""",
        [path.name, payload],
    )
    page.dispatch_event("main", "dragenter", {"dataTransfer": transfer})
    assert "dropping" in page.evaluate("document.body.className")
    page.dispatch_event("main", "drop", {"dataTransfer": transfer})


def _seen_pixels(page) -> np.ndarray:
    """The 28x28 image the page shows as the model's input, as gray levels."""
    rgba = page.evaluate(
        "Array.from(document.getElementById('seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data)"
    )
    return np.asarray(rgba, dtype=np.float64).reshape(28, 28, 4)[..., 0]


def _shown_percentages(page) -> list[float]:
    return [float(text.split()[0]) for text in page.locator("#bars .value").all_inner_texts()]


def _js_mnist_form(page, gray: np.ndarray) -> np.ndarray | str:
    """The page's module on a grayscale picture: the 28x28 result or the blank message."""
    outcome = page.evaluate(
        """async ([gray, width, height]) => {
            const form = await import("./mnist_form.mjs");
            try {
                return Array.from(form.toMnistForm(Float64Array.from(gray), width, height));
            } catch (error) {
                if (error instanceof form.BlankImageError) return error.message;
                throw error;
            }
        }""",
        [np.asarray(gray, dtype=np.float64).ravel().tolist(), gray.shape[1], gray.shape[0]],
    )
    return outcome if isinstance(outcome, str) else np.asarray(outcome).reshape(28, 28)


def _python_mnist_form(gray: np.ndarray) -> np.ndarray | str:
    try:
        return to_mnist_form(gray)
    except InputError as err:
        return str(err)


# --- 0. the page's answers in the request log -------------------------------------------------


def test_the_pages_answers_land_in_the_request_log_under_the_registry_version(
    browser, tiny, site, tmp_path, demo_module
):
    """The page posts each answer; its server logs it as the version the registry gave the
    model file it serves (looked up by the model's training digest), never the page's word."""
    import threading

    from factories.params import TINY_EXPORT
    from monitor.request_log import RequestLog, image_digest
    from monitor.window import read_window

    answers, serve = demo_module("demo.answers"), demo_module("demo.serve")
    name = TINY_EXPORT["registered_model_name"]
    with tiny.ws.store():
        identity = answers.registry_identity(tiny.model, name, "fp32", ("champion", "candidate"))
    assert (identity.name, identity.version, identity.alias) == (name, "1", "champion")
    log = RequestLog(tmp_path / "log", "page")
    server = serve.make_server(site, 0, answers=answers.PageAnswers(log, {"fp32": identity}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = _open(browser, f"http://127.0.0.1:{server.server_address[1]}/")
        result = _draw(page, SEVEN)
        deadline = time.monotonic() + 10
        while True:  # the page reports after it shows the answer
            log.flush()
            logged = read_window(tmp_path / "log") if (tmp_path / "log").exists() else None
            if (logged is not None and len(logged)) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not page.errors, page.errors
        page.close()
    finally:
        server.shutdown()
        server.server_close()
        log.close()
    assert logged is not None and len(logged) == 1, "one stroke, one answer"
    record = logged.iloc[0]
    assert (record["source"], record["model"], str(record["version"]), record["alias"]) == (
        "page", name, "1", "champion",
    )  # fmt: skip
    assert record["digit"] == result["digit"]
    assert record["probability"] == pytest.approx(max(result["probabilities"]), abs=1e-5)
    image = np.asarray(result["input"], dtype=np.float32).reshape(28, 28)
    assert record["digest"] == image_digest(image), "the image the model saw"


def test_a_model_the_registry_does_not_know_is_logged_as_unregistered(
    tiny, tmp_path, capfd, demo_module
):
    from factories.params import TINY_EXPORT

    answers = demo_module("demo.answers")

    stranger = _quantized(tiny.model, tmp_path / "other.onnx")
    metadata = {**_metadata_props(stranger.read_bytes()), "model_digest": "0" * 64}
    stranger.write_bytes(_with_metadata(stranger.read_bytes(), metadata))
    with tiny.ws.store():
        identity = answers.registry_identity(stranger, TINY_EXPORT["registered_model_name"], "fp32")
    assert identity.version == answers.UNREGISTERED and identity.alias is None
    said = capfd.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "no run tagged model_sha256 = 000000000000" in said[0], said


def test_a_correction_on_the_page_is_stored_once_with_the_version_that_answered(
    browser, tiny, site, tmp_path, demo_module
):
    """Under the answer a person says which digit it was; the server keeps the image the
    model saw with that label, once, and the page says how many it holds."""
    import threading

    from factories.params import TINY_EXPORT
    from monitor.request_log import ServedModel, image_digest

    feedback, serve = demo_module("demo.feedback"), demo_module("demo.serve")
    identity = ServedModel(TINY_EXPORT["registered_model_name"], "1", "champion")
    store = FeedbackStore(tmp_path / "store")
    server = serve.make_server(site, 0, feedback=feedback.PageFeedback(store, {"fp32": identity}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = _open(browser, f"http://127.0.0.1:{server.server_address[1]}/")
        assert page.is_hidden("#correct"), "nothing to correct before an answer"
        result = _draw(page, SEVEN)
        assert page.is_visible("#correct")
        wrong = (result["digit"] + 1) % 10
        page.click(f"#labels button[data-label='{wrong}']")
        page.wait_for_function("document.body.dataset.feedbackState === 'stored'")
        said = page.inner_text("#feedback-status")
        page.screenshot(path=str(tmp_path / "corrected.png"))
        # the same drawing again: the same image, kept once
        page.click("#clear")
        result_again = _draw(page, SEVEN)
        page.click("#right")
        page.wait_for_function("document.body.dataset.feedbackState === 'duplicate'")
        said_again = page.inner_text("#feedback-status")
        assert not page.errors, page.errors
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    assert said == (
        f"Thanks: kept as a {wrong}. 1 digit collected for the next training, 1\u00a0of them "
        "awaiting review."
    ), said
    assert said_again.startswith("Already kept. 1 digit collected"), said_again
    assert result_again["input"] == result["input"]
    assert not list((tmp_path / "store").glob("*.json")), "nothing accepted before a review"
    (kept,) = (tmp_path / "store" / "pending").glob("*.json")
    record = json.loads(kept.read_text())
    image = np.asarray(result["input"], dtype=np.float32).reshape(28, 28)
    assert record["digest"] == image_digest(image)
    assert (record["label"], record["answer"], record["version"]) == (wrong, result["digit"], "1")
    assert len(record["page"]) == 32, "the id the server handed the page"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    np.testing.assert_allclose(np.array(record["image"]).reshape(28, 28), image, atol=5e-4)


def test_the_page_asks_for_a_new_id_when_the_server_forgot_its_own(
    browser, site, tmp_path, demo_module
):
    """A restart forgets the ids handed out: the page's next correction is refused as from an
    id the server did not hand out, and the page asks for a new one and sends it again."""
    import threading

    from monitor.request_log import ServedModel

    feedback, serve = demo_module("demo.feedback"), demo_module("demo.serve")
    pages = demo_module("demo.pages")
    store = FeedbackStore(tmp_path / "store")
    page_feedback = feedback.PageFeedback(store, {"fp32": ServedModel("m", "1")})
    server = serve.make_server(site, 0, feedback=page_feedback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = _open(browser, f"http://127.0.0.1:{server.server_address[1]}/")
        _draw(page, SEVEN)
        page.click("#right")
        page.wait_for_function("document.body.dataset.feedbackState === 'stored'")
        # as after a restart: no id handed out yet
        server.pages = page_feedback.pages = pages.PageIds()
        page.click("#clear")
        _draw(page, FOUR)
        page.click("#right")
        page.wait_for_function("document.body.dataset.feedbackState === 'stored'")
        assert not page.errors, page.errors
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    ids = {json.loads(p.read_text())["page"] for p in (tmp_path / "store" / "pending").glob("*")
           if p.suffix == ".json"}  # fmt: skip
    assert len(ids) == 2, ids


# --- the page's server against insiders -------------------------------------------------------


@pytest.fixture
def guarded(site, tmp_path) -> Iterator[SimpleNamespace]:
    """``python -m demo.serve`` taking answers (its request log capped at 40 kB a day) and
    corrections, as ``make demo``'s server does, in folders of this test's own."""
    store, log = tmp_path / "store", tmp_path / "requests"
    with _server(
        site, "--feedback-store", store, "--request-log", log, "--log-day-bytes", "40000",
        log=tmp_path / "serve.log",
    ) as server:  # fmt: skip
        server.store, server.requests = store, log
        yield server


def _post(port: int, path: str, body: bytes | str, headers: dict | None = None):
    """``POST path`` as the page sends it: the status and the text of the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
    try:
        connection.request("POST", path, body=body, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _issued(port: int) -> str:
    status, text = _post(port, "/session", "{}")
    assert status == 201, text
    return json.loads(text)["page"]


def _stroke(column: int) -> list[float]:
    """A drawn-looking image of its own for each ``column`` below 24."""
    image = np.zeros((28, 28))
    image[4:24, column : column + 4] = 255
    return image.ravel().tolist()


def _correction(page: str, k: int) -> str:
    """A correction of an image of its own for each ``k`` below 4096 (its bits in a row)."""
    image = np.zeros((28, 28))
    image[4:24, k % 24 : k % 24 + 4] = 255
    image[27, :12] = [128 * (k >> bit & 1) for bit in range(12)]
    report = {"page": page, "model": "fp32", "image": image.ravel().tolist(), "answer": 1,
              "label": k % 10}  # fmt: skip
    return json.dumps(report)


def _waiting(store: Path) -> list[Path]:
    pending = store / "pending"
    return sorted(pending.glob("*.json")) if pending.exists() else []


def test_row6_page_ids_the_client_chooses_are_refused_and_the_budget_holds(guarded):
    """330 corrections, a new client-chosen page id every 30: none is kept; an id the server
    handed out is held to 30 a minute, and an honest page's id still works after it."""
    port = guarded.port
    statuses = [_post(port, "/feedback", _correction(f"rotating-id-{k // 30:03d}", k))
                for k in range(330)]  # fmt: skip
    assert {status for status, _ in statuses} == {400}
    assert all(text.count("\n") == 1 and "not an id this server handed out" in text
               for _, text in statuses)  # fmt: skip
    assert _waiting(guarded.store) == []
    # an id of the server's own, flooded: 30 kept, the rest 429, the honest page unhurt
    flooder, honest = _issued(port), _issued(port)
    flooded = [_post(port, "/feedback", _correction(flooder, k))[0] for k in range(330)]
    assert flooded == [201] * 30 + [429] * 300, flooded
    assert _post(port, "/feedback", _correction(honest, 1000))[0] == 201
    # new ids by the dozen: handed out a few a minute, and all pages together stay within
    # the budget of all (300 a minute); the honest page then waits for the minute as well
    minted = [_post(port, "/session", "{}") for _ in range(30)]
    issued = [json.loads(text)["page"] for status, text in minted if status == 201]
    assert len(issued) == 20 - 2 and {s for s, _ in minted[18:]} == {429}
    flood = [_post(port, "/feedback", _correction(issued[k % 18], 2000 + k))[0]
             for k in range(600)]  # fmt: skip
    assert flood.count(201) == 300 - 31 and set(flood) == {201, 429}
    status, text = _post(port, "/feedback", _correction(honest, 1001))
    assert status == 429 and "a minute from all pages together" in text
    assert len(_waiting(guarded.store)) == 300, "no more than the budget of a minute"
    assert list(guarded.store.glob("*.json")) == [], "and none of it is training data"


def _with_number(path: str, page: str, number: str) -> str:
    """A post to ``path`` whose first pixel is ``number`` written as it is."""
    if path == "/feedback":
        report = json.loads(_correction(page, 5))
    else:
        probabilities = [0.1] * 10
        report = {
            "page": page,
            "model": "fp32",
            "image": _stroke(5),
            "probabilities": probabilities,
        }
    report["image"][0] = "@"
    return json.dumps(report).replace('"@"', number)


@pytest.mark.parametrize("path", ["/feedback", "/answers"])
@pytest.mark.parametrize(
    "number", ["9" * 4000, "9" * 5000, "-" + "9" * 5000, "1e400", "NaN", "-Infinity", "true", "-1"]
)
def test_row7_a_number_that_is_no_pixel_is_a_400_of_one_line_on_a_live_connection(
    guarded, path, number
):
    port = guarded.port
    page = _issued(port)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
        connection.request("POST", path, body=_with_number(path, page, number), headers=headers)
        response = connection.getresponse()  # an answer, not a connection dropped unanswered
        text = response.read().decode()
    finally:
        connection.close()
    assert response.status == 400 and text.count("\n") == 1 and len(text) < 200, text
    assert "image" in text, text
    assert _get(port, "/feedback")[2] == b'{"count": 0, "pending": 0}', "nothing kept"
    said = guarded.log.read_text()
    assert "Traceback" not in said and "demo: warning" not in said, said


def test_row8_answers_in_a_loop_are_limited_and_the_log_is_capped(guarded):
    from monitor.window import read_window

    port = guarded.port
    probabilities = [0.1] * 10

    def answer(page: str, k: int) -> int:
        body = {"page": page, "model": "fp32", "image": _stroke(k % 24),
                "probabilities": probabilities}  # fmt: skip
        return _post(port, "/answers", json.dumps(body))[0]

    one = _issued(port)
    statuses = [answer(one, k) for k in range(200)]
    assert statuses == [204] * 120 + [429] * 80, statuses
    ids = [_issued(port) for _ in range(8)]
    statuses = [answer(ids[k % 8], k) for k in range(600)]
    assert statuses.count(204) == 600 - 120 and statuses.count(429) == 120
    guarded.process.terminate()  # the log is written whole on the way out
    guarded.process.wait(timeout=10)
    written = sum(path.stat().st_size for path in guarded.requests.glob("*.jsonl"))
    assert 30_000 < written <= 40_000, written
    assert len(read_window(guarded.requests)) < 600, "answers past the cap are not logged"
    said = [line for line in guarded.log.read_text().splitlines() if "warning" in line]
    assert len(said) == 1 and "this log wrote its 40000 bytes" in said[0], said


@pytest.mark.parametrize("host", ["evil.example:8120", "evil.example:{port}", "127.0.0.1:1"])
@pytest.mark.parametrize("target", ["/feedback", "/", "/models.json"])
def test_row10_another_host_is_a_400_of_one_line(guarded, host, target):
    host = host.format(port=guarded.port)
    connection = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=10)
    try:
        connection.request("GET", target, headers={"Host": host})
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    assert response.status == 400 and text.count("\n") == 1, text
    assert f"Host '{host}'" in text and f"this server is 127.0.0.1:{guarded.port}" in text
    status, _, _ = _get(guarded.port, target)  # the server's own name is answered
    assert status == 200


def test_records_are_the_owners_only_and_wait_for_a_review(guarded):
    port = guarded.port
    assert _post(port, "/feedback", _correction(_issued(port), 3))[0] == 201
    (record,) = _waiting(guarded.store)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(record.parent.stat().st_mode) == 0o700
    assert list(guarded.store.glob("*.json")) == []


# --- 1. drawn digits --------------------------------------------------------------------------


@pytest.mark.parametrize("strokes", [SEVEN, FOUR, ZERO], ids=["seven", "four-two-strokes", "zero"])
def test_a_drawn_digit_gets_the_python_predictors_answer_on_the_input_the_page_shows(
    page, tiny, strokes
):
    result = _draw(page, strokes)

    assert result["source"] == "canvas" and result["model"] == "fp32"
    image = np.asarray(result["input"], dtype=np.float32).reshape(28, 28)
    expected = tiny.predictor.predict(image)
    np.testing.assert_allclose(
        result["probabilities"], expected.probabilities[0], atol=PROBABILITY_TOLERANCE
    )
    assert result["digit"] == int(expected.digits[0]) == int(np.argmax(result["probabilities"]))
    # what the page shows is what it computed
    assert page.inner_text("#digit") == str(result["digit"])
    np.testing.assert_allclose(
        _shown_percentages(page), np.asarray(result["probabilities"]) * 100, atol=0.051
    )
    np.testing.assert_array_equal(_seen_pixels(page), np.floor(image + 0.5))
    assert page.locator("#bars li.top .label").inner_text() == str(result["digit"])
    # a real stroke, scaled into MNIST's 20 px box: full-strength ink, not a speck
    assert image.max() > 200 and (image > 0).sum() > 40
    assert page.locator("#model-picker").is_hidden()  # one model: nothing to choose
    assert result["strokeToAnswerMs"] > 0


# --- 2. PNG files ---------------------------------------------------------------------------


def test_pngs_opened_or_dropped_get_the_python_predictors_answers(page, tiny, tmp_path):
    files = []
    for index in range(6):
        path = tmp_path / f"digit-{index}.png"
        Image.fromarray(tiny.images[index]).save(path)
        files.append(path)
    # dark ink on light paper, RGB, large enough to be reduced before the float work
    photo = Image.fromarray(255 - tiny.images[6]).resize((1100, 1300), Image.Resampling.BICUBIC)
    photo.convert("RGB").save(tmp_path / "photo.png")
    files.append(tmp_path / "photo.png")

    for index, path in enumerate(files):
        before = last_result_sequence(page)
        if index % 2:
            _drop(page, path)
        else:
            page.set_input_files("#file", path)
        result = _after(page, before)

        assert result["source"] == "file" and result["name"] == path.name, result["message"]
        python_input = load_image(path)
        expected = tiny.predictor.predict(python_input)
        np.testing.assert_allclose(
            np.reshape(result["input"], (28, 28)), python_input, atol=PIXEL_TOLERANCE
        )
        assert result["digit"] == int(expected.digits[0]), path.name
        np.testing.assert_allclose(
            result["probabilities"], expected.probabilities[0], atol=PROBABILITY_TOLERANCE
        )
        assert page.inner_text("#source") == f"from {path.name}"


def _rgba_pictures(digits: np.ndarray) -> dict[str, np.ndarray]:
    """RGBA pictures of digits, which Python always composites in floats, transparent or not."""
    rng = np.random.default_rng(11)
    ink_colour, paper_colour = np.array([30, 90, 180]), np.array([250, 240, 200])

    def ink(digit: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        resized = Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC)
        return np.asarray(resized, dtype=np.float64)[..., np.newaxis] / 255.0

    def painted(digit: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        strength = ink(digit, size)
        rgba = np.full((size[1], size[0], 4), 255, np.uint8)
        rgba[..., :3] = np.round(paper_colour * (1 - strength) + ink_colour * strength)
        return rgba

    def translucent(digit: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        # blue ink, partly transparent at its edges, on a transparent sheet whose hidden
        # colours are noise
        alpha = np.round(ink(digit, size)[..., 0] * 255).astype(np.uint8)
        rgba = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
        rgba[..., 3] = alpha
        rgba[alpha > 0, :3] = ink_colour
        return rgba

    return {
        "opaque-coloured-rgba": painted(digits[0], (90, 120)),
        "translucent-rgba": translucent(digits[1], (90, 120)),
        # more than 1024 px tall: reduced, premultiplied, before the compositing
        "large-translucent-rgba": translucent(digits[2], (1100, 1300)),
    }


def test_rgba_pngs_get_python_load_images_pixels(page, tiny, tmp_path):
    differences = {}
    for name, rgba in _rgba_pictures(tiny.images).items():
        path = tmp_path / f"{name}.png"
        Image.fromarray(rgba, "RGBA").save(path)
        before = last_result_sequence(page)
        page.set_input_files("#file", path)
        result = _after(page, before)
        assert result["name"] == path.name and result["input"], result["message"]
        javascript = np.reshape(result["input"], (28, 28))
        differences[name] = float(np.abs(javascript - load_image(path)).max())
    assert max(differences.values()) <= PIXEL_TOLERANCE, differences


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims ``width`` x ``height`` pixels (its CRC fixed up)."""
    Image.new("L", (8, 8), 0).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_a_png_too_large_is_refused_from_its_header_as_python_refuses_it(page, tmp_path):
    # 60 megapixels claimed, 8x8 stored: only a refusal from the header gives this message
    huge = _png_claiming(tmp_path / "huge.png", 10_000, 6_000)
    with pytest.raises(InputError) as python_refusal:
        load_image(huge)

    before = last_result_sequence(page)
    page.set_input_files("#file", huge)
    result = _after(page, before)

    assert result["failed"] and result["message"] == str(python_refusal.value)
    assert page.inner_text("#answer-notice") == f"huge.png: {python_refusal.value}."
    messages = page.evaluate(
        """async (sizes) => {
            const form = await import("./mnist_form.mjs");
            return sizes.map(([width, height]) => form.tooLargeMessage(width, height));
        }""",
        [[10_000, 6_000], [10_000, 5_025], [10_000, 5_075], [2**31 - 1, 2**31 - 1]],
    )
    assert messages == [
        python_images._too_large(10_000, 6_000),
        python_images._too_large(10_000, 5_025),  # 50.25 megapixels: Python rounds to even
        python_images._too_large(10_000, 5_075),
        python_images._too_large(2**31 - 1, 2**31 - 1),
    ]


def test_any_other_failure_with_a_file_is_one_line_on_the_page(page, tiny, tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(tiny.images[0]).save(path)
    # a browser that cannot even read the file's first bytes
    page.evaluate(
        "() => { Blob.prototype.slice = () => { throw new TypeError('no slices here'); }; }"
    )

    before = last_result_sequence(page)
    page.set_input_files("#file", path)
    result = _after(page, before)

    assert result["failed"] and result["digit"] is None
    assert result["message"] == "cannot open the image (TypeError: no slices here)"
    assert page.inner_text("#answer-notice") == (
        "digit.png: cannot open the image (TypeError: no slices here)."
    )


# --- 3. the preprocessing, JavaScript against Python ----------------------------------------


def test_the_page_module_has_the_python_constants(page):
    constants = page.evaluate(
        """async () => {
            const form = await import("./mnist_form.mjs");
            return [form.MIN_CONTRAST, form.DIGIT_BOX, form.MAX_NOISE_FLOOR, form.SIGNIFICANT_INK,
                    form.WORKING_SIZE, form.MAX_IMAGE_PIXELS, form.IMAGE_SIDE];
        }"""
    )
    assert constants == [
        python_images.MIN_CONTRAST,
        python_images.DIGIT_BOX,
        python_images._MAX_NOISE_FLOOR,
        python_images._SIGNIFICANT_INK,
        python_images._WORKING_SIZE,
        python_images.MAX_IMAGE_PIXELS,
        28,
    ]


def _pictures(digits: np.ndarray) -> dict[str, np.ndarray]:
    """Grayscale pictures of digits (0..255) the way people and scanners make them."""
    rng = np.random.default_rng(7)

    def enlarged(digit: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        resized = Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC)
        return np.asarray(resized, dtype=np.float64)

    pictures = {f"enlarged-{i}": enlarged(digits[i], (140 + 25 * i, 170)) for i in range(4)}
    pictures["mnist-form-as-is"] = digits[4].astype(np.float64)
    pictures["dark-on-light"] = 255.0 - enlarged(digits[5], (200, 200))
    off_centre = np.zeros((240, 320))
    off_centre[10:130, 15:105] = enlarged(digits[6], (90, 120))
    pictures["off-centre"] = off_centre
    paper = 235.0 - 0.8 * enlarged(digits[7], (180, 180)) + rng.normal(0, 9, (180, 180))
    pictures["noisy-paper"] = np.clip(paper, 0, 255)
    line = np.zeros((2, 60))
    line[:, 20:45] = 255.0
    pictures["two-pixels-tall"] = line
    return pictures


def test_js_preprocessing_equals_python_to_mnist_form(page, tiny):
    drawn = _draw(page, FOUR)
    pad = page.evaluate(
        """async () => {
            const form = await import("./mnist_form.mjs");
            const pad = document.getElementById("pad");
            const rgba = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
            const picture = form.pictureFromRGBA(rgba, pad.width, pad.height);
            return [Array.from(picture.gray), picture.width, picture.height];
        }"""
    )
    pad_gray = np.asarray(pad[0]).reshape(pad[2], pad[1])
    # the drawing, as the page captured it, gives Python the input the page sent the model
    np.testing.assert_allclose(
        np.reshape(drawn["input"], (28, 28)), to_mnist_form(pad_gray), atol=PIXEL_TOLERANCE
    )

    differences = {}
    for name, gray in {"drawn-pad": pad_gray, **_pictures(tiny.images)}.items():
        python, javascript = _python_mnist_form(gray), _js_mnist_form(page, gray)
        assert not isinstance(python, str) and not isinstance(javascript, str), name
        differences[name] = float(np.abs(javascript - python).max())
    assert max(differences.values()) <= PIXEL_TOLERANCE, differences


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("black", 0, 0), ("white", 255, 255), ("faint", 100, 110), ("just-visible", 100, 116)],
)
def test_js_and_python_agree_on_blank_pictures(page, name, low, high):
    gray = np.full((40, 30), float(low))
    gray[12:30, 10:20] = high
    python, javascript = _python_mnist_form(gray), _js_mnist_form(page, gray)
    if high - low < python_images.MIN_CONTRAST:
        assert isinstance(python, str) and python == javascript, (python, javascript)
    else:  # a contrast of exactly MIN_CONTRAST is a digit, not a blank page
        assert not isinstance(javascript, str), javascript
        np.testing.assert_allclose(javascript, python, atol=PIXEL_TOLERANCE)


# --- 4. telling the user -------------------------------------------------------------------


def test_a_blank_canvas_says_so_and_gives_no_answer(page):
    notice = page.locator("#answer-notice")
    assert page.evaluate("document.body.dataset.answerState") == "blank"
    assert notice.is_visible() and "blank" in notice.inner_text()
    _draw(page, SEVEN)
    assert notice.is_hidden() and page.inner_text("#digit") != "–"

    before = last_result_sequence(page)
    page.click("#clear")
    result = _after(page, before)

    assert result["blank"] and result["digit"] is None and result["probabilities"] is None
    assert (
        notice.is_visible()
        and notice.inner_text() == "The canvas is blank: draw a digit in the box."
    )
    assert page.inner_text("#digit") == "–"
    assert page.locator("#bars li.top").count() == 0
    assert not _seen_pixels(page).any()


def test_blank_and_undecodable_files_get_one_clear_message_each(page, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 128).save(blank)
    notes = tmp_path / "notes.png"
    notes.write_text("not an image\n")
    notice = page.locator("#answer-notice")

    before = last_result_sequence(page)
    page.set_input_files("#file", blank)
    result = _after(page, before)
    with pytest.raises(InputError) as python_refusal:
        load_image(blank)
    assert result["blank"] and result["digit"] is None
    assert result["message"] == str(python_refusal.value)
    assert notice.inner_text() == f"blank.png: {python_refusal.value}."

    before = last_result_sequence(page)
    page.set_input_files("#file", notes)
    result = _after(page, before)
    assert result["failed"] and result["digit"] is None
    assert notice.inner_text() == (
        "notes.png: not an image the browser can decode; expected a PNG."
    )
    assert page.inner_text("#digit") == "–"


def test_a_missing_model_says_run_make_repro_first(browser, tmp_path):
    site = tmp_path / "site"
    assert "with no model" in _build(site)
    with _served(site) as url:
        page = _open(browser, url, model_state="missing")
        notice = page.locator("#model-notice")
        assert notice.is_visible()
        assert "models/model.onnx is missing" in notice.inner_text()
        assert "Run make repro first" in notice.inner_text()
        result = _draw(page, SEVEN)
        assert page.evaluate("document.body.dataset.answerState") == "no-model"
        assert result["digit"] is None and result["probabilities"] is None
        assert page.inner_text("#digit") == "–"
        # the drawing still shows what the model would have received
        np.testing.assert_array_equal(
            _seen_pixels(page), np.floor(np.reshape(result["input"], (28, 28)) + 0.5)
        )
        assert not page.errors, page.errors


# --- a second model, the server, the build --------------------------------------------------


def _probabilities_of(predictor: Predictor, result: dict) -> np.ndarray:
    """What ``predictor`` says of the 28x28 input the page published with ``result``."""
    image = np.asarray(result["input"], dtype=np.float32).reshape(28, 28)
    return predictor.predict(image).probabilities[0]


def test_a_second_model_is_offered_and_chosen_by_url_or_selector(
    browser, tiny, int8, site_url, tmp_path
):
    site = tmp_path / "site"
    assert "with fp32, int8" in _build(site, "--model", tiny.model, "--int8-model", int8.model)
    with _served(site) as url:
        requested = []
        page = browser.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url + "?model=int8")
        page.wait_for_function("document.body.dataset.modelState === 'ready'")
        assert page.locator("#model-picker").is_visible()
        assert page.input_value("#model-choice") == "int8"
        assert url + "models/model.int8.onnx" in requested
        assert url + "models/model.onnx" not in requested
        first = _draw(page, SEVEN)
        int8_expected = _probabilities_of(int8.predictor, first)
        fp32_expected = _probabilities_of(tiny.predictor, first)
        # the two models tell apart on this input, so matching one is not matching both
        assert np.abs(int8_expected - fp32_expected).max() > 10 * PROBABILITY_TOLERANCE
        assert first["model"] == "int8"
        np.testing.assert_allclose(
            first["probabilities"], int8_expected, atol=PROBABILITY_TOLERANCE
        )

        before = last_result_sequence(page)
        page.select_option("#model-choice", "fp32")
        fp32 = _after(page, before)
        assert fp32["model"] == "fp32" and fp32["input"] == first["input"]
        np.testing.assert_allclose(fp32["probabilities"], fp32_expected, atol=PROBABILITY_TOLERANCE)
        assert page.url.endswith("?model=fp32")

        before = last_result_sequence(page)
        page.select_option("#model-choice", "int8")
        again = _after(page, before)
        assert again["model"] == "int8"
        np.testing.assert_allclose(
            again["probabilities"], int8_expected, atol=PROBABILITY_TOLERANCE
        )

        # a blank file replaces the drawing: a model change has nothing to answer again
        blank = tmp_path / "blank.png"
        Image.new("L", (64, 64), 128).save(blank)
        before = last_result_sequence(page)
        page.set_input_files("#file", blank)
        assert _after(page, before)["blank"]
        before = last_result_sequence(page)
        page.select_option("#model-choice", "fp32")
        page.wait_for_function("document.body.dataset.modelState === 'ready'")
        page.click("#clear")
        cleared = _after(page, before)
        # the cleared pad's verdict is the only result since the file's
        assert cleared["sequence"] == before + 1 and cleared["source"] == "canvas", cleared
        assert cleared["blank"]
        assert not page.errors, page.errors
        page.close()

    page = browser.new_page()
    page.goto(site_url + "?model=int8")
    page.wait_for_function("document.body.dataset.modelState === 'ready'")
    assert "holds no int8 model; showing fp32" in page.inner_text("#model-notice")
    assert page.locator("#model-picker").is_hidden()
    page.close()


def test_a_missing_int8_file_is_named_and_loaded_once_it_is_there(browser, tiny, int8, tmp_path):
    site = tmp_path / "site"
    _build(site, "--model", tiny.model, "--int8-model", int8.model)
    served = site / "models" / "model.int8.onnx"
    kept = served.rename(tmp_path / "model.int8.onnx")  # the manifest still lists it
    with _served(site) as url:
        page = _open(browser, url + "?model=int8", model_state="missing")
        notice = page.locator("#model-notice")
        assert "models/model.int8.onnx is missing" in notice.inner_text()
        assert "models/model.onnx" not in notice.inner_text()
        missed = _draw(page, SEVEN)
        assert missed["model"] == "int8" and missed["probabilities"] is None
        assert missed["message"] == "models/model.int8.onnx is missing"

        kept.rename(served)
        before = last_result_sequence(page)
        page.click("#clear")
        _after(page, before)
        answered = _draw(page, SEVEN)
        # the failed load was not kept: this picture loaded the model, and the page says so
        assert answered["model"] == "int8" and answered["digit"] is not None, answered["message"]
        np.testing.assert_allclose(
            answered["probabilities"],
            _probabilities_of(int8.predictor, answered),
            atol=PROBABILITY_TOLERANCE,
        )
        assert page.evaluate("document.body.dataset.modelState") == "ready"
        assert notice.is_hidden()
        assert not page.errors, page.errors
        page.close()


def test_the_server_sends_module_wasm_and_model_types_and_only_the_files_needed(site, site_url):
    def content_type(path: str) -> str:
        with urllib.request.urlopen(site_url + path, timeout=10) as response:
            return response.headers["Content-Type"]

    assert content_type("app.mjs").startswith("text/javascript")
    assert content_type("vendor/ort.wasm.bundle.min.mjs").startswith("text/javascript")
    assert content_type("vendor/ort-wasm-simd-threaded.wasm") == "application/wasm"
    assert content_type("models/model.onnx") == "application/octet-stream"
    assert content_type("models.json") == "application/json"
    shipped = sorted(str(path.relative_to(site)) for path in site.rglob("*") if path.is_file())
    assert shipped == [
        ".demo-site",
        "app.mjs",
        "index.html",
        "mnist_form.mjs",
        "models.json",
        "models/model.onnx",
        "style.css",
        "vendor/ort-wasm-simd-threaded.wasm",
        "vendor/ort.wasm.bundle.min.mjs",
    ]
    assert sum(path.stat().st_size for path in site.rglob("*")) < 20_000_000


IDLE_CONNECTIONS = 300  # what an attacker on the machine opened: a thread each, for ever


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    """``GET path`` sent as it is (no quoting): the status, Content-Type and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def _threads(process: subprocess.Popen) -> int:
    return len(os.listdir(f"/proc/{process.pid}/task"))


def _until_closed(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sends on ``sock`` until it closes it; None if still open at ``deadline``."""
    received = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def test_idle_connections_are_closed_and_give_their_threads_back(served, demo_module):
    serve = demo_module("demo.serve")
    baseline = _threads(served.process)
    address = ("127.0.0.1", served.port)
    connections = [socket.create_connection(address, timeout=30) for _ in range(IDLE_CONNECTIONS)]
    try:
        time.sleep(0.5)  # the server has taken them all
        peak = _threads(served.process)
        wait = serve.REQUEST_TIMEOUT + 5
        deadline = time.monotonic() + wait
        answers = [_until_closed(sock, deadline) for sock in connections]
        while _threads(served.process) > baseline + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = _threads(served.process)
    finally:
        for sock in connections:
            sock.close()

    still_open = sum(answer is None for answer in answers)
    assert still_open == 0, (
        f"{still_open} of {IDLE_CONNECTIONS} idle connections open after {wait} s; the server "
        f"had {baseline} threads before, {peak} with them open, {after} at the end"
    )
    # each closed without a word after the timeout, or at once with a 503 when over the limit
    quiet = sum(answer == b"" for answer in answers)
    turned_away = [answer for answer in answers if answer]
    assert all(answer.startswith(b"HTTP/1.0 503 Service Unavailable\r\n") for answer in turned_away)
    assert quiet <= serve.MAX_CONNECTIONS < IDLE_CONNECTIONS
    assert peak <= baseline + serve.MAX_CONNECTIONS + 1, (baseline, peak)
    assert after <= baseline + 1, (baseline, peak, after)
    assert _get(served.port, "/")[0] == 200


def test_a_folder_is_not_listed_and_the_root_is_the_page(site, served):
    for folder in ("/models/", "/vendor/"):
        status, content_type, body = _get(served.port, folder)
        assert status == 404, folder
        assert content_type == "text/plain; charset=utf-8"
        assert body == b"404 File not found: Nothing matches the given URI\n"
    status, content_type, body = _get(served.port, "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert body == (site / "index.html").read_bytes()


@pytest.mark.parametrize("path", ["/%00", "/index.html%00", "/%zz"])
def test_a_nul_or_a_bad_escape_in_the_path_is_a_400_of_one_line_not_a_traceback(served, path):
    logged = served.log.stat().st_size

    status, content_type, body = _get(served.port, path)

    assert (status, content_type) == (400, "text/plain; charset=utf-8")
    assert body.startswith(b"400 Bad Request: the path ") and body.count(b"\n") == 1, body
    said = served.log.read_bytes()[logged:].decode()
    assert f'"GET {path} HTTP/1.1" 400' in said and "Traceback" not in said, said


def test_a_taken_port_or_an_unbuilt_site_is_one_line(site, site_url, tmp_path):
    port = site_url.rsplit(":", 1)[1].strip("/")
    taken = run_module("demo.serve", "--site", site, "--port", port, cwd=PROJECT_ROOT, timeout=30)
    assert taken.returncode == 1
    assert taken.stderr.strip() == (
        f"demo: error: 127.0.0.1:{port} is taken by another program; stop it, or choose "
        "another port (make demo DEMO_PORT=8010)"
    )
    unbuilt = run_module("demo.serve", "--site", tmp_path, "--port", "0", cwd=PROJECT_ROOT)
    assert unbuilt.returncode == 1
    assert unbuilt.stderr.strip() == (
        f"demo: error: {tmp_path} holds no built site (no index.html); run make demo, "
        "which builds it"
    )


def test_the_build_refuses_a_file_that_is_no_model_and_a_folder_it_did_not_make(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("not a model\n")
    refused = run_module(
        "demo.build", "--out", tmp_path / "site", "--model", fake, cwd=PROJECT_ROOT
    )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"demo: error: model file {fake} is not an ONNX model"), lines
    assert not (tmp_path / "site").exists()

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine\n")
    refused = run_module("demo.build", "--out", tmp_path / "notes", cwd=PROJECT_ROOT)
    assert refused.returncode == 1
    assert "is not a site this script built" in refused.stderr
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine\n"


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
@pytest.mark.parametrize("module", ["demo.serve", "demo"])
def test_a_port_that_is_no_port_is_one_error_line(site, module, port):
    refused = run_module(module, "--site", site, "--port", port, cwd=PROJECT_ROOT)
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"python -m {module}: error: argument --port: {port!r} is no port; "
        "expected 0..65535 (0 picks a free one)"
    )


def test_the_server_refuses_a_port_out_of_range_as_a_site_error(site, demo_module):
    serve = demo_module("demo.serve")
    with pytest.raises(serve.SiteError, match=r"^70000 is no port; expected 0\.\.65535"):
        serve.make_server(site, 70000)


def test_a_stale_int8_model_is_left_out_with_one_warning(tiny, int8, demo_module, tmp_path, capsys):
    demo_build = demo_module("demo.build")
    stale = _quantized(tiny.model, tmp_path / "stale.int8.onnx", made_from="0" * 64)
    site = tmp_path / "site"
    said = _build(site, "--model", tiny.model, "--int8-model", stale)
    assert said.strip().splitlines()[-1].endswith(" with fp32"), said
    warnings = [line for line in said.splitlines() if "warning" in line]
    assert warnings == [
        f"demo: warning: int8 model left out: {stale} is stale: it was quantized from another "
        f"fp32 model than {tiny.model} (fp32_model_sha256 000000000000..., not "
        f"{hashlib.sha256(tiny.model.read_bytes()).hexdigest()[:12]}...)"
    ]
    assert not (site / "models" / "model.int8.onnx").exists()

    # python -m demo installs the pipeline's models into a built site: an int8 model made
    # from the fp32 model before a new one is taken out of the site
    assert demo_build.install_models(site, {"fp32": tiny.model, "int8": int8.model}) == [
        "fp32",
        "int8",
    ]
    newer = tmp_path / "newer.onnx"
    fp32_bytes = tiny.model.read_bytes()
    newer.write_bytes(_with_metadata(fp32_bytes, {**_metadata_props(fp32_bytes), "note": "new"}))
    capsys.readouterr()
    assert demo_build.install_models(site, {"fp32": newer, "int8": int8.model}) == ["fp32"]
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"demo: warning: int8 model left out: {int8.model} is stale: ")
    assert f"than {newer} " in warning and len(warning.splitlines()) == 1
    assert not (site / "models" / "model.int8.onnx").exists()
    manifest = json.loads((site / "models.json").read_text())
    assert [entry["name"] for entry in manifest["models"]] == ["fp32"]


def test_a_swap_that_fails_keeps_the_last_good_site(tiny, demo_module, tmp_path, monkeypatch):
    demo_build = demo_module("demo.build")
    site = tmp_path / "site"
    _build(site, "--model", tiny.model)
    (site / "good").write_text("the last good site\n")
    backup = tmp_path / ".site.backup"
    # what a swap interrupted between its two renames leaves: the old site set aside only
    site.rename(backup)

    real_replace = os.replace

    def failing_replace(source, target):
        if str(source).endswith(".staged"):
            raise OSError("the disk said no")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="the disk said no"):
        demo_build.build_site(site, {"fp32": tiny.model})
    assert (site / "good").read_text() == "the last good site\n"
    assert not backup.exists()

    monkeypatch.setattr(os, "replace", real_replace)
    assert demo_build.build_site(site, {"fp32": tiny.model}) == ["fp32"]
    assert not (site / "good").exists() and (site / "models" / "model.onnx").is_file()
    leftovers = sorted(path.name for path in tmp_path.iterdir())
    assert leftovers == ["site"], leftovers


def test_256_clients_at_once_are_answered_or_turned_away_and_the_cap_holds(served, demo_module):
    """The load test of ``make serve``, on the page's server: 256 clients asking at once for
    5 s get the page or a 503 at once; none waits past its timeout, and the server never
    runs more than its 64 connections' threads."""
    serve = demo_module("demo.serve")
    baseline = _threads(served.process)
    deadline = time.monotonic() + 5
    start = threading.Barrier(256)
    results: list[tuple[int, float]] = []
    peak = [baseline]

    def client() -> None:
        start.wait()
        while time.monotonic() < deadline:
            began = time.monotonic()
            try:
                status = _get(served.port, "/")[0]
            except OSError:  # a timeout or a reset: neither may happen
                status = 0
            results.append((status, time.monotonic() - began))

    def watch() -> None:
        while time.monotonic() < deadline + 1:
            peak[0] = max(peak[0], _threads(served.process))
            time.sleep(0.01)

    threads = [threading.Thread(target=client) for _ in range(256)]
    watcher = threading.Thread(target=watch)
    for thread in (*threads, watcher):
        thread.start()
    for thread in (*threads, watcher):
        thread.join(timeout=60)
    statuses = {status for status, _ in results}
    assert statuses <= {200, 503} and 200 in statuses, statuses
    assert max(seconds for _, seconds in results) < 10
    assert peak[0] <= baseline + serve.MAX_CONNECTIONS + 1, (baseline, peak[0])
    assert _get(served.port, "/")[0] == 200
