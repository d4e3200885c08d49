"""What MLServer's REST server lets through before a request reaches it.

MLServer 1.7 (and uvicorn under it) read a request body whole into memory, however large,
and its JSON parser holds about 20 times the body's size; it answers requests naming any
Host, from any web page, and its model-repository routes let any of them unload the model.
``RequestGuard`` is a pure ASGI middleware that ``serving.mlserver_app`` puts in front of
MLServer's app, refusing each with one line of JSON, ``{"error": "..."}``, before MLServer
reads a byte of the body:

- a Host other than this server's loopback names (a web page's DNS rebinding): 400;
- an Origin other than those (a web page's cross-site request): 403;
- the model-repository routes, ``/v2/repository/...`` (load, unload, index): 404, but for
  the one control request ``python -m serving reload`` makes (``controls``): ``POST
  /v2/repository/models/<name>/load`` carrying the key of ``serving.control`` in its header,
  from a loopback Host, with no Origin. ``CONTROL_REQUEST`` is true while that request runs,
  and only then: ``serving.mlserver_app``'s repository handlers load only when it is (the
  gRPC server never sets it);
- a compressed body (MLServer would inflate a gzip bomb whole): 415;
- a body above ``MAX_BODY_BYTES``: 413, from its Content-Length before reading, or
  counted as a chunked body arrives;
- a body that stalls: 408, and the connection is closed. Its first byte must come within
  ``FIRST_BYTE_SECONDS`` of the headers, each later piece within ``CHUNK_SECONDS`` of the
  one before, and the whole body within ``BODY_TIMEOUT_SECONDS`` of its reading;
- a body with more JSON lists, objects and strings than ``MAX_JSON_STRUCTURES``: 400.

A request holds nothing while it waits for its body's first byte: a client that sends
headers and stalls keeps no other request waiting. After that, at most
``MAX_HELD_BODIES`` bodies are read or wait in memory at once, and at most
``MAX_CONCURRENT_BODIES`` of them are parsed and answered (the others wait, unread or
unparsed), so the memory requests can take is bounded too. A request gives its places
back once its answer starts: a client that does not read its answer holds only that.
Beyond ``MAX_QUEUED_REQUESTS`` requests holding or waiting for a place, the next is refused
at once: 503 with ``Retry-After``, so that more clients than the server can answer get a
quick answer to come back later rather than a wait past their timeout.

Standard library, ``serving.control`` and ``digits_predict.contract`` only: the unit tests
run it without MLServer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

from digits_predict.contract import IMAGE_SHAPE, MAX_BATCH_SIZE
from serving.control import CONTROL_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MiB = 2**20
# 1024 images (MAX_BATCH_SIZE) of 28x28 as the protocol's JSON take 3.5 MiB as UINT8, 5.0 MiB
# as FP32 whole pixel values (what serving.client sends) and 14.8 MiB as FP32 with every
# pixel a full-precision fraction: 16 MiB takes the largest batch in any of these. MLServer's
# parse holds ~20x the body, so the cap bounds one request to a few hundred MiB.
MAX_BODY_BYTES = 16 * MiB
# inference runs in the server's one event loop (parallel_workers 0): more requests in
# flight add no throughput, only parsed bodies held in memory at once
MAX_CONCURRENT_BODIES = 2
# bodies being read, or read and waiting for one of the places above: enough that a few
# clients that send a byte and stall (each let go after CHUNK_SECONDS) leave room for
# others, few enough that bodies at the cap held at once stay at 128 MiB
MAX_HELD_BODIES = 8
# "[]," is 3 bytes of JSON and a 64-byte list once parsed: 16 MiB of them took MLServer
# 600 MiB up, of short strings 340 MiB, of numbers (what a request is made of) 240 MiB. The
# largest batch as nested lists (an outer list, one per image and one per row) needs 29,697
# lists, and the envelope a few objects and strings: twice that is plenty.
MAX_JSON_STRUCTURES = 2 * (1 + MAX_BATCH_SIZE * (1 + IMAGE_SHAPE[0]))
# the server listens on loopback only, where a client sends its body with its headers and
# the largest one arrives whole in well under a second: a body that pauses for seconds is
# a client holding a place, not a slow network
FIRST_BYTE_SECONDS = 2.0
CHUNK_SECONDS = 2.0
BODY_TIMEOUT_SECONDS = 10.0
# requests past their body's first byte, holding a place or waiting for one: beyond this many
# the server is past what it answers in time, and a request is refused at once with 503 and
# ``Retry-After`` instead of waiting (at ~2,000 answers a second, 128 is 60 ms of queue; the
# load benchmark's 64 clients never meet it)
MAX_QUEUED_REQUESTS = 128
RETRY_AFTER_SECONDS = 1

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
REPOSITORY_OFF = (
    "the model repository API (/v2/repository: index, load, unload) is closed on this server; "
    "to serve another version, move the alias and run `make serve-reload` (python -m serving "
    "reload --port <port>), or restart `make serve` (ALIAS=...)"
)
# true while the guard forwards the one authorised control request, false for any other
CONTROL_REQUEST: ContextVar[bool] = ContextVar("serving_control_request", default=False)


class Stalled(Exception):
    """The body stopped arriving; the message says for how long."""


class RequestGuard:
    """Wraps an ASGI app served on ``127.0.0.1:<port>``; see the module's docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        port: int,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_concurrent_bodies: int = MAX_CONCURRENT_BODIES,
        max_held_bodies: int = MAX_HELD_BODIES,
        max_queued_requests: int = MAX_QUEUED_REQUESTS,
        first_byte_timeout: float = FIRST_BYTE_SECONDS,
        chunk_timeout: float = CHUNK_SECONDS,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
        control_key: str | None = None,
        loadable: Iterable[str] = (),
    ) -> None:
        """``control_key`` (None: no control request passes) lets ``python -m serving reload``
        load the models named in ``loadable``, and nothing else."""
        self.app = app
        self.port = port
        self.hosts = frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)
        self.origins = frozenset(f"http://{host}" for host in self.hosts)
        self.max_body_bytes = max_body_bytes
        self.first_byte_timeout = first_byte_timeout
        self.chunk_timeout = chunk_timeout
        self.body_timeout = body_timeout
        self._held = asyncio.Semaphore(max(max_held_bodies, max_concurrent_bodies))
        self._slots = asyncio.Semaphore(max_concurrent_bodies)
        self.max_queued_requests = max_queued_requests
        self._queued = 0
        self._control_key = control_key.encode() if control_key else None
        self._control_paths = frozenset(f"/v2/repository/models/{name}/load" for name in loadable)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the app's own
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method, path = scope.get("method", "GET"), scope["path"]
        refusal = self.refusal(path, headers, method)
        if refusal is not None:
            await reply(send, *refusal)
            return
        # set in this request's own context (one task per request), so no other request sees it
        token = CONTROL_REQUEST.set(self.controls(method, path, headers))
        try:
            await self._forward(scope, receive, send, headers)
        except Stalled as stalled:
            # closed, so that what the client sends later is not read as a new request
            await reply(send, 408, str(stalled), close=True)
        finally:
            CONTROL_REQUEST.reset(token)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, list[str]]
    ) -> None:
        length = headers.get("content-length", [None])[0]
        if length is None and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: health, metadata, readiness
            return
        # no place is held before the first byte: stalling after the headers costs no one
        first = await _within(
            receive(),
            self.first_byte_timeout,
            f"no byte of the request body arrived within {self.first_byte_timeout:g} s of its "
            "headers; send the body with them, at once",
        )
        if self._queued >= self.max_queued_requests:
            # closed: the rest of the body, unread, must not be taken for the next request
            await reply(
                send,
                503,
                f"the server has {self._queued} requests in hand, as many as it takes at once; "
                f"try again in {RETRY_AFTER_SECONDS} s",
                close=True,
                retry_after=RETRY_AFTER_SECONDS,
            )
            return
        async with contextlib.AsyncExitStack() as places:
            self._queued += 1
            places.callback(self._leave_queue)
            await places.enter_async_context(self._held)
            body = await self._read_body(first, receive)
            if body is None:  # the client left
                return
            if isinstance(body, int):
                await reply(send, 413, self.too_large("a chunked request body"))
                return
            structures = _structures(body)
            if structures > MAX_JSON_STRUCTURES:
                await reply(
                    send,
                    400,
                    f"the request body holds {structures:,} JSON lists, objects and strings, more "
                    f"than {MAX_JSON_STRUCTURES:,}; send pixel values as numbers, flat or nested "
                    "by image and row",
                )
                return
            await places.enter_async_context(self._slots)

            async def answer(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # the answer is made: a client slow to read it holds only its bytes
                    await places.aclose()
                await send(message)

            replayed = _replay(body, receive)
            del body  # the app's copy is the only one left once it has read it
            await self.app(scope, replayed, answer)

    def _leave_queue(self) -> None:
        self._queued -= 1

    def refusal(
        self, path: str, headers: dict[str, list[str]], method: str = "GET"
    ) -> tuple[int, str] | None:
        """The status and line a request gets from its method, path and headers, or None."""
        hosts = headers.get("host", [])
        if len(hosts) != 1 or hosts[0].lower() not in self.hosts:
            named = ", ".join(repr(host) for host in hosts) or "none"
            return 400, (
                f"Host {named} is not this server's; it answers only "
                f"127.0.0.1:{self.port}, localhost:{self.port} or [::1]:{self.port}"
            )
        origins = headers.get("origin", [])
        if any(origin.lower() not in self.origins for origin in origins):
            return 403, (
                f"requests from web pages of other origins are refused (Origin {origins[0]!r}); "
                f"this server answers local clients and http://127.0.0.1:{self.port} only"
            )
        if [part for part in path.split("/") if part][:2] == ["v2", "repository"]:
            if not self.controls(method, path, headers):
                return 404, REPOSITORY_OFF
        encodings = {
            token.strip().lower()
            for value in headers.get("content-encoding", [])
            for token in value.split(",")
        } - {"", "identity"}
        if encodings:
            return 415, (
                f"compressed request bodies (Content-Encoding {', '.join(sorted(encodings))}) "
                "are refused; send plain JSON"
            )
        lengths = headers.get("content-length", [])
        if lengths:
            # str.isdigit alone takes "²" and other digits int() refuses
            if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
                return 400, f"Content-Length {', '.join(lengths)} is not one number of bytes"
            if int(lengths[0]) > self.max_body_bytes:
                return 413, self.too_large(f"a request body of {int(lengths[0]):,} bytes")
        return None

    def controls(self, method: str, path: str, headers: dict[str, list[str]]) -> bool:
        """Whether this is the control request: ``POST`` to a loadable model's load route,
        exactly, with the server's key (once) and no Origin. The Host is checked before."""
        if self._control_key is None or method != "POST" or path not in self._control_paths:
            return False
        keys = headers.get(CONTROL_HEADER, [])
        return (
            "origin" not in headers
            and len(keys) == 1
            and hmac.compare_digest(keys[0].encode("latin-1"), self._control_key)
        )

    def too_large(self, what: str) -> str:
        return (
            f"{what} is larger than this server's limit of {self.max_body_bytes:,} bytes "
            f"({self.max_body_bytes / MiB:g} MiB); send fewer images per request"
        )

    async def _read_body(self, first: Message, receive: Receive) -> bytes | int | None:
        """The whole body from its first message on; the bytes read once they pass
        ``max_body_bytes``; None if the client left. ``Stalled`` if the body pauses for
        ``chunk_timeout``, or is not whole within ``body_timeout``.

        uvicorn stops reading the socket while a request's unread body exceeds 64 KiB and
        drops what arrives after the answer, so a refused body is never held.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        chunks: list[bytes] = []
        size = 0
        message = first
        while True:
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                return size
            if not message.get("more_body", False):
                return b"".join(chunks)
            left = deadline - loop.time()
            if left <= self.chunk_timeout:
                message = await _within(
                    receive(),
                    left,
                    f"the request body did not arrive whole within {self.body_timeout:g} s "
                    f"({size:,} bytes came); send it whole, at once",
                )
            else:
                message = await _within(
                    receive(),
                    self.chunk_timeout,
                    f"the request body stopped for {self.chunk_timeout:g} s after {size:,} "
                    "bytes; send it whole, at once",
                )


async def _within(waiting: Awaitable[Message], seconds: float, stalled: str) -> Message:
    try:
        return await asyncio.wait_for(waiting, max(seconds, 0))
    except TimeoutError:
        raise Stalled(stalled) from None


def _structures(body: bytes) -> int:
    """How many lists, objects and strings a JSON text holds, or more: brackets and escaped
    quotes inside strings count too, which only a request no client sends has many of."""
    return body.count(b"[") + body.count(b"{") + body.count(b'"') // 2


def _headers(scope: Scope) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return headers


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body read already, then the connection's own messages
    (the app may wait on them for the client's disconnect)."""
    held: bytes | None = body

    async def replayed() -> Message:
        nonlocal held
        if held is None:
            return await receive()
        # handed over, not kept: the app's own copy is all that holds it from here
        message = {"type": "http.request", "body": held, "more_body": False}
        held = None
        return message

    return replayed


async def reply(
    send: Send, status: int, message: str, close: bool = False, retry_after: int | None = None
) -> None:
    """One line of JSON, as MLServer answers its own errors; ``close``: and the connection
    is closed after it; ``retry_after``: the seconds a client should wait before asking again."""
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
