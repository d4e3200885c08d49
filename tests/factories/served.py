"""A tiny model registered in a store of its own, and ``python -m serving`` (what ``make
serve`` runs) started on it on free loopback ports, stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from factories.params import TINY_EXPORT
from factories.trained import export_args, train_tiny
from harness.network import free_port_pair, wait_for_http
from kernel.paths import PROJECT_ROOT
from stages import export
from stages.dataset.arrays import load_split, split_file

SERVE_BIN = PROJECT_ROOT / ".venv-serve" / "bin"
NAME = TINY_EXPORT["registered_model_name"]


def registered_tiny(root: Path, template_db: Path) -> SimpleNamespace:
    """A tiny model trained and exported into ``root``'s own store: v1, @candidate,
    @champion; its ONNX file, 32 test images, the environment that reaches the store."""
    if not (SERVE_BIN / "mlserver").exists():
        pytest.fail(f"{SERVE_BIN}/mlserver is missing: run `make serve-setup` (make test does)")
    ws = train_tiny(root, template_db)
    out = ws.root / "export"
    with ws.store():
        export.main(export_args(ws, out))
    x_test, _ = load_split(split_file(ws.data_dir, "test"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": ws.uri, "PYTHONPATH": str(PROJECT_ROOT)}
    return SimpleNamespace(ws=ws, model=out / "model.onnx", images=x_test[:32], env=env)


def start_serving(registered: SimpleNamespace, port: int, output: Path, *extra: str):
    """``python -m serving --port PORT`` in the workspace, its output into ``output``."""
    command = [sys.executable, "-m", "serving", "--port", str(port),
               "--mlserver", str(SERVE_BIN / "mlserver"), *extra]  # fmt: skip
    with open(output, "a") as sink:
        return subprocess.Popen(
            command, cwd=registered.ws.root, env=registered.env, stdout=sink, stderr=sink,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    wait_for_http(
        f"http://127.0.0.1:{port}/v2/models/{NAME}/ready",
        timeout=timeout,
        alive=lambda: process.poll() is None,
    )


@contextmanager
def served(
    registered: SimpleNamespace, *extra: str, output: Path | None = None
) -> Iterator[SimpleNamespace]:
    """The model served on two free ports (HTTP, then gRPC) until the block ends."""
    port = free_port_pair()
    output = output or registered.ws.root / f"mlserver-{port}.log"
    server = start_serving(registered, port, output, *extra)
    try:
        wait_ready(port, server)
        yield SimpleNamespace(
            port=port, url=f"127.0.0.1:{port}", base=f"http://127.0.0.1:{port}", log=output,
            server=server,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)
