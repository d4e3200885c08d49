"""demo.serve's handler on one end of a socket pair: what a request gets, and how long an idle
or dribbling connection is kept (no server, no port; the system tests run the real one)."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

SLOW = 0.3  # seconds: the handler's timeout in the tests that wait for it
PORT = 8000  # the port the handler's server says it listens on


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    (site / "index.html").write_text("<!DOCTYPE html><title>digits</title>\n")
    (site / "app.mjs").write_text("export const answer = 42;\n")
    (site / "models" / "model.onnx").write_bytes(b"\x08\x07")
    return site


def _handle(serve, site, server_side: socket.socket) -> float:
    """Run the handler on ``server_side`` to the end; the seconds it took."""
    started = time.monotonic()
    server = SimpleNamespace(server_address=("127.0.0.1", PORT))
    serve.SiteHandler(server_side, ("127.0.0.1", 40000), server, directory=str(site))
    return time.monotonic() - started


def _exchange(serve, site, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` whole; the status line, headers and body of the answer."""
    client, server_side = socket.socketpair()
    with client:
        with server_side:
            client.sendall(request)
            client.shutdown(socket.SHUT_WR)
            _handle(serve, site, server_side)
        reply = _read_all(client)
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode("iso-8859-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, {name.lower(): value for name, value in headers.items()}, body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _get(
    serve, site, target: str, host: str | None = f"127.0.0.1:{PORT}"
) -> tuple[str, dict[str, str], bytes]:
    header = f"Host: {host}\r\n" if host is not None else ""
    return _exchange(serve, site, f"GET {target} HTTP/1.1\r\n{header}\r\n".encode())


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/index.html",
        "/?model=int8",
        "/models/model.onnx",
        "/vendor/ort-wasm-simd-threaded.wasm",
        "/a%20b.png",
        "/%E2%9C%93",  # a check mark, percent-encoded UTF-8
        "/?q=%00",  # the query is not the path: the server ignores it
    ],
)
def test_the_paths_a_page_asks_for_are_fine(serve, target):
    assert serve.path_problem(target) is None


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("/%00", "NUL or another control character"),
        ("/index.html%00", "NUL or another control character"),
        ("/index.html%00.png", "NUL or another control character"),
        ("/a%0Ab", "NUL or another control character"),
        ("/a\x00b", "NUL or another control character"),
        ("/%zz", "% that is not followed by two hex digits"),
        ("/index.html%", "% that is not followed by two hex digits"),
        ("/%4", "% that is not followed by two hex digits"),
        ("/%ff", "not UTF-8"),
        ("/%ED%A0%80", "not UTF-8"),  # a lone surrogate
        ("/caf\xe9", "not percent-encoded ASCII"),
        ("/" + "a" * 1024, "longer than 1024 characters"),
    ],
)
def test_a_malformed_path_is_named_as_such(serve, target, problem):
    assert problem in serve.path_problem(target)


@pytest.mark.parametrize("target", ["/%00", "/index.html%00", "/%zz", "/%ff", "/" + "a" * 2000])
def test_a_malformed_path_gets_a_400_of_one_line(serve, site, target, capsys):
    status, headers, body = _get(serve, site, target)

    assert status == "HTTP/1.0 400 Bad Request"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body.decode().startswith("400 Bad Request: the path ")
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"LocalHost:{PORT}", f"[::1]:{PORT}"]
)
def test_the_servers_own_host_and_port_are_served(serve, site, host):
    assert serve.host_problem(host, PORT) is None
    status, _, body = _get(serve, site, "/", host)
    assert status == "HTTP/1.0 200 OK" and body == (site / "index.html").read_bytes()


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("evil.example:8120", "Host 'evil.example:8120'"),
        (f"evil.example:{PORT}", f"Host 'evil.example:{PORT}'"),
        ("127.0.0.1:8001", "Host '127.0.0.1:8001'"),
        ("127.0.0.1", "Host '127.0.0.1'"),
        ("localhost.evil.example:8000", "Host 'localhost.evil.example:8000'"),
        (None, "no Host header"),
    ],
)
def test_another_host_gets_a_400_of_one_line(serve, site, host, said, capsys):
    status, headers, body = _get(serve, site, "/", host)
    assert status == "HTTP/1.0 400 Bad Request"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    text = body.decode()
    assert said in text and f"this server is 127.0.0.1:{PORT}" in text, text
    assert text.count("\n") == 1 and b"<title>" not in body
    assert "Traceback" not in capsys.readouterr().err


