"""Serve the built draw-a-digit site on 127.0.0.1, with the MIME types the page needs.

    python -m demo.serve --site demo/site --port 8000

Browsers refuse an ES module that is not served as JavaScript, and onnxruntime-web
compiles its WebAssembly as it streams in only when it comes as ``application/wasm``.
Python's ``http.server`` guesses types from the machine's ``/etc/mime.types``, which may
lack both, so they are fixed here.

Anyone on the machine can reach the port, so the server keeps within limits: a connection
that has not sent its whole request (line and headers) ``REQUEST_TIMEOUT`` seconds after
the server began waiting for it is closed (an idle one quietly), at most ``MAX_CONNECTIONS``
are handled at once (one more gets a 503), a folder is never listed (404), and a request
whose path is malformed (a NUL or other control character, a bad percent escape, bytes
that are not UTF-8, more than ``MAX_TARGET_LENGTH`` characters) gets a one-line 400. So does
a request whose ``Host`` is not this server's own loopback address and port: a page of
another site whose name an attacker points at 127.0.0.1 (DNS rebinding) reads nothing.

What it takes is ``POST /session``, the page asking for its id (``demo.pages``), then,
naming that id, ``POST /answers``, the page reporting an answer for the request log
(``demo.answers``), and ``POST /feedback``, a person's correction, kept for review
(``demo.feedback``, into the feedback store, ``feedback.store``; ``GET /feedback`` says how
many are accepted and waiting), from the page's own origin only, JSON of at most
``MAX_ANSWER_BYTES``, each within its limits a minute; anything else posted gets a one-line
4xx and nothing is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import http.server
import io
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from demo.answers import (
    ANSWERS_PATH,
    LOG_BYTES_PER_DAY,
    MAX_ANSWER_BYTES,
    UNREGISTERED,
    AnswerError,
    PageAnswers,
    read_report,
    short,
)
from demo.feedback import FEEDBACK_PATH, PageFeedback
from demo.pages import SESSION_PATH, PageIds, TooMany, UnknownPage
from feedback.store import FeedbackStore, ReviewQueueFull
from kernel.cli import CommandError, one_line, run_command
from monitor.request_log import RequestLog, ServedModel

HOST = "127.0.0.1"
LAST_PORT = 65535
_PORT_RANGE = f"0..{LAST_PORT} (0 picks a free one)"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".png": "image/png",
}
# Seconds a connection has to send a whole request, its line and headers, from when the
# server starts waiting for it (on connecting, or after the previous answer); also the most
# any one read or write may stall. A browser sends its request at once; a connection left
# idle, or dribbling a request a byte at a time, is closed after this and frees its thread.
REQUEST_TIMEOUT = 5.0
# Connections handled at once, a thread each; any more are answered 503 and closed at once.
# A browser opens about 6 per server.
MAX_CONNECTIONS = 64
# The longest request target (path and query) answered; the site's paths are under 40.
MAX_TARGET_LENGTH = 1024
# A "%" that does not start an escape of two hex digits.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BUSY_BODY = b"503 Service Unavailable: too many connections at once; try again\n"
_BUSY_REPLY = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Cache-Control: no-cache\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + _BUSY_BODY
)


def path_problem(target: str) -> str | None:
    """Why the request target ``target`` (as the request line has it) names no file, or None.

    Its path part must be ASCII, percent escapes of two hex digits each, UTF-8 once decoded,
    and free of control characters (a NUL would reach ``open`` as an embedded null byte).
    """
    if len(target) > MAX_TARGET_LENGTH:
        return f"the path is longer than {MAX_TARGET_LENGTH} characters"
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.isascii():
        return "the path holds a character that is not percent-encoded ASCII"
    if _BAD_ESCAPE.search(path):
        return "the path holds a % that is not followed by two hex digits"
    try:
        decoded = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return "the path is not UTF-8 once percent-decoded"
    if any(character < " " or character == "\x7f" for character in decoded):
        return "the path holds a NUL or another control character"
    return None


def host_problem(host: str | None, port: int) -> str | None:
    """Why a request with the ``Host`` header ``host`` is not for this server on ``port``,
    or None: only its loopback address or ``localhost``, with its port, name it."""
    names = ("127.0.0.1", "localhost", "[::1]")
    allowed = {f"{name}:{port}" for name in names}
    if port == 80:  # a browser leaves the default port out
        allowed.update(names)
    if host is not None and host.strip().lower() in allowed:
        return None
    said = "no Host header" if host is None else f"Host {short(host)}"
    return f"{said}; this server is 127.0.0.1:{port} (or localhost:{port})"


class _RequestReader(io.RawIOBase):
    """A connection's bytes, no read waiting past the deadline of the request being read."""

    def __init__(self, connection: socket.socket, timeout: float) -> None:
        super().__init__()
        self._connection = connection
        self._timeout = timeout
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not complete in time")
        self._connection.settimeout(min(remaining, self._timeout))
        try:
            return self._connection.recv_into(buffer)
        finally:
            self._connection.settimeout(self._timeout)


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of one folder; no caching without revalidation, so a new model shows up."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}
    # each read and write of the connection (socketserver sets it on the socket)
    timeout = REQUEST_TIMEOUT
    # an error is one line of text, not a page of HTML
    error_message_format = "%(code)d %(message)s: %(explain)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain reader socketserver made; the request's own instead
        self._reader = _RequestReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + self.timeout
        try:
            self.rfile.peek(1)
        except TimeoutError:
            # nothing came: an idle connection (a browser's spare one, say) closes quietly
            self.close_connection = True
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = path_problem(self.path) or host_problem(
            self.headers.get("Host"), self.server.server_address[1]
        )
        if problem is not None:
            self.send_error(HTTPStatus.BAD_REQUEST, explain=problem)
            return False
        return True

    def do_GET(self) -> None:
        feedback: PageFeedback | None = getattr(self.server, "feedback", None)
        if self.path.split("?", 1)[0] == FEEDBACK_PATH and feedback is not None:
            self._send_json(HTTPStatus.OK, feedback.counts())
            return
        super().do_GET()

    def do_POST(self) -> None:
        take = self._takers().get(self.path.split("?", 1)[0])
        if take is None:
            self.send_error(HTTPStatus.NOT_FOUND, explain="nothing here takes a POST")
            return
        body = self._page_body()
        if body is None:
            return
        try:
            status, value = take(body)
        except TooMany as err:
            self.send_error(HTTPStatus.TOO_MANY_REQUESTS, explain=str(err))
        except (AnswerError, UnknownPage) as err:
            self.send_error(HTTPStatus.BAD_REQUEST, explain=str(err))
        except ReviewQueueFull as err:
            self.send_error(HTTPStatus.INSUFFICIENT_STORAGE, explain=str(err))
        except OSError as err:
            self.send_error(
                HTTPStatus.INSUFFICIENT_STORAGE, explain=f"the feedback store: {err.strerror}"
            )
        except Exception as err:  # an answer, not a dropped connection, whatever went wrong
            self.server.handle_error(self.request, self.client_address)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, explain=type(err).__name__)
        else:
            if value is None:
                self.send_response(status)
                self.end_headers()
            else:
                self._send_json(status, value)

    def _takers(self) -> dict[str, Callable[[bytes], tuple[HTTPStatus, dict | None]]]:
        """What each path that takes a POST does with a body; the status and JSON to answer."""
        answers: PageAnswers | None = getattr(self.server, "answers", None)
        feedback: PageFeedback | None = getattr(self.server, "feedback", None)
        pages: PageIds | None = getattr(self.server, "pages", None)

        def issue(body: bytes) -> tuple[HTTPStatus, dict]:
            read_report(body, set())  # the page sends {}; anything else is no page's
            return HTTPStatus.CREATED, {"page": pages.issue()}

        def report(body: bytes) -> tuple[HTTPStatus, None]:
            answers.record(body)
            return HTTPStatus.NO_CONTENT, None

        def correct(body: bytes) -> tuple[HTTPStatus, dict]:
            said = feedback.submit(body)
            return HTTPStatus.CREATED if said["stored"] else HTTPStatus.OK, said

        takers = {SESSION_PATH: issue, ANSWERS_PATH: report, FEEDBACK_PATH: correct}
        present = {SESSION_PATH: pages, ANSWERS_PATH: answers, FEEDBACK_PATH: feedback}
        return {path: take for path, take in takers.items() if present[path] is not None}

    def _page_body(self) -> bytes | None:
        """The body of a POST from the page itself, or None once a 4xx has been sent."""
        origin = self.headers.get("Origin")
        host, port = self.server.server_address[:2]
        if origin is not None and origin not in (
            f"http://{host}:{port}",
            f"http://localhost:{port}",
        ):
            self.send_error(
                HTTPStatus.FORBIDDEN, explain=f"posts come from this page, not {origin}"
            )
            return None
        if self.headers.get_content_type() != "application/json":
            self.send_error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, explain="expected Content-Type application/json"
            )
            return None
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.send_error(HTTPStatus.LENGTH_REQUIRED, explain="expected a Content-Length")
            return None
        if not 0 <= length <= MAX_ANSWER_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot go on
            self.send_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                explain=f"{length} bytes; a post takes at most {MAX_ANSWER_BYTES}",
            )
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None  # the client hung up mid-body
        return body

    def _send_json(self, status: HTTPStatus, value: dict) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        # a folder without index.html is not shown: what the site holds is not for browsing
        self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Only failures are worth a line; the page fetches half a dozen files per visit.
        if isinstance(code, int) and code < 400:
            return
        super().log_request(code, size)


