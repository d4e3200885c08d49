"""Serve the built draw-a-digit site on 127.0.0.1, with the MIME types the page needs.

    python -m demo.serve --site demo/site --port 8000

Browsers refuse an ES module that is not served as JavaScript, and onnxruntime-web
compiles its WebAssembly as it streams in only when it comes as ``application/wasm``.
Python's ``http.server`` guesses types from the machine's ``/etc/mime.types``, which may
lack both, so they are fixed here.
"""

from __future__ import annotations

import argparse
import errno
import functools
import http.server
import sys
from pathlib import Path

from kernel.cli import CommandError, run_command

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


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of one folder; no caching without revalidation, so a new model shows up."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Only failures are worth a line; the page fetches half a dozen files per visit.
        if isinstance(code, int) and code < 400:
            return
        super().log_request(code, size)


class SiteError(CommandError):
    """The site cannot be served; the message says what to do."""


def make_server(site: Path, port: int, host: str = HOST) -> http.server.ThreadingHTTPServer:
    """A server for ``site`` on ``host:port`` (0 picks a free port), not yet serving."""
    if not (site / "index.html").is_file():
        raise SiteError(
            f"{site} holds no built site (no index.html); run make demo, which builds it"
        )
    handler = functools.partial(SiteHandler, directory=str(site))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
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


def serve(site: Path, port: int) -> None:
    """Serve ``site`` until interrupted, after printing its address."""
    server = make_server(site, port)
    host, bound_port = server.server_address[:2]
    print(f"demo: the page is on http://{host}:{bound_port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.serve", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--site", type=Path, required=True, help="the folder demo.build wrote")
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free one")
    args = parser.parse_args(argv)
    serve(args.site, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("demo", main))
