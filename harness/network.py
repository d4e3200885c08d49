"""Local ports for the servers the tests and the benchmarks start, all on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    """A local port with nothing listening on it (a server started next may take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(
    url: str, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True, poll: float = 0.5
) -> None:
    """Until ``url`` answers 200; fail early when ``alive()`` says the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"the server behind {url} exited before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(poll)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


def free_port_pair() -> int:
    """A local port P with P + 1 free as well (a server and its gRPC twin)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports on 127.0.0.1")


def listening_addresses(pids: set[int]) -> list[str]:
    """The local address:port of every listening TCP socket of those processes."""
    shown = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for fields in map(str.split, shown.splitlines()):
        owners = {int(part.split("=")[1]) for part in fields[-1].split(",") if "pid=" in part}
        if owners & pids:
            found.append(fields[3])
    return found
