"""The control key: what lets ``python -m serving reload`` ask a running server to load.

``python -m serving`` writes a fresh random key into ``.serve/<port>/control.key`` (mode
0600, so only the user who started the server can read it) before it hands over to MLServer;
``serving.mlserver_app`` reads it at start and ``serving.guard`` lets exactly one request
through to the model-repository API: ``POST /v2/repository/models/<name>/load`` carrying the
key in ``CONTROL_HEADER``, from a loopback Host, with no ``Origin``. A web page cannot read
the file, and another user on the machine cannot either.

Standard library only: both environments (``.venv`` and ``.venv-serve``) import it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

CONTROL_KEY_FILE = "control.key"
CONTROL_HEADER = "x-serving-control-key"
KEY_MODE = 0o600


def write_key(serve_dir: Path) -> str:
    """A new key in ``serve_dir/control.key``, readable by its owner only; the key.

    Written beside and renamed over the old one: a server started earlier on this port
    (now gone, since the port was free) leaves a key nobody can use any more.
    """
    key = secrets.token_urlsafe(32)
    path = serve_dir / CONTROL_KEY_FILE
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, KEY_MODE)
    with os.fdopen(fd, "w") as sink:
        sink.write(key + "\n")
    partial.replace(path)
    return key


def read_key(serve_dir: Path) -> str:
    """The key of the server started from ``serve_dir``; ``OSError`` when missing or
    unreadable, ``PermissionError`` when others than its owner may read it."""
    path = serve_dir / CONTROL_KEY_FILE
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise PermissionError(1, "not a file of this user", str(path))
        if info.st_mode & 0o077:
            raise PermissionError(
                1, f"readable by others (mode {info.st_mode & 0o777:o})", str(path)
            )
        key = source.read().strip()
    if not key:
        raise PermissionError(1, "empty", str(path))
    return key