class SiteServer(http.server.ThreadingHTTPServer):
    """The standard library's threading server, handling at most ``MAX_CONNECTIONS`` at once
    and reporting a request that failed in one line instead of a traceback."""

    # A burst of connections waits in the kernel's queue (the most Python's listen() picks
    # by itself), not dropped: with socketserver's 5, 300 at once took 49 s to connect.
    request_queue_size = 128

    answers: PageAnswers | None = None
    feedback: PageFeedback | None = None
    pages: PageIds | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # the thread did not start: its slot is free again
            self._slots.release()
            raise
        # A KeyboardInterrupt (Ctrl-C, SIGTERM) can land while the thread is starting: it
        # runs then and gives the slot back itself, so this one must not (a second release
        # raised "Semaphore released too many times" in the thread on the way out)

    def process_request_thread(
        self, request: socket.socket, client_address: tuple[str, int]
    ) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return  # the client hung up (a page closed while a file was on its way)
        host, port = client_address[:2]
        print(
            f"demo: warning: a request from {host}:{port} failed: "
            f"{one_line(f'{type(error).__name__}: {error}')}",
            file=sys.stderr,
            flush=True,
        )


def _refuse(request: socket.socket) -> None:
    """Answer 503 on a connection beyond the limit, without waiting for anything."""
    request.setblocking(False)
    with contextlib.suppress(OSError):
        request.send(_BUSY_REPLY)
    with contextlib.suppress(OSError):
        request.recv(65536)  # what the client sent already: closing with it unread resets