def test_a_folder_is_not_listed_but_the_site_root_is_its_page(serve, site):
    status, headers, body = _get(serve, site, "/models/")
    assert status == "HTTP/1.0 404 File not found"
    assert b"model.onnx" not in body and body.count(b"\n") == 1
    assert headers["content-type"] == "text/plain; charset=utf-8"

    status, headers, body = _get(serve, site, "/")
    assert status == "HTTP/1.0 200 OK"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == (site / "index.html").read_bytes()


def test_files_keep_their_types_no_cache_and_the_folder_they_are_in(serve, site):
    status, headers, body = _get(serve, site, "/app.mjs")
    assert status == "HTTP/1.0 200 OK" and body == (site / "app.mjs").read_bytes()
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    (site.parent / "secret.txt").write_text("not the site's\n")
    for target in ("/../secret.txt", "/%2e%2e/secret.txt"):
        status, _, body = _get(serve, site, target)
        assert status == "HTTP/1.0 404 File not found" and b"not the site" not in body


def test_an_idle_connection_is_closed_quietly_after_the_timeout(serve, site, monkeypatch, capsys):
    assert 0 < serve.SiteHandler.timeout == serve.REQUEST_TIMEOUT <= 10  # a few seconds
    monkeypatch.setattr(serve.SiteHandler, "timeout", SLOW)
    client, server_side = socket.socketpair()
    with client:
        with server_side:
            took = _handle(serve, site, server_side)
        assert _read_all(client) == b""
    assert SLOW * 0.9 <= took < SLOW + 1
    assert capsys.readouterr().err == ""


def test_a_request_dribbled_in_is_cut_off_at_the_deadline(serve, site, monkeypatch, capsys):
    # a byte every SLOW / 6 s for about 3 s: no single read waits long, the whole request does
    monkeypatch.setattr(serve.SiteHandler, "timeout", SLOW)
    client, server_side = socket.socketpair()
    stop = threading.Event()

    def dribble() -> None:
        for byte in b"GET /index.html HTTP/1.1\r\nHost: here\r\nX-Pad: " + b"a" * 20:
            if stop.wait(SLOW / 6):
                return
            try:
                client.send(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=dribble)
    sender.start()
    try:
        with server_side:
            took = _handle(serve, site, server_side)
    finally:
        stop.set()
        sender.join()
    with client:
        assert _read_all(client) == b""
    assert took < SLOW + 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "Request timed out" in lines[0], lines


def test_a_failed_request_is_one_warning_line_and_a_hang_up_is_none(serve, capsys):
    try:
        raise ValueError("embedded null byte\nand more")
    except ValueError:
        serve.SiteServer.handle_error(None, None, ("127.0.0.1", 40000))
    assert capsys.readouterr().err == (
        "demo: warning: a request from 127.0.0.1:40000 failed: "
        "ValueError: embedded null byte\\nand more\n"
    )
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        serve.SiteServer.handle_error(None, None, ("127.0.0.1", 40000))
    assert capsys.readouterr().err == ""


def test_an_interrupt_while_a_request_thread_starts_gives_its_slot_back_once(
    serve, site, monkeypatch
) -> None:
    """Ctrl-C (or SIGTERM) landing in ``Thread.start`` after the thread exists: the thread
    serves its request and gives the slot back; the interrupted server must not as well."""
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def start_then_interrupt(thread: threading.Thread) -> None:
        real_start(thread)
        started.append(thread)
        raise KeyboardInterrupt

    server = serve.make_server(site, 0)
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    client, server_side = socket.socketpair()
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        client.shutdown(socket.SHUT_WR)
        with monkeypatch.context() as patched:
            patched.setattr(threading.Thread, "start", start_then_interrupt)
            with pytest.raises(KeyboardInterrupt):
                server.process_request(server_side, ("127.0.0.1", 40000))
        started[0].join(timeout=10)
        assert errors == []
        assert server._slots._value == serve.MAX_CONNECTIONS  # every slot free, none extra
    finally:
        client.close()
        server.server_close()
