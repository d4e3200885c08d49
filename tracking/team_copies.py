"""Copies of a server's files in the team's store, and reading them back on another machine.

With a team MLflow server as the tracking store, a server that writes files locally (the
request log of ``monitor.request_log``, the page's corrections of ``demo.feedback``) also
uploads them, through the server's artifact proxy and under the member's own login, as
artifacts of one run per server process and per kind of file. The run's ``role`` tag says
which kind its files are, its artifact ``folder`` holds them; the bytes land in the team's
bucket, and ``download_artifacts`` on any machine brings them back. A file is uploaded again
while it grows, at most every ``every_seconds``, and once more when it is closed, so the
shared copy lags the local file by at most that much.

Nothing here knows what the files hold; MLflow is imported only inside functions (it costs
seconds), so a server without a team store pays nothing for it.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlflow import MlflowClient

# the tag that says what a run's artifacts are; its name is what the team's stores already hold
ROLE_TAG = "monitor.role"
DEFAULT_EVERY_SECONDS = 60.0


class ModelIdentity(Protocol):
    """The registry version a server answers with, as the copies' run is tagged with it."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def alias(self) -> str | None: ...


def is_team_store(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (whose artifacts are the team's bucket)."""
    return uri.startswith(("http://", "https://"))


class ArtifactShipper:
    """Uploads one writer's files as artifacts of a run of its own (made on first use),
    tagged with ``role`` and holding them in its artifact ``folder``."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        source: str,
        model: ModelIdentity,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        *,
        role: str,
        folder: str,
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
