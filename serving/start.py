"""Starting a server (``python -m serving``): the alias's version into the serve folder, then
this process replaced by MLServer (``serving.mlserver_app``) or ``mlflow models serve``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from kernel.cli import CommandError
from kernel.params import MonitorParams, load_params
from kernel.ports import port_taken
from monitor.log_settings import RequestLogSettings
from serving.control import write_key
from serving.guard import MAX_QUEUED_REQUESTS
from serving.serve_folder import HOST, fetch, write_mlserver_settings
from tracking.store import connect

SERVERS = ("mlserver", "mlflow")


def start(
    alias: str,
    port: int,
    server: str,
    serve_dir: Path,
    mlserver: Path,
    request_log: bool,
    max_queued: int = MAX_QUEUED_REQUESTS,
) -> None:
    """Serve ``models:/<registered model>@<alias>`` on ``port``; never returns (the process
    becomes the server) but with a ``CommandError`` before anything is started."""
    _refuse_taken(port, "HTTP")
    if server == "mlserver":
        _refuse_taken(port + 1, f"gRPC (MLServer takes the port after --port {port})")
        if not mlserver.is_file():
            raise CommandError(f"{mlserver} does not exist; run `make serve-setup` first")
    params = load_params()
    name = params.export.registered_model_name
    # a progress bar per file of a 16-file download says nothing the closing line does not
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = connect()
    # one folder per port: two servers (say @champion and @candidate) never share files
    folder = serve_dir / str(port)
    version, model_dir = fetch(name, alias, folder)
    # versions a reload brought in while an earlier server ran here (the port was free)
    for stale in (folder / name).glob(f"{model_dir.name}-v*"):
        shutil.rmtree(stale, ignore_errors=True)
    source = f"{name} v{version} (@{alias})"
    if server == "mlserver":
        settings = request_log_settings(params.monitor, uri) if request_log else None
        write_mlserver_settings(folder, name, version, port, alias, settings)
        write_key(folder)  # what `python -m serving reload` shows the server
        _exec_mlserver(folder, mlserver, source, name, port, max_queued)
    _exec_mlflow(model_dir, source, port)


def request_log_settings(monitor: MonitorParams, uri: str) -> RequestLogSettings:
    """What MLServer's runtime opens its request log with: ``monitor.*``, the folder made
    absolute (MLServer's working folder may differ) and the store a team copy goes to."""
    folder = str(Path(monitor.log_dir).resolve())
    return RequestLogSettings(monitor=monitor, folder=folder, tracking_uri=uri)


def _exec_mlserver(
    folder: Path, mlserver: Path, source: str, name: str, port: int, max_queued: int
) -> None:
    print(
        f"serving: {source} over the Open Inference Protocol on http://{HOST}:{port}/v2/"
        f"models/{name} (gRPC {HOST}:{port + 1})",
        file=sys.stderr,
        flush=True,
    )
    # `mlserver start` with our request checks, run by the serve venv's own python
    python = mlserver.parent / "python"
    command = [str(python), "-m", "serving.mlserver_app", str(folder), "--max-queued",
               str(max_queued)]  # fmt: skip
    os.execve(command[0], command, os.environ)


def _exec_mlflow(model_dir: Path, source: str, port: int) -> None:
    print(
        f"serving: {source} with mlflow models serve on http://{HOST}:{port}/invocations",
        file=sys.stderr,
        flush=True,
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir),
               "--env-manager", "local", "--host", HOST, "--port", str(port)]  # fmt: skip
    os.execve(sys.executable, command, env)


def _refuse_taken(port: int, role: str) -> None:
    if port_taken(HOST, port):
        raise CommandError(
            f"{HOST}:{port}, for {role}, is taken by another program (a server already "
            "running?); choose another port with --port (make serve SERVE_PORT=...)"
        )
