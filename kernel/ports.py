"""Whether a local port is free for a server we are about to start."""

from __future__ import annotations

import socket


def port_taken(host: str, port: int) -> bool:
    """True when binding ``host:port`` fails: another program listens there (or holds it)."""
    with socket.socket() as probe:
        # SO_REUSEADDR: a port left in TIME_WAIT by our own stopped server is not "taken"
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