class SiteError(CommandError):
    """The site cannot be served; the message says what to do."""


def make_server(
    site: Path,
    port: int,
    host: str = HOST,
    answers: PageAnswers | None = None,
    feedback: PageFeedback | None = None,
) -> SiteServer:
    """A server for ``site`` on ``host:port`` (0 picks a free port), not yet serving; the
    page's answers go to ``answers`` and its corrections to ``feedback`` (None: a POST
    there is 404), and it hands out the page ids they check (one ``PageIds`` for both: an
    id is the page's for both)."""
    if not (site / "index.html").is_file():
        raise SiteError(
            f"{site} holds no built site (no index.html); run make demo, which builds it"
        )
    issuers = {id(taker.pages): taker.pages for taker in (answers, feedback) if taker}
    if len(issuers) > 1:
        raise ValueError("answers and feedback check ids of two PageIds; give them one")
    handler = functools.partial(SiteHandler, directory=str(site))
    try:
        server = SiteServer((host, port), handler)
        server.answers = answers
        server.feedback = feedback
        server.pages = next(iter(issuers.values()), None)
        return server
    except OverflowError:
        # The socket's answer to a port outside 0..65535 is OverflowError, not OSError; callers
        # other than main (the bench) pass their port unchecked.
        raise SiteError(f"{port} is no port; expected {_PORT_RANGE}") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise SiteError(
                f"{host}:{port} is taken by another program; stop it, or choose another "
                f"port (make demo DEMO_PORT=8010)"
            ) from None
        raise SiteError(f"cannot listen on {host}:{port} ({err.strerror})") from None


def port_number(text: str) -> int:
    """The ``--port`` argument as a port: an integer in 0..65535, 0 picking a free port."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= LAST_PORT:
        raise argparse.ArgumentTypeError(f"{text!r} is no port; expected {_PORT_RANGE}")
    return port


def serve(
    site: Path,
    port: int,
    answers: PageAnswers | None = None,
    feedback: PageFeedback | None = None,
) -> None:
    """Serve ``site`` until interrupted, after printing its address."""
    server = make_server(site, port, answers=answers, feedback=feedback)
    host, bound_port = server.server_address[:2]
    print(f"demo: the page is on http://{host}:{bound_port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if answers is not None:
            answers.close()
        if feedback is not None:
            feedback.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.serve", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--site", type=Path, required=True, help="the folder demo.build wrote")
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free one")
    parser.add_argument("--feedback-store", type=Path, help="take corrections, kept here")
    parser.add_argument("--request-log", type=Path, help="take answers, logged here")
    parser.add_argument(
        "--log-day-bytes",
        type=int,
        default=LOG_BYTES_PER_DAY,
        help="the most the request log writes a day",
    )
    args = parser.parse_args(argv)
    answers, feedback = site_takers(
        args.site, args.request_log, args.feedback_store, args.log_day_bytes
    )
    serve(args.site, args.port, answers, feedback)
    return 0


def site_takers(
    site: Path, log: Path | None, store: Path | None, log_day_bytes: int = LOG_BYTES_PER_DAY
) -> tuple[PageAnswers | None, PageFeedback | None]:
    """The answers and corrections of the site's models (by the names its manifest gives
    them, none registered), to a request log in ``log`` and a store in ``store``: the page's
    server without the pipeline (``python -m demo`` is the one with it)."""
    try:
        manifest = json.loads((site / "models.json").read_text(encoding="utf-8"))
        names = [entry["name"] for entry in manifest["models"]]
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    models = {name: ServedModel(name, UNREGISTERED) for name in names}
    pages = PageIds()
    answers = feedback = None
    if log is not None:
        request_log = RequestLog(log, "page", max_day_bytes=log_day_bytes)
        answers = PageAnswers(request_log, models, pages)
    if store is not None:
        feedback = PageFeedback(FeedbackStore(store), models, pages)
    return answers, feedback


if __name__ == "__main__":
    sys.exit(run_command("demo", main))
