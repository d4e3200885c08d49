"""serving.guard, the ASGI middleware in front of MLServer's REST app, driven by hand-made
ASGI messages: no server, no MLServer."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from digits_predict.contract import IMAGE_SHAPE, MAX_BATCH_SIZE
from serving.guard import (
    CONTROL_REQUEST,
    MAX_BODY_BYTES,
    MAX_JSON_STRUCTURES,
    REPOSITORY_OFF,
    MiB,
    RequestGuard,
)

PORT = 8080
HOST = f"127.0.0.1:{PORT}"
INFER = "/v2/models/mnist-digits/infer"


class App:
    """The wrapped app: records what reached it and reads the body as MLServer does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        if scope["type"] == "http":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        self.calls.append((scope.get("path", scope["type"]), body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answered"})


def scope(path=INFER, headers=(), host=HOST, method="POST") -> dict:
    raw = [(b"host", host.encode())] if host is not None else []
    raw += [(name.lower().encode(), value.encode()) for name, value in headers]
    return {"type": "http", "method": method, "path": path, "headers": raw}


def messages(*chunks: bytes):
    """``receive`` handing out the chunks, then the client's disconnect; counts its calls."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict:
        receive.calls += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    receive.calls = 0
    return receive


def never_called():
    async def receive() -> dict:
        raise AssertionError("the body was read")

    return receive


def run(guard: RequestGuard, request: dict, receive=None) -> tuple[int | None, bytes]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(request, receive or messages(b""), send))
    if not sent:
        return None, b""
    (start, body) = sent
    headers = dict(start["headers"])
    assert int(headers.get(b"content-length", len(body["body"]))) == len(body["body"])
    return start["status"], body["body"]


def refused(guard: RequestGuard, request: dict, receive=None) -> tuple[int, str]:
    """The refusal's status and line, checking it is one line of JSON the app never saw."""
    status, body = run(guard, request, receive or never_called())
    assert b"\n" not in body
    (error,) = json.loads(body).values()
    assert guard.app.calls == []
    return status, error


def guarded(**kwargs) -> RequestGuard:
    return RequestGuard(App(), port=PORT, **kwargs)


def json_body(length: int) -> list[tuple[str, str]]:
    return [("content-type", "application/json"), ("content-length", str(length))]


@pytest.mark.parametrize(
    "host",
    [HOST, f"localhost:{PORT}", f"[::1]:{PORT}", f"LocalHost:{PORT}"],
)
def test_the_loopback_names_of_this_port_pass(host: str) -> None:
    guard = guarded()
    assert run(guard, scope(host=host, method="GET", path="/v2/health/ready")) == (
        200,
        b"answered",
    )


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        f"evil.example:{PORT}",
        "127.0.0.1",  # no port: not what a client of this server sends
        f"127.0.0.1:{PORT + 1}",
        f"127.0.0.2:{PORT}",
        f"0.0.0.0:{PORT}",
        f"localhost.evil.example:{PORT}",
        "",
        None,
    ],
)
def test_any_other_host_is_refused(host: str | None) -> None:
    status, error = refused(guarded(), scope(host=host, method="GET"))
    assert status == 400
    assert error.startswith("Host ") and "is not this server's" in error
    assert error.endswith(f"127.0.0.1:{PORT}, localhost:{PORT} or [::1]:{PORT}")


def test_two_host_headers_are_refused() -> None:
    request = scope(headers=[("host", "evil.example")])
    assert refused(guarded(), request)[0] == 400


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        (f"http://{HOST}", 200),
        (f"http://localhost:{PORT}", 200),
        ("http://evil.example", 403),
        ("null", 403),  # a sandboxed frame, a file:// page
        (f"https://{HOST}", 403),
        (f"http://127.0.0.1:{PORT + 1}", 403),
    ],
)
def test_a_page_of_another_origin_is_refused(origin: str, status: int) -> None:
    guard = guarded()
    request = scope(headers=[("origin", origin), *json_body(2)])
    if status == 200:
        assert run(guard, request, messages(b"{}")) == (200, b"answered")
    else:
        got, error = refused(guard, request)
        assert got == 403 and f"(Origin {origin!r})" in error


