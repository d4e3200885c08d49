"""Shared fixtures: tiny MNIST-shaped data made in the test, params files, stage subprocesses.

Nothing here touches the network: an autouse guard refuses any connection that is
not to this machine, so a test that would reach the internet fails instead.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages import mnist_data

REPO_ROOT = Path(__file__).resolve().parents[1]
_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


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


# --- tiny data -----------------------------------------------------------------------------------


def make_arrays(n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Four MNIST-shaped uint8 arrays; labels cycle 0..9, so each digit appears n/10 times."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": ((np.arange(n_test) + 3) % 10).astype(np.uint8),
    }


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding ``array``."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = False,
                     sub: str = "") -> Path:
    """Write the four IDX files into ``folder/sub`` (``sub="MNIST/raw"`` is torchvision's)."""
    target = folder / sub if sub else folder
    target.mkdir(parents=True, exist_ok=True)
    for name, stem in mnist_data.IDX_FILES.items():
        data = idx_bytes(arrays[name])
        (target / (f"{stem}.gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return folder


@pytest.fixture
def tiny_mnist() -> dict[str, np.ndarray]:
    return make_arrays()


@pytest.fixture
def make_canonical(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, np.ndarray]], None]:
    """Make the given arrays the 'canonical' MNIST for this test: pinned shapes and digests.

    The dicts are patched item by item (not rebound), so code that captured them, such
    as ``verify_canonical``'s default ``digests`` argument, sees the change too.
    """
    def make(arrays: dict[str, np.ndarray]) -> None:
        for name in mnist_data.ARRAY_NAMES:
            monkeypatch.setitem(mnist_data.SHAPES, name, arrays[name].shape)
            monkeypatch.setitem(mnist_data.DIGESTS, name, mnist_data.array_digest(arrays[name]))

    return make


# --- params files and stage subprocesses ---------------------------------------------------------


def params_dict(**sections: dict) -> dict:
    """The repository's params.yaml with the given keys of each section replaced."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, values in sections.items():
        raw[section].update(values)
    return raw


@pytest.fixture
def params_file(tmp_path: Path) -> Callable[..., Path]:
    """``params_file(fetch={...}, ...)`` writes a valid params file with those overrides."""
    def write(name: str = "params.yaml", **sections: dict) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(params_dict(**sections)), encoding="utf-8")
        return path

    return write


def run_module(module: str, *args: str | os.PathLike[str], cwd: Path,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args`` with this checkout's code, from ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def damage_npz(data: bytes, how: str) -> bytes:
    """Damage an .npz the ways a bad disk or a bad copy does, each giving a different exception."""
    damaged = bytearray(data)
    central = data.index(b"PK\x01\x02")  # first central-directory entry
    if how == "encrypted-flag":
        damaged[central + 8] |= 0x01
    elif how == "unknown-compression":
        damaged[central + 10] = 99
    elif how == "npy-header":  # a stored member: the .npy header is plain text
        start = data.index(b"{'descr'")
        damaged[data.index(b"}", start)] = ord("(")
    elif how == "deflate-stream":  # a compressed member: its first deflate block type
        name_len, extra_len = struct.unpack("<HH", data[26:30])
        damaged[30 + name_len + extra_len] |= 0x06
    elif how == "truncated":
        del damaged[len(data) // 2:]
    else:
        raise ValueError(how)
    return bytes(damaged)


# --- a local HTTP server, for the sources that download ---------------------------------------


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# path -> (body, Content-Length sent or None for the true length, status)
Routes = dict[str, tuple[bytes, int | None, int]]


@pytest.fixture
def http_server() -> Iterator[tuple[str, Routes]]:
    """An HTTP server on 127.0.0.1 (free port) in a thread; tests fill in its routes."""
    routes: Routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close after each response: a short body is a cut

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
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
