"""``python -m stages.tracking``: the MLflow UI on the project's tracking store."""

from __future__ import annotations

import os
import sys

from stages.tracking.store import artifact_location, tracking_uri


def serve_ui() -> None:
    """Replace this process with ``mlflow server`` on the project's store, on 127.0.0.1."""
    uri = tracking_uri()
    port = os.environ.get("MLFLOW_UI_PORT", "5000")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        port,
    ]
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    print(f"MLflow UI on {uri}: http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["ui"]):
        print("usage: python -m stages.tracking [ui]", file=sys.stderr)
        raise SystemExit(2)
    serve_ui()