@pytest.mark.parametrize(
    "path",
    [
        "/v2/repository/index",
        "/v2/repository/models/mnist-digits/load",
        "/v2/repository/models/mnist-digits/unload",
        "//v2//repository/models/mnist-digits/unload",
        "/v2/repository/models/mnist-digits/unload/",
    ],
)
def test_the_model_repository_routes_are_refused(path: str) -> None:
    request = scope(path=path, headers=[("origin", f"http://{HOST}"), *json_body(0)])
    assert refused(guarded(), request) == (404, REPOSITORY_OFF)


def test_a_model_named_repository_is_still_served() -> None:
    guard = guarded()
    assert run(guard, scope(path="/v2/models/repository", method="GET"))[0] == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity, gzip", "br"])
def test_a_compressed_body_is_refused(encoding: str) -> None:
    request = scope(headers=[("content-encoding", encoding), *json_body(10)])
    status, error = refused(guarded(), request)
    assert status == 415 and error.endswith("are refused; send plain JSON")


def test_an_identity_encoding_passes() -> None:
    request = scope(headers=[("content-encoding", "identity"), *json_body(2)])
    assert run(guarded(), request, messages(b"{}"))[0] == 200


def test_a_body_over_the_cap_is_refused_from_its_length_before_reading() -> None:
    status, error = refused(guarded(), scope(headers=json_body(MAX_BODY_BYTES + 1)))
    assert status == 413
    assert error == (
        "a request body of 16,777,217 bytes is larger than this server's limit of 16,777,216 "
        "bytes (16 MiB); send fewer images per request"
    )


@pytest.mark.parametrize("length", ["-1", "1e3", "0x10", "12, 13", "\u00b2", ""])
def test_a_content_length_that_is_not_one_number_is_refused(length: str) -> None:
    status, error = refused(guarded(), scope(headers=[("content-length", length)]))
    assert status == 400 and error.startswith("Content-Length ")


def test_a_body_at_the_cap_reaches_the_app_whole() -> None:
    guard = guarded(max_body_bytes=1000)
    body = b"1," * 499 + b"1 "
    assert len(body) == 1000
    pieces = [body[i : i + 64] for i in range(0, len(body), 64)]
    assert run(guard, scope(headers=json_body(len(body))), messages(*pieces))[0] == 200
    assert guard.app.calls == [(INFER, body)]


def test_a_chunked_body_is_counted_and_reading_stops_past_the_cap() -> None:
    guard = guarded(max_body_bytes=1000)
    receive = messages(*[b"1," * 32] * 1000)  # 64 kB, chunked
    status, error = refused(guard, scope(headers=[("transfer-encoding", "chunked")]), receive)
    assert status == 413
    assert error.startswith("a chunked request body is larger than this server's limit of 1,000")
    assert receive.calls == 1000 // 64 + 1


def test_a_chunked_body_under_the_cap_reaches_the_app_whole() -> None:
    guard = guarded(max_body_bytes=1000)
    receive = messages(b"[1, ", b"2, ", b"3]")
    assert run(guard, scope(headers=[("transfer-encoding", "chunked")]), receive)[0] == 200
    assert guard.app.calls == [(INFER, b"[1, 2, 3]")]


def test_after_the_body_the_app_hears_the_connection_itself() -> None:
    """MLServer may wait for the client's disconnect after reading the body."""
    heard = []

    async def app(scope, receive, send) -> None:
        heard.append(await receive())
        heard.append(await receive())

    guard = RequestGuard(app, port=PORT)
    assert run(guard, scope(headers=json_body(2)), messages(b"{}")) == (None, b"")
    assert heard == [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]


def test_a_client_that_leaves_mid_body_gets_nothing_and_the_app_nothing() -> None:
    guard = guarded()

    async def receive() -> dict:
        receive.calls += 1
        if receive.calls == 1:
            return {"type": "http.request", "body": b"{", "more_body": True}
        return {"type": "http.disconnect"}

    receive.calls = 0
    assert run(guard, scope(headers=json_body(100)), receive) == (None, b"")
    assert guard.app.calls == []


def stalling(*pieces: bytes):
    """``receive`` of a client that sends these pieces of its body, more to come, then
    nothing, ever (until the guard gives up on it)."""
    pending = [{"type": "http.request", "body": piece, "more_body": True} for piece in pieces]

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("not cancelled")

    return receive


