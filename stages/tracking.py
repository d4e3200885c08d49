"""Where MLflow runs go, and the run file that carries one run through train → evaluate → export.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``mlflow.db`` (SQLite) at the
workspace root, as an absolute URI. ``dvc exp run --temp`` and queued
experiments run in a copy under ``.dvc/tmp/exps/``; their runs still land in the
workspace's store because the root is found above that copy.

MLflow is imported inside the functions that need it: importing it costs seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from stages.atomic import write_json
from stages.errors import StageError

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
_EXPERIMENT_COPY_MARK = (".dvc", "tmp", "exps")


def workspace_root(start: Path | None = None) -> Path:
    """The project folder, even from inside a DVC experiment copy under ``.dvc/tmp/exps/``."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - len(_EXPERIMENT_COPY_MARK) + 1):
        if parts[i : i + len(_EXPERIMENT_COPY_MARK)] == _EXPERIMENT_COPY_MARK:
            return Path(*parts[:i])
    return here


def tracking_uri(start: Path | None = None) -> str:
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if configured:
        return configured
    # MLflow sets a 20 s SQLite busy timeout on every session, so parallel queued
    # experiments wait for each other's writes; retry_locked covers longer waits.
    return f"sqlite:///{workspace_root(start) / STORE_FILE}"


def artifact_location(uri: str, start: Path | None = None) -> str | None:
    """Artifacts of a local store live beside it, never in the (temporary) working copy."""
    if uri.startswith("sqlite:"):
        return (workspace_root(start) / ARTIFACTS_DIR).as_uri()
    return None


def _configure_http_client() -> None:
    # MLflow's defaults retry for minutes; a pipeline stage should fail fast instead.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # usage telemetry would reach for the internet from every stage
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """For a tracking server, answer in seconds whether it is up (its ``/health`` endpoint)."""
    if not uri.startswith(("http://", "https://")):
        return
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise StageError(f"MLflow tracking server {uri} unreachable ({reason}); start it, "
                         "or unset MLFLOW_TRACKING_URI to use the local store") from None
    if status >= 400:
        raise StageError(f"MLflow tracking server {uri} unhealthy: {health} answered {status}")


def connect(uri: str | None = None) -> str:
    """Point MLflow at the store (checked reachable, created if new) and return its URI."""
    uri = uri or tracking_uri()
    _configure_http_client()
    check_reachable(uri)
    import mlflow

    _create_sqlite_store_once(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def _create_sqlite_store_once(uri: str) -> None:
    """Create a new SQLite store's tables under a file lock.

    Two queued experiments starting together would otherwise both run MLflow's schema
    migrations on the same new file and one would fail ("table already exists").
    """
    if not uri.startswith("sqlite:///"):
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    store = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_name(store.name + ".init-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
        except MlflowException as err:
            raise StageError(f"MLflow store {uri}: {err.message.splitlines()[0]}") from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def get_or_create_experiment(name: str, uri: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri))
        except MlflowException:
            # another queued experiment created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id
    except MlflowException as err:
        raise StageError(f"MLflow store {uri}: {err.message.splitlines()[0]}") from None


@dataclass(frozen=True)
class RunRef:
    """What evaluate and export need to reopen the run train started."""

    run_id: str
    experiment_id: str
    tracking_uri: str

    def write(self, path: str | os.PathLike[str]) -> None:
        write_json(path, asdict(self))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunRef:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(run_id=str(raw["run_id"]), experiment_id=str(raw["experiment_id"]),
                       tracking_uri=str(raw["tracking_uri"]))
        except FileNotFoundError:
            raise StageError(f"{path}: run file not found (run the train stage first)") from None
        except OSError as err:  # a folder, no permission
            raise StageError(f"{path}: cannot read the run file ({err.strerror or err})") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise StageError(f"{path}: not a run file ({type(err).__name__}: {err}); "
                             "expected JSON with run_id, experiment_id, tracking_uri") from None


@contextlib.contextmanager
def reopen_run(ref: RunRef) -> Iterator[object]:
    """Resume the run train started; it ends FINISHED, or FAILED if the body raises."""
    import mlflow
    from mlflow.exceptions import MlflowException

    connect(ref.tracking_uri)
    try:
        run = mlflow.start_run(run_id=ref.run_id)
    except MlflowException as err:
        raise StageError(f"MLflow run {ref.run_id} cannot be reopened in {ref.tracking_uri}: "
                         f"{err.message.splitlines()[0]}") from None
    with run:
        # this process now holds the run: fail_abandoned_runs must judge by its pid
        mlflow.set_tags({"pipeline.host": socket.gethostname(), "pipeline.pid": str(os.getpid())})
        yield run


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"train": {"epochs": 5}}`` → ``{"train.epochs": 5}``; lists become strings."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return flat


def fail_abandoned_runs(client, experiment_id: str, host: str) -> list[str]:  # noqa: ANN001
    """End as FAILED the RUNNING runs of this host whose process is gone (e.g. killed)."""
    abandoned = []
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                              max_results=200)
    for run in runs:
        tags = run.data.tags
        if tags.get("pipeline.host") != host:
            continue
        pid = int(tags.get("pipeline.pid", "0") or 0)
        if pid and _process_alive(pid):
            continue
        client.set_tag(run.info.run_id, "pipeline.failure", "process ended without closing the run")
        client.set_terminated(run.info.run_id, status="FAILED")
        abandoned.append(run.info.run_id)
    return abandoned


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def retry_locked(action, what: str, attempts: int = 8, first_wait: float = 0.25):  # noqa: ANN001, ANN201
    """Run ``action()``, retrying a bounded number of times while SQLite says it is locked."""
    from mlflow.exceptions import MlflowException

    wait = first_wait
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except MlflowException as err:
            if "locked" not in str(err).lower() or attempt == attempts:
                raise StageError(f"MLflow: {what} failed: {str(err).splitlines()[0]}") from None
        time.sleep(wait)
        wait = min(wait * 2, 8.0)
    raise AssertionError("unreachable")


def serve_ui() -> None:
    """``python -m stages.tracking ui``: the MLflow UI on the project's store."""
    uri = tracking_uri()
    port = os.environ.get("MLFLOW_UI_PORT", "5000")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", port]
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    print(f"MLflow UI on {uri}: http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    if sys.argv[1:2] == ["ui"]:
        serve_ui()
    else:
        print("usage: python -m stages.tracking ui", file=sys.stderr)
        raise SystemExit(2)
