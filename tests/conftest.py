"""Fixtures shared by every test; the plain helpers they wrap are in ``factories/``.

Nothing here touches the network: an autouse guard refuses any connection that is
not to this machine, so a test that would reach the internet fails instead.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from factories.data import random_mnist
from factories.mlflow_store import sqlite_uri, using_store
from factories.params import params_dict
from factories.trained import Workspace, train_tiny
from stages.dataset import canonical

_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker has a core of its own: TensorFlow's default thread
    pools (a thread per core, in every worker and every stage process a test starts) would
    make the workers fight over both cores. Set before any test imports TensorFlow."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


_SYSTEM_TESTS = Path(__file__).parent / "system"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/system/ is of the system tier: it needs real servers."""
    for item in items:
        if _SYSTEM_TESTS in item.path.parents:
            item.add_marker(pytest.mark.system)


def _is_local(address: object) -> bool:
    if isinstance(address, tuple) and address:
        return str(address[0]) in _LOCAL_HOSTS
    return isinstance(address, str | bytes)  # AF_UNIX paths


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse connections and name lookups beyond localhost (realdata tests are exempt)."""
    if request.node.get_closest_marker("realdata"):
        return
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        if not _is_local(address):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        real_connect(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if host not in _LOCAL_HOSTS and host is not None:
            raise AssertionError(f"test tried to reach the network: lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# --- tiny data and params -------------------------------------------------------------------------


@pytest.fixture
def tiny_mnist() -> dict[str, np.ndarray]:
    return random_mnist()


@pytest.fixture
def make_canonical(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, np.ndarray]], None]:
    """Make the given arrays the 'canonical' MNIST for this test: pinned shapes and digests.

    The dicts are patched item by item (not rebound), so code that captured them, such
    as ``verify_canonical``'s default ``digests`` argument, sees the change too.
    """

    def make(arrays: dict[str, np.ndarray]) -> None:
        for name in canonical.ARRAY_NAMES:
            monkeypatch.setitem(canonical.SHAPES, name, arrays[name].shape)
            monkeypatch.setitem(canonical.DIGESTS, name, canonical.array_digest(arrays[name]))

    return make


@pytest.fixture
def params_file(tmp_path: Path) -> Callable[..., Path]:
    """``params_file(fetch={...}, ...)`` writes a valid params file with those overrides."""

    def write(name: str = "params.yaml", **sections: dict) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(params_dict(**sections)), encoding="utf-8")
        return path

    return write


# --- MLflow stores and one tiny training per session ---------------------------------------------


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated SQLite store to copy: a fresh one costs seconds of migrations."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    with using_store(folder, sqlite_uri(folder)) as uri:
        import mlflow

        mlflow.MlflowClient(uri).search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def tmp_mlflow_store(tmp_path: Path, mlflow_template_db: Path) -> Iterator[str]:
    """A store of this test's own in ``tmp_path``, which is also the working directory."""
    shutil.copyfile(mlflow_template_db, tmp_path / "mlflow.db")
    with using_store(tmp_path, sqlite_uri(tmp_path)) as uri:
        yield uri


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Workspace:
    """The train stage, run once per session on tiny digits; evaluate and export reuse it."""
    return train_tiny(tmp_path_factory.mktemp("workspace"), mlflow_template_db)


# --- a local HTTP server, for the sources that download ---------------------------------------


# path -> (body, Content-Length sent or None for the true length, status)
Routes = dict[str, tuple[bytes, int | None, int]]


@pytest.fixture
def http_server() -> Iterator[tuple[str, Routes]]:
    """An HTTP server on 127.0.0.1 (free port) in a thread; tests fill in its routes."""
    routes: Routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close after each response: a short body is a cut

        def do_GET(self) -> None:
            body, length, status = routes.get(self.path, (b"not found", None, 404))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