async def timed(guard: RequestGuard, request: dict, receive) -> tuple[int, str, dict, float]:
    """Status, error line (or body), headers and seconds taken of one request."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await guard(request, receive, send)
    (start, body) = sent
    text = body["body"].decode()
    if start["status"] != 200:
        (text,) = json.loads(text).values()
    return start["status"], text, dict(start["headers"]), loop.time() - started


@pytest.mark.parametrize(
    ("pieces", "timeouts", "words"),
    [
        ((), {"first_byte_timeout": 0.05}, "no byte of the request body arrived within 0.05 s"),
        ((b"{",), {"chunk_timeout": 0.05}, "the request body stopped for 0.05 s after 1 bytes"),
        (
            (b"{",) * 30,  # a byte now and then, each in time, never the whole
            {"chunk_timeout": 0.2, "body_timeout": 0.05},
            "the request body did not arrive whole within 0.05 s",
        ),
    ],
)
def test_a_body_that_stalls_gets_408_and_its_connection_closed(pieces, timeouts, words) -> None:
    async def trickle() -> dict:
        await asyncio.sleep(0.01)
        return pending.pop(0)

    pending = [{"type": "http.request", "body": piece, "more_body": True} for piece in pieces]
    guard = guarded(**timeouts)
    receive = trickle if len(pieces) > 1 else stalling(*pieces)
    status, error, headers, _ = asyncio.run(timed(guard, scope(headers=json_body(100)), receive))
    assert (status, headers[b"connection"]) == (408, b"close")
    assert error.startswith(words) and error.endswith(
        "send it whole, at once" if pieces else "once"
    )
    assert "\n" not in error and guard.app.calls == []


def test_clients_that_send_headers_and_stall_keep_no_one_waiting() -> None:
    """Eight clients announce a body of 100 bytes and send none: with the server's own
    limits, a request sent after them is answered at once, and each of them gets 408 when
    its first byte is late, its place (it took none) free."""

    async def main() -> tuple[list, tuple]:
        guard = guarded()
        stallers = [
            asyncio.create_task(timed(guard, scope(headers=json_body(100)), stalling()))
            for _ in range(8)
        ]
        await asyncio.sleep(0.05)
        honest = await asyncio.wait_for(
            timed(guard, scope(headers=json_body(2)), messages(b"{}")), timeout=3
        )
        return await asyncio.gather(*stallers), honest

    stalled, honest = asyncio.run(main())
    assert honest[0] == 200 and honest[3] < 0.5, honest
    assert {(status, seconds // 1) for status, _, _, seconds in stalled} == {(408, 2)}


def test_clients_that_send_a_byte_and_stall_hold_their_place_briefly() -> None:
    """Clients that send a byte and stall fill every place; a request sent after them gets
    one as soon as the first of them is let go, ``chunk_timeout`` later."""

    async def main() -> tuple[list, tuple]:
        guard = guarded(max_held_bodies=8, chunk_timeout=0.3)
        stallers = [
            asyncio.create_task(timed(guard, scope(headers=json_body(100)), stalling(b"{")))
            for _ in range(16)
        ]
        await asyncio.sleep(0.05)
        honest = await timed(guard, scope(headers=json_body(2)), messages(b"{}"))
        return await asyncio.gather(*stallers), honest

    stalled, honest = asyncio.run(main())
    assert honest[0] == 200 and honest[3] < 0.3 * 2 + 0.2, honest  # two rounds of 8 ahead
    assert [status for status, *_ in stalled] == [408] * 16


def test_a_body_of_many_lists_is_refused_before_the_parse() -> None:
    body = b"[" + b"[]," * MAX_JSON_STRUCTURES + b"[]]"
    status, error = refused(guarded(), scope(headers=json_body(len(body))), messages(body))
    assert status == 400
    assert error.startswith(f"the request body holds {MAX_JSON_STRUCTURES + 2:,} JSON lists, obj")


def _largest_batch(images: np.ndarray, nested: bool) -> bytes:
    data = images.tolist() if nested else images.ravel().tolist()
    request = {
        "id": "a request of the largest batch",
        "parameters": {"content_type": "np"},
        "inputs": [{"name": "image", "shape": list(images.shape), "datatype": "FP32",
                    "data": data, "parameters": {"content_type": "np"}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
    }  # fmt: skip
    return json.dumps(request).encode()


def test_the_largest_batch_fits_the_cap_in_any_encoding_a_client_makes() -> None:
    """1024 images of full-precision float32 fractions, as tritonclient writes them."""
    shape = (MAX_BATCH_SIZE, *IMAGE_SHAPE)
    fractions = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    flat = _largest_batch(fractions, nested=False)
    assert 14 * MiB < len(flat) < MAX_BODY_BYTES
    nested = _largest_batch(np.zeros(shape, np.float32), nested=True)
    guard = guarded()
    assert run(guard, scope(headers=json_body(len(nested))), messages(nested))[0] == 200
    assert run(guard, scope(headers=json_body(len(flat))), messages(flat))[0] == 200


def test_bodies_are_held_and_answered_a_few_at_a_time() -> None:
    """Only ``max_held_bodies`` bodies are read past their first piece, and only
    ``max_concurrent_bodies`` of them answered at once; a request without a body waits
    for neither."""
    order: list[str] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def app(scope, receive, send) -> None:
            if scope["method"] == "GET":
                order.append("health")
                return
            order.append(f"app {(await receive())['body'].decode()}")
            await gate.wait()

        guard = RequestGuard(app, port=PORT, max_concurrent_bodies=1, max_held_bodies=2)

        def receive_of(name: str):
            pieces = [name[:1], name[1:]]

            async def receive() -> dict:
                order.append(f"read {name} {len(pieces)}")
                piece = pieces.pop(0)
                return {"type": "http.request", "body": piece.encode(), "more_body": bool(pieces)}

            return receive

        async def send(message: dict) -> None:
            pass

        bodies = [
            asyncio.create_task(guard(scope(headers=json_body(2)), receive_of(name), send))
            for name in ("a1", "b2", "c3")
        ]
        health = asyncio.create_task(guard(scope(method="GET"), receive_of("-"), send))
        await asyncio.sleep(0.01)
        assert health.done()  # a bodiless GET is not held
        # each first piece is read; a and b are held whole, a is answered; c waits unread
        assert sorted(order) == ["app a1", "health"] + sorted(
            ["read a1 2", "read a1 1", "read b2 2", "read b2 1", "read c3 2"]
        )
        gate.set()
        await asyncio.gather(*bodies)

    asyncio.run(main())
    assert order[-3:] == ["app b2", "read c3 1", "app c3"]


def test_a_client_slow_to_read_its_answer_holds_no_place() -> None:
    """Once the answer starts, the request's places are free: a client that never reads
    a large answer (its ``send`` never returns) keeps no other request waiting."""

    async def main() -> tuple:
        guard = guarded(max_concurrent_bodies=1, max_held_bodies=1)

        async def never_read(message: dict) -> None:
            if message["type"] == "http.response.body":
                await asyncio.Event().wait()

        slow = asyncio.create_task(guard(scope(headers=json_body(2)), messages(b"{}"), never_read))
        await asyncio.sleep(0.01)
        honest = await asyncio.wait_for(
            timed(guard, scope(headers=json_body(2)), messages(b"[]")), timeout=1
        )
        slow.cancel()
        return honest

    assert asyncio.run(main())[:2] == (200, "answered")


def test_past_the_queue_a_request_gets_503_with_retry_after_at_once() -> None:
    """With ``max_queued_requests`` requests in hand (answered or waiting for a place), the
    next is refused at once, its body unread and its connection closed; once the queue
    moves, requests are taken again."""

    async def main() -> tuple:
        gate = asyncio.Event()

        async def app(scope, receive, send) -> None:
            await receive()
            await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"answered"})

        guard = RequestGuard(
            app, port=PORT, max_concurrent_bodies=1, max_held_bodies=2, max_queued_requests=3
        )
        held = [
            asyncio.create_task(timed(guard, scope(headers=json_body(2)), messages(b"{}")))
            for _ in range(3)
        ]
        await asyncio.sleep(0.01)
        refusal = await asyncio.wait_for(
            timed(guard, scope(headers=json_body(2)), messages(b"{}")), timeout=1
        )
        gate.set()
        answered = await asyncio.gather(*held)
        again = await timed(guard, scope(headers=json_body(2)), messages(b"{}"))
        return refusal, answered, again

    refusal, answered, again = asyncio.run(main())
    status, error, headers, seconds = refusal
    assert status == 503 and seconds < 0.5
    assert "has 3 requests in hand" in error and "try again in 1 s" in error
    assert headers[b"retry-after"] == b"1" and headers[b"connection"] == b"close"
    assert [row[0] for row in answered] == [200, 200, 200] and again[0] == 200


def test_other_scopes_pass_through() -> None:
    guard = guarded()

    async def send(message: dict) -> None:
        pass

    asyncio.run(guard({"type": "lifespan"}, messages(), send))
    assert guard.app.calls == [("lifespan", b"")]


# the control request of `python -m serving reload`: exactly one route, with the key

KEY = "the-servers-key-0123456789"
LOAD = "/v2/repository/models/mnist-digits/load"


class ControlApp(App):
    """The wrapped app, answering with what CONTROL_REQUEST said while it ran."""

    async def __call__(self, scope, receive, send) -> None:
        self.calls.append((scope["path"], b""))
        body = b"control" if CONTROL_REQUEST.get() else b"plain"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def controlled() -> RequestGuard:
    return RequestGuard(ControlApp(), port=PORT, control_key=KEY, loadable=["mnist-digits"])


def control(path=LOAD, key=KEY, method="POST", host=HOST, headers=()) -> dict:
    keyed = [("x-serving-control-key", key)] if key is not None else []
    return scope(path=path, method=method, host=host, headers=[*keyed, *headers, *json_body(0)])


def test_the_key_lets_the_load_through_as_the_control_request() -> None:
    assert run(controlled(), control()) == (200, b"control")
    assert CONTROL_REQUEST.get() is False  # set for that request only


@pytest.mark.parametrize("host", [HOST, f"localhost:{PORT}", f"[::1]:{PORT}"])
def test_the_load_comes_from_any_loopback_name(host: str) -> None:
    assert run(controlled(), control(host=host)) == (200, b"control")


def test_other_requests_run_as_plain_ones_on_a_guard_with_a_key() -> None:
    guard = controlled()
    assert run(guard, scope(method="GET", path="/v2/models/mnist-digits")) == (200, b"plain")
    infer = scope(headers=[("x-serving-control-key", KEY), *json_body(2)])
    assert run(guard, infer, messages(b"{}")) == (200, b"plain")


@pytest.mark.parametrize(
    ("case", "request_"),
    [
        ("no key", control(key=None)),
        ("a wrong key", control(key=KEY[:-1] + "x")),
        ("a longer key", control(key=KEY + "x")),
        ("an empty key", control(key="")),
        ("a key beyond latin-1", control(key=KEY[:-1] + "\u00e9")),
        ("the key twice", control(headers=[("x-serving-control-key", KEY)])),
        ("the key and another", control(headers=[("x-serving-control-key", "other")])),
        ("the key and its own origin", control(headers=[("origin", f"http://{HOST}")])),
        ("GET", control(method="GET")),
        ("PUT", control(method="PUT")),
        ("unload", control(path="/v2/repository/models/mnist-digits/unload")),
        ("index", control(path="/v2/repository/index")),
        ("another model", control(path="/v2/repository/models/other/load")),
        ("a trailing slash", control(path=LOAD + "/")),
        ("doubled slashes", control(path="//v2//repository/models/mnist-digits/load")),
        ("a versioned load", control(path="/v2/repository/models/mnist-digits/versions/2/load")),
    ],
)
def test_anything_else_on_the_repository_is_refused_even_with_the_key(case, request_) -> None:
    assert refused(controlled(), request_) == (404, REPOSITORY_OFF), case


def test_the_key_from_a_page_of_another_origin_is_refused_as_before() -> None:
    status, error = refused(controlled(), control(headers=[("origin", "http://evil.example")]))
    assert status == 403 and "(Origin 'http://evil.example')" in error


@pytest.mark.parametrize("host", ["evil.example", f"evil.example:{PORT}", f"127.0.0.2:{PORT}"])
def test_the_key_with_a_foreign_host_is_refused_as_before(host: str) -> None:
    status, error = refused(controlled(), control(host=host))
    assert status == 400 and error.startswith(f"Host '{host}' is not this server's")


def test_a_guard_without_a_key_takes_no_control_request() -> None:
    guard = RequestGuard(App(), port=PORT, loadable=["mnist-digits"])
    assert refused(guard, control()) == (404, REPOSITORY_OFF)
    guard = RequestGuard(App(), port=PORT, control_key="", loadable=["mnist-digits"])
    assert refused(guard, control(key="")) == (404, REPOSITORY_OFF)


def test_the_refusal_still_tells_how_to_serve_another_version() -> None:
    assert "`make serve-reload`" in REPOSITORY_OFF and "restart `make serve`" in REPOSITORY_OFF
