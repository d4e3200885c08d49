"""The served model under load: MLServer started as ``make serve`` does, measured from outside.

Cold start is the wall time from ``python -m serving`` (registry download included) to the
model's readiness endpoint answering 200; peak memory is the server's high-water RSS after
the load. The load comes from ``bench.oip_load`` in a second process (``.venv-serve``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def _free_port_pair() -> int:
    while True:
        with socket.socket() as first:
            first.bind((HOST, 0))
            port = first.getsockname()[1]
        with socket.socket() as second:
            try:
                second.bind((HOST, port + 1))
            except OSError:
                continue
        return port


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_serving(
    repo: Path, work: Path, log: Path, env: dict[str, str], serve_bin: Path, paths: dict[str, str]
) -> dict:
    """Cold start, peak RSS, and the load generator's figures against the in-process Predictor."""
    import yaml

    name = yaml.safe_load((repo / "params.yaml").read_text())["export"]["registered_model_name"]
    port = _free_port_pair()
    mlserver = str(serve_bin / "mlserver")
    command = [sys.executable, "-m", "serving", "--port", str(port),
               "--serve-dir", str(work / "serve"), "--mlserver", mlserver]  # fmt: skip
    ready_url = f"http://{HOST}:{port}/v2/models/{name}/ready"
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        started = time.perf_counter()
        server = subprocess.Popen(
            command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        while not _ready(ready_url):
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise SystemExit(f"bench: the server did not become ready; see {log}")
            time.sleep(0.05)
        cold_start = time.perf_counter() - started
        load = subprocess.run(
            [
                str(serve_bin / "python"),
                "bench/oip_load.py",
                f"{HOST}:{port}",
                name,
                paths["onnx_model"],
                f"{paths['prepared']}/test.npz",
            ],  # fmt: skip
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        peak = _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {
        "server": "MLServer (python -m serving, parallel_workers 0)",
        "cold_start_seconds": cold_start,
        "peak_rss_mb": peak,
        **json.loads(load.stdout.strip().splitlines()[-1]),
    }
