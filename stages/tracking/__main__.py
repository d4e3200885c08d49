"""``python -m stages.tracking``: the MLflow UI, or a registered ONNX model by alias.

    python -m stages.tracking [ui]                    # the UI on the project's store
    python -m stages.tracking download ALIAS [DIR]    # e.g. champion: DIR/model.onnx

Both use the project's store (``MLFLOW_TRACKING_URI`` or ``mlflow.db``) and the
registered model name of params.yaml.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from stages.common.config import load_params
from stages.common.errors import StageError, run_stage
from stages.tracking.registry import download_version
from stages.tracking.store import artifact_location, connect, tracking_uri

USAGE = "usage: python -m stages.tracking [ui | download ALIAS [DIR]]"


def serve_ui() -> None:
    """Replace this process with ``mlflow server`` on the project's store, on 127.0.0.1.

    With ``MLFLOW_TRACKING_URI`` naming a server, that server's own UI is the one to open.
    """
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):  # a team server serves its own UI
        print(f"MLflow UI of the tracking server: {uri.rstrip('/')}/", file=sys.stderr)
        return
    port = os.environ.get("MLFLOW_UI_PORT", "5000")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", port]  # fmt: skip
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    print(f"MLflow UI on {uri}: {ui_address(uri, port)}", file=sys.stderr, flush=True)
    os.execv(sys.executable, command)


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


def download(alias: str, folder: Path) -> Path:
    """Copy the ONNX file of ``<registered model>@<alias>`` to ``folder/model.onnx``."""
    name = load_params().export.registered_model_name
    connect()
    with tempfile.TemporaryDirectory() as scratch:
        _, fetched = download_version(name, alias, Path(scratch))
        found = sorted(fetched.rglob("*.onnx"))
        if not found:
            raise StageError(f"models:/{name}@{alias}: holds no .onnx file")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "model.onnx"
        shutil.copyfile(found[0], target)
    return target


def main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["ui"]):
        serve_ui()
    elif args[:1] == ["download"] and len(args) in (2, 3):
        target = download(args[1], Path(args[2] if len(args) == 3 else args[1]))
        print(f"tracking: wrote {target} (@{args[1]})", file=sys.stderr)
    else:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    run_stage("tracking", main)
