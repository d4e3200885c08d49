"""The request log in team mode: each server's files copied to the team's store.

A server writes its log locally as always (``monitor.request_log``); with a team MLflow
server as the tracking store, an ``ArtifactShipper`` also uploads the files, through the
server's artifact proxy and under the member's own login, as artifacts of one run per server
process in the monitoring experiment (tagged ``monitor.role = request-log``). The bytes land
in the team's bucket; ``python -m monitor`` on any machine reads them back
(``download_logs``). A file is uploaded again while it grows, at most every
``every_seconds``, and once more when it is closed; so the shared log lags the local one by
at most that much. A member without the right to log runs (a reader) or a server that cannot
be reached gets one warning line; the local log goes on.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.request_log import FILE_PREFIX, FILE_SUFFIX, ServedModel

if TYPE_CHECKING:
    from mlflow import MlflowClient

ROLE_TAG = "monitor.role"
LOG_ROLE = "request-log"
ARTIFACT_FOLDER = "requests"


class ArtifactShipper:
    """Uploads one writer's files as artifacts of a run of its own (made on first use).

    The request log's by default; the page's feedback store uses it too, with a ``role`` and
    an artifact ``folder`` of its own.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        source: str,
        model: ServedModel,
        every_seconds: float = 60.0,
        *,
        role: str = LOG_ROLE,
        folder: str = ARTIFACT_FOLDER,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.source = source
        self.model = model
        self.every_seconds = every_seconds
        self.role = role
        self.folder = folder
        self._run_id: str | None = None
        self._last: dict[Path, tuple[float, int]] = {}  # file -> (time, size) of its last upload

    def due(self, path: Path) -> bool:
        """Whether ``path`` has grown since its last upload, which was long enough ago."""
        when, size = self._last.get(path, (-float("inf"), -1))
        return path.stat().st_size != size and time.monotonic() - when >= self.every_seconds

    def ship(self, path: Path) -> None:
        """Upload ``path`` (replacing its earlier upload); errors are the caller's to report."""
        size = path.stat().st_size
        client = self._client()
        client.log_artifact(self._run(client), str(path), artifact_path=self.folder)
        self._last[path] = (time.monotonic(), size)

    def finish(self) -> None:
        if self._run_id is not None:
            self._client().set_terminated(self._run_id)

    def _client(self) -> MlflowClient:
        import mlflow  # late: importing it costs seconds

        return mlflow.MlflowClient(self.tracking_uri)

    def _run(self, client: MlflowClient) -> str:
        if self._run_id is None:
            from tracking.store import member_name

            experiment = client.get_experiment_by_name(self.experiment_name)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment(self.experiment_name)
            )
            name = f"{self.model.name} v{self.model.version}"
            run = client.create_run(
                experiment_id,
                run_name=f"{self.folder} {self.source} {name} {socket.gethostname()}",
                tags={
                    ROLE_TAG: self.role,
                    "mlflow.user": member_name(),
                    "model.version": name,
                    "model.alias": self.model.alias or "",
                    "monitor.source": self.source,
                },
            )
            self._run_id = run.info.run_id
        return self._run_id


def is_team_store(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (whose artifacts are the team's bucket)."""
    return uri.startswith(("http://", "https://"))


def download_logs(tracking_uri: str, experiment_name: str, into: Path, keep_days: int) -> int:
    """Every request-log file of the team's servers begun in the last ``keep_days`` days
    (all when 0), downloaded into the folder ``into``; the number of files."""
    return download_artifacts(
        tracking_uri,
        experiment_name,
        into,
        role=LOG_ROLE,
        folder=ARTIFACT_FOLDER,
        wanted=lambda name: name.startswith(FILE_PREFIX) and name.endswith(FILE_SUFFIX),
        keep_days=keep_days,
    )


def download_artifacts(
    tracking_uri: str,
    experiment_name: str,
    into: Path,
    *,
    role: str,
    folder: str,
    wanted: Callable[[str], bool],
    keep_days: int = 0,
    skip_present: bool = False,
) -> int:
    """The ``folder`` artifacts named as ``wanted`` of every run of ``role`` begun in the
    last ``keep_days`` days (all when 0), downloaded into ``into``; how many were."""
    import os
    import tempfile

    import mlflow

    # a progress bar per file says nothing the count does not
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    into.mkdir(parents=True, exist_ok=True)
    if experiment is None:
        return 0
    query = f"tags.`{ROLE_TAG}` = '{role}'"
    if keep_days > 0:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days + 1)
        query += f" and attributes.start_time >= {int(since.timestamp() * 1000)}"
    count = 0
    for run in client.search_runs([experiment.experiment_id], query, max_results=5000):
        for artifact in client.list_artifacts(run.info.run_id, folder):
            name = Path(artifact.path).name
            if artifact.is_dir or not wanted(name) or (skip_present and (into / name).exists()):
                continue
            with tempfile.TemporaryDirectory(dir=into, prefix=".download-") as scratch:
                local = client.download_artifacts(run.info.run_id, artifact.path, scratch)
                Path(local).replace(into / name)  # names are unique per writer or image
            count += 1
    return count
