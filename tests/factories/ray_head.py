"""A Ray head on 127.0.0.1 (``ray start --head``) with its own auth token, for one test or
benchmark; every process it started is killed afterwards, and nothing else of Ray's."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.network import free_port

RAY = Path(sys.executable).parent / "ray"


@contextlib.contextmanager
def ray_head(env: Mapping[str, str], cpus: int = 2) -> Iterator[dict[str, str]]:
    """Start the head; yield what a driver exports to use it (``RAY_ADDRESS``, the token)."""
    port, client_port = free_port(), free_port()
    # its sockets live in here: a short path, under the 107 bytes of an AF_UNIX address
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    exports = {
        "RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's single-machine mode: loopback only
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    head_env = {**env, **exports}
    head_env.pop("RAY_ADDRESS")
    # a session of its own: its processes keep the group id, which ends them all at once
    started = subprocess.run(
        [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         f"--ray-client-server-port={client_port}", f"--num-cpus={cpus}",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=head_env, capture_output=True, text=True, timeout=120, start_new_session=True,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    group = _group_of(port)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        yield {**exports, "group": str(group)}
    finally:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while group_pids(group) and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _group_of(port: int) -> int | None:
    found = subprocess.run(["pgrep", "-f", f"gcs_server.*--gcs_server_port={port}"],
                           capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
    return os.getpgid(int(found[0])) if found else None


def group_pids(group: int) -> set[int]:
    """The processes of the head's group (its GCS, raylet, agents, workers)."""
    shown = subprocess.run(["ps", "-eo", "pid=,pgid="], capture_output=True, text=True).stdout
    return {int(pid) for pid, pgid in map(str.split, shown.splitlines()) if int(pgid) == group}
