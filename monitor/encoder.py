"""``python -m monitor.encoder``: the request log's lines made beside a busy server.

Reads batches (``monitor.request_log.encode_lines``'s arguments, pickled by
``multiprocessing.connection``) on stdin and answers each with its JSON lines on stdout,
until stdin ends: the server closed its log, or is gone. Started by the request log's
``_Encoder``; nothing here writes files.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

from monitor.request_log import encode_lines


def main() -> None:
    inbox = Connection(os.dup(0), writable=False)
    outbox = Connection(os.dup(1), readable=False)
    # the answers' channel is fd 1: anything printed by mistake goes to stderr instead
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    while True:
        try:
            batch = inbox.recv()
        except (EOFError, OSError):
            return
        outbox.send_bytes(encode_lines(*batch))


if __name__ == "__main__":
    main()
