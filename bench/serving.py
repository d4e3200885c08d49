"""The served model under load: MLServer started as ``make serve`` does, measured from outside.

Cold start is the wall time from ``python -m serving`` (registry download included) to the
model's readiness endpoint answering 200; peak memory is the server's high-water RSS after
the load. The load comes from ``bench.oip_load`` in a second process (``.venv-serve``). A
second server of the same model with ``--no-request-log`` runs beside the first, and the
load alternates between them: what the request log costs an answer, side by side.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.commands import json_of, start_logged
from harness.load import peak_rss_mb
from harness.network import free_port_pair, wait_for_http

HOST = "127.0.0.1"


def bench_serving(
    repo: Path, work: Path, log: Path, env: dict[str, str], serve_bin: Path, paths: dict[str, str]
) -> dict:
    """Cold start, peak RSS, and the load generator's figures against the in-process Predictor.

    ``paths``: the copy's ``onnx_model`` and its ``test`` split, relative to ``repo``.
    """
    name = yaml.safe_load((repo / "params.yaml").read_text())["export"]["registered_model_name"]
    start = functools.partial(start_server, repo, work, log, env, str(serve_bin / "mlserver"))
    port = free_port_pair()
    started = time.perf_counter()
    server = start(port)
    servers = [server]
    try:
        wait_ready(port, name, server, log)
        cold_start = time.perf_counter() - started
        unlogged_port = free_port_pair()
        servers.append(start(unlogged_port, "--no-request-log"))
        wait_ready(unlogged_port, name, servers[-1], log)
        load = json_of(
            [str(serve_bin / "python"), "-m", "bench.oip_load", f"{HOST}:{port}", name,
             paths["onnx_model"], paths["test"], f"{HOST}:{unlogged_port}"],
            repo, env, "the load generator",
        )  # fmt: skip
        peak = peak_rss_mb(server.pid)
    finally:
        for each in servers:
            each.terminate()
        for each in servers:
            each.wait(timeout=60)
    return {
        "server": "MLServer (python -m serving, parallel_workers 0)",
        "cold_start_seconds": cold_start,
        "peak_rss_mb": peak,
        **load,
    }


def start_server(
    repo: Path, work: Path, log: Path, env: dict[str, str], mlserver: str, port: int, *extra: str
) -> subprocess.Popen:
    command = [sys.executable, "-m", "serving", "--port", str(port),
               "--serve-dir", str(work / "serve"), "--mlserver", mlserver, *extra]  # fmt: skip
    return start_logged(command, repo, log, env)


def wait_ready(port: int, name: str, server: subprocess.Popen, log: Path) -> None:
    ready_url = f"http://{HOST}:{port}/v2/models/{name}/ready"
    try:
        wait_for_http(ready_url, timeout=300, alive=lambda: server.poll() is None, poll=0.05)
    except AssertionError as err:
        raise SystemExit(f"bench: the server did not become ready ({err}); see {log}") from None
