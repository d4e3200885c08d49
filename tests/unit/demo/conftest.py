"""``demo`` is no installed package (it is an optional capability run from the project root):
its modules are imported with the project root on the path."""

from __future__ import annotations

import http.client
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from kernel.paths import PROJECT_ROOT


@pytest.fixture
def serve(monkeypatch) -> ModuleType:
    """``demo.serve``, imported from the project root."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    return importlib.import_module("demo.serve")


@pytest.fixture
def answers(monkeypatch) -> ModuleType:
    """``demo.answers``, imported from the project root."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    return importlib.import_module("demo.answers")


@pytest.fixture
def feedback(monkeypatch) -> ModuleType:
    """``demo.feedback``, imported from the project root."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    return importlib.import_module("demo.feedback")


class PageClient:
    """Requests to a page's server on loopback as the page makes them: its own origin, JSON."""

    def __init__(self, server) -> None:
        self.host, self.port = server.server_address[:2]

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None
    ) -> tuple[int, str]:
        """The status and text of the answer; a header given as None is not sent."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        sent = {"Content-Type": "application/json", "Origin": f"http://{self.host}:{self.port}"}
        sent.update(headers or {})
        data = body.encode() if isinstance(body, str) else body
        try:
            connection.request(
                method, path, body=data, headers={k: v for k, v in sent.items() if v}
            )
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def session(self) -> str:
        """A page id the server hands out."""
        status, text = self.request("POST", "/session", "{}")
        assert status == 201, text
        return json.loads(text)["page"]


@pytest.fixture
def running(tmp_path, serve) -> Iterator[Callable[..., tuple[object, PageClient]]]:
    """Starts ``demo.serve.make_server(site, 0, **takers)`` on loopback in a thread, for a
    site of one page; the server and a client of it. Each is stopped after the test."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!DOCTYPE html><title>digits</title>\n")
    started = []

    def start(**takers) -> tuple[object, PageClient]:
        server = serve.make_server(site, 0, **takers)
        # a short poll: shutdown() waits for the loop's next look, 0.5 s by default per test
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        started.append(server)
        return server, PageClient(server)

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pages(monkeypatch) -> ModuleType:
    """``demo.pages``, imported from the project root."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    return importlib.import_module("demo.pages")


@pytest.fixture
def review(monkeypatch) -> ModuleType:
    """``demo.review``, imported from the project root."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    return importlib.import_module("demo.review")
