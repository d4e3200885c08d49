"""The served model under load: MLServer started as ``make serve`` does, measured from outside.

Cold start is the wall time from ``python -m serving`` (registry download included) to the
model's readiness endpoint answering 200; peak memory is the server's high-water RSS after
the load. The load comes from ``bench.oip_load`` in a second process (``.venv-serve``). A
second server of the same model with ``--no-request-log`` runs beside the first, and the
load alternates between them: what the request log costs an answer, side by side.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_serving(
    repo: Path, work: Path, log: Path, env: dict[str, str], serve_bin: Path, paths: dict[str, str]
) -> dict:
    """Cold start, peak RSS, and the load generator's figures against the in-process Predictor.

    Needs the tests' factories on ``sys.path`` (``bench.__main__`` puts them there).
    """
    import yaml

    from factories.network import free_port_pair, wait_for_http

    name = yaml.safe_load((repo / "params.yaml").read_text())["export"]["registered_model_name"]
    mlserver = str(serve_bin / "mlserver")

    def start(port: int, *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "serving", "--port", str(port),
                   "--serve-dir", str(work / "serve"), "--mlserver", mlserver, *extra]  # fmt: skip
        with open(log, "a") as out:
            out.write(f"\n$ {' '.join(command)}\n")
            out.flush()
            return subprocess.Popen(
                command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def wait_ready(port: int, server: subprocess.Popen) -> None:
        ready_url = f"http://{HOST}:{port}/v2/models/{name}/ready"
        try:
            wait_for_http(ready_url, timeout=300, alive=lambda: server.poll() is None, poll=0.05)
        except AssertionError as err:
            raise SystemExit(f"bench: the server did not become ready ({err}); see {log}") from None

    port = free_port_pair()
    started = time.perf_counter()
    server = start(port)
    servers = [server]
    try:
        wait_ready(port, server)
        cold_start = time.perf_counter() - started
        unlogged_port = free_port_pair()
        servers.append(start(unlogged_port, "--no-request-log"))
        wait_ready(unlogged_port, servers[-1])
        load = subprocess.run(
            [
                str(serve_bin / "python"),
                "-m",
                "bench.oip_load",
                f"{HOST}:{port}",
                name,
                paths["onnx_model"],
                f"{paths['prepared']}/test.npz",
                f"{HOST}:{unlogged_port}",
            ],  # fmt: skip
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if load.returncode != 0:
            last = (load.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"bench: the load generator failed: {last}")
        peak = _peak_rss_mb(server.pid)
    finally:
        for each in servers:
            each.terminate()
        for each in servers:
            each.wait(timeout=60)
    return {
        "server": "MLServer (python -m serving, parallel_workers 0)",
        "cold_start_seconds": cold_start,
        "peak_rss_mb": peak,
        **json.loads(load.stdout.strip().splitlines()[-1]),
    }
