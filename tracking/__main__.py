"""``python -m tracking``: the MLflow UI, or a registered ONNX model by alias.

    python -m tracking [ui]                    # the UI on the project's store
    python -m tracking download ALIAS [DIR]    # e.g. champion: DIR/model.onnx

Both use the project's store (``MLFLOW_TRACKING_URI`` or ``mlflow.db``) and the
registered model name of params.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kernel.cli import CommandError, run_command
from kernel.params import load_params
from kernel.ports import port_taken
from tracking.registry import download_version
from tracking.store import artifact_location, connect, tracking_uri

USAGE = "usage: python -m tracking [ui | download ALIAS [DIR]]"
UI_HOST = "127.0.0.1"


def serve_ui() -> int:
    """Run ``mlflow server`` on the project's store, on 127.0.0.1, until it stops or is
    interrupted; its address is printed once it answers, so the first click works.

    With ``MLFLOW_TRACKING_URI`` naming a server, that server's own UI is the one to open.
    """
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):  # a team server serves its own UI
        print(f"MLflow UI of the tracking server: {uri.rstrip('/')}/", file=sys.stderr)
        return 0
    port = os.environ.get("MLFLOW_UI_PORT", "5000")
    if port_taken(UI_HOST, int(port)):
        raise CommandError(
            f"{UI_HOST}:{port} is taken by another program (a UI already running?); "
            "choose another port with MLFLOW_UI_PORT=..."
        )
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", UI_HOST, "--port", port]  # fmt: skip
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    # mlflow server execs uvicorn by name: this environment's bin must come first
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    address = ui_address(uri, port)
    print(f"MLflow UI: starting on {uri} (a first start takes up to a minute)", file=sys.stderr)
    server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    try:
        _wait_until_answering(f"http://{UI_HOST}:{port}/health", server)
        print(f"MLflow UI on {uri}: {address}", file=sys.stderr, flush=True)
        return server.wait()
    finally:
        if server.poll() is None:  # interrupted (Ctrl-C, SIGTERM): the server goes too
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_until_answering(url: str, server: subprocess.Popen, limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CommandError(
                f"mlflow server stopped with status {server.returncode} before answering; "
                "its lines above say why"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise CommandError(f"mlflow server did not answer {url} within {limit:.0f} s")


def ui_address(uri: str, port: str) -> str:
    """The page of the experiment's training runs, in the UI's model-training mode.

    MLflow 3's UI opens in its GenAI mode by default, which hides the runs; the
    ``workflowType`` query switches it.
    """
    import mlflow

    base = f"http://127.0.0.1:{port}"
    name = load_params().train.experiment_name
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return f"{base}/#/?workflowType=machine_learning"
    experiment = mlflow.MlflowClient(uri).get_experiment_by_name(name)
    if experiment is None:
        return f"{base}/#/?workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"


def download(alias: str, folder: Path) -> tuple[str, str, Path]:
    """Copy the ONNX file of ``<registered model>@<alias>`` to ``folder/model.onnx``; return
    the registered name, the version and the file written."""
    name = load_params().export.registered_model_name
    # a progress bar per file of a 16-file download says nothing the closing line does not
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    connect()
    with tempfile.TemporaryDirectory() as scratch:
        version, fetched = download_version(name, alias, Path(scratch))
        found = sorted(fetched.rglob("*.onnx"))
        if not found:
            raise CommandError(f"models:/{name}@{alias}: holds no .onnx file")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "model.onnx"
        shutil.copyfile(found[0], target)
    return name, version, target


def main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["ui"]):
        return serve_ui()
    elif args[:1] == ["download"] and len(args) in (2, 3):
        name, version, target = download(args[1], Path(args[2] if len(args) == 3 else args[1]))
        print(f"tracking: wrote {target}: {name} v{version} (@{args[1]})", file=sys.stderr)
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_command("tracking", main))
