"""Temporary MLflow stores: a SQLite file in a test's folder, used from that folder.

Every test that touches MLflow points it at such a store and runs from the store's
folder (``tracking.store.artifact_location`` puts artifacts at ``workspace_root()``,
the working directory); MLflow's process-wide tracking URI is reset afterwards.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# tracking.store.connect sets these in os.environ; set through monkeypatch they are undone after.
_MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def _reset_mlflow() -> None:
    if "mlflow" not in sys.modules:
        return
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")
    # set_tracking_uri also wrote MLFLOW_TRACKING_URI; the monkeypatch undo restores it
    mlflow.set_tracking_uri(None)


@contextlib.contextmanager
def using_store(folder: Path, uri: str, **env: str) -> Iterator[str]:
    """Run from ``folder`` with MLflow pointed at ``uri``; undo it all afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for key, value in {**_MLFLOW_CLIENT_ENV, **env}.items():
            patch.setenv(key, value)
        try:
            yield uri
        finally:
            _reset_mlflow()


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """``train.main`` installs a SIGTERM handler; the test process gets its own back."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_of_model(client: Any, run_file: Path) -> Any:
    """The newest run tagged with the model digest that ``run_file`` (models/run.json) holds,
    as the stages find it, read with ``client`` (an ``mlflow.MlflowClient``)."""
    wanted = json.loads(run_file.read_text())
    experiment = client.get_experiment_by_name(wanted["experiment_name"])
    (run,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.model_sha256 = '{wanted['model_sha256']}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return run
