"""locust against a served model, with ``bench/locustfile.py``, and the server's peak memory:
what the load benchmark and the load tests both run. locust lives in ``.venv-serve``
(``make serve-setup``)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from kernel.paths import PROJECT_ROOT

LOCUSTFILE = PROJECT_ROOT / "bench" / "locustfile.py"


def peak_rss_mb(pid: int) -> float:
    """The high-water resident memory of process ``pid`` (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"/proc/{pid}/status has no VmHWM line")


def locust_command(serve_bin: Path, clients: int | str, seconds: int, url: str) -> list[str]:
    """locust's command line for ``clients`` clients asking ``url`` for ``seconds``."""
    return [
        str(serve_bin / "locust"), "-f", str(LOCUSTFILE.relative_to(PROJECT_ROOT)),
        "--headless", "--users", str(clients), "--spawn-rate", str(clients),
        "--run-time", f"{seconds}s", "--host", url, "--only-summary", "--loglevel", "WARNING",
        "--stop-timeout", "5",
    ]  # fmt: skip


def run_locust(
    serve_bin: Path,
    protocol: str,
    clients: int,
    seconds: int,
    url: str,
    model: str,
    images: Path | str,
    env: Mapping[str, str],
) -> dict:
    """One headless run; the summary the locustfile writes (answers, percentiles, errors by
    kind, locust's CPU). ``url`` is the HTTP port's, or the gRPC port's for ``grpc``."""
    with tempfile.TemporaryDirectory(prefix="locust-") as scratch:
        out = Path(scratch) / "summary.json"
        run_env = {**env, "LOAD_PROTOCOL": protocol, "LOAD_MODEL": model,
                   "LOAD_IMAGES": str(Path(images).resolve()), "LOAD_OUT": str(out)}  # fmt: skip
        done = subprocess.run(
            locust_command(serve_bin, clients, seconds, url), cwd=PROJECT_ROOT, env=run_env,
            capture_output=True, text=True, timeout=seconds + 120, check=False,
        )  # fmt: skip
        if not out.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"locust ({protocol}, {clients} clients on {url}) failed: {last}")
        return json.loads(out.read_text())
