"""The served model under many clients at once, measured with locust (``bench/locustfile.py``).

Two servers started as ``make serve`` starts them, one with the request log and one
without, up at once; each run asks one of them for ``RUN_SECONDS`` with N clients, each
client asking for one image at a time with no pause, over HTTP/JSON or gRPC. The runs of
the two servers alternate, so what the machine does meanwhile hits both alike. Per run:
answers a second, p50/p90/p99, errors, the server's CPU and peak RSS (its high-water mark,
reset before the run), and for the logged server the lines its log gained against every
answer locust got. Then the overload: ``OVERLOAD_CLIENTS`` clients on the logged server,
where each request must be answered, or refused at once with 503 and ``Retry-After``.

locust, not a client of ours: the field's load tool that installs here (Triton's
perf_analyzer has no wheel: only a placeholder resolves). Its HTTP user (``FastHttpUser``,
geventhttpclient) is its fastest; the gRPC user is tritonclient's stubs under gevent.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.serving import start_server, wait_ready
from harness.load import locust_command, peak_rss_mb, run_locust
from harness.network import free_port_pair

HOST = "127.0.0.1"
CLIENTS = (1, 8, 32, 64)
PROTOCOLS = ("http", "grpc")
OVERLOAD_CLIENTS = 256
RUN_SECONDS = 20
LOG_DIR = "logs/requests"  # params.yaml's monitor.log_dir in the project copy


def bench_load(
    repo: Path,
    work: Path,
    log: Path,
    env: dict[str, str],
    serve_bin: Path,
    images: str,
    seconds: int = RUN_SECONDS,
) -> dict:
    """Every run of the matrix, then the overload; ``images``: an .npz of test images."""
    name = yaml.safe_load((repo / "params.yaml").read_text())["export"]["registered_model_name"]
    start = functools.partial(start_server, repo, work, log, env, str(serve_bin / "mlserver"))
    ports = {True: free_port_pair(), False: free_port_pair()}
    servers = {True: start(ports[True]), False: start(ports[False], "--no-request-log")}
    run = LoadRun(repo, env, serve_bin, name, str(repo / images), seconds).run
    try:
        for logged, server in servers.items():
            wait_ready(ports[logged], name, server, log)
        runs = []
        for protocol in PROTOCOLS:
            for clients in CLIENTS:
                for logged in (True, False):
                    port = ports[logged] + (1 if protocol == "grpc" else 0)
                    figures = run(protocol, clients, port, servers[logged].pid, logged)
                    runs.append({"protocol": protocol, "clients": clients,
                                 "request_log": logged, **figures})  # fmt: skip
        overload = run("http", OVERLOAD_CLIENTS, ports[True], servers[True].pid, True)
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.wait(timeout=60)
    version = subprocess.run([str(serve_bin / "locust"), "--version"], capture_output=True,
                             text=True, check=True).stdout.split()[1]  # fmt: skip
    shown = ["locust", *locust_command(serve_bin, "N", seconds, "URL")[1:]]
    return {
        "tool": f"locust {version}",
        "command": " ".join(shown),
        "server": "MLServer (python -m serving, parallel_workers 0)",
        "seconds_per_run": seconds,
        "cores": os.cpu_count(),
        "runs": runs,
        "overload": {"clients": OVERLOAD_CLIENTS, **overload},
    }


@dataclass(frozen=True)
class LoadRun:
    """What every run shares: the project copy, the environment, the model and its images."""

    repo: Path
    env: dict[str, str]
    serve_bin: Path
    model: str
    images: str
    seconds: int

    def run(self, protocol: str, clients: int, port: int, pid: int, logged: bool) -> dict:
        """One locust run against the server ``pid`` listening on ``port``: its figures."""
        log_dir = self.repo / LOG_DIR
        lines_before = _log_lines(log_dir) if logged else 0
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the high-water RSS, from here on
        cpu_before = _cpu_seconds(pid)
        try:
            figures = run_locust(self.serve_bin, protocol, clients, self.seconds,
                                 f"http://{HOST}:{port}", self.model, self.images,
                                 self.env)  # fmt: skip
        except RuntimeError as err:
            raise SystemExit(f"bench: {err}") from None
        figures["server_cpu_seconds"] = _cpu_seconds(pid) - cpu_before
        figures["peak_rss_mb"] = peak_rss_mb(pid)
        if logged:
            figures["log_lines"] = _settled_lines(log_dir, lines_before, figures["all_answers"])
        return figures


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _log_lines(folder: Path) -> int:
    total = 0
    for path in folder.glob("requests-*.jsonl"):
        with open(path, "rb") as lines:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: lines.read(1 << 20), b""))
    return total


def _settled_lines(folder: Path, before: int, expected: int, wait: float = 10.0) -> int:
    """The lines the log gained, once its writer has written what it holds (it writes every
    quarter second): as soon as they reach ``expected``, or once they stop growing."""
    deadline = time.monotonic() + wait
    last = -1
    while True:
        gained = _log_lines(folder) - before
        if gained >= expected or gained == last or time.monotonic() > deadline:
            return gained
        last = gained
        time.sleep(0.6)
