"""Where MLflow runs go: the tracking store, reached and checked before any work.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``mlflow.db`` (SQLite) at the
workspace root, as an absolute URI. ``dvc exp run --temp`` and queued
experiments run in a copy under ``.dvc/tmp/exps/``; their runs still land in the
workspace's store because the root is found above that copy.

MLflow is imported inside the functions that need it: importing it costs seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from kernel.cli import CommandError

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
_EXPERIMENT_COPY_MARK = (".dvc", "tmp", "exps")
T = TypeVar("T")


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
    # MLflow's defaults retry for minutes; a pipeline stage should fail in seconds instead,
    # yet ride over a server's database restarting (4 retries: 1 + 2 + 4 + 8 s)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # usage telemetry would reach for the internet from every stage
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """For a tracking server, answer in seconds whether it is up and lets this client in.

    ``/health`` says it is up; one read of the experiments, with the credentials MLflow
    would send (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``), says it
    accepts them, so a refused client fails before any training, not after it.
    """
    if not uri.startswith(("http://", "https://")):
        return
    base = uri.rstrip("/")
    status = _http_status(base + "/health", timeout, uri)
    if status >= 400:
        raise CommandError(
            f"MLflow tracking server {uri} unhealthy: {base}/health answered {status}"
        )
    status = _http_status(
        base + "/api/2.0/mlflow/experiments/search?max_results=1", timeout, uri, _credentials()
    )
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    if status == 401:
        given = f"user {user!r} with that password" if user else "no credentials"
        raise CommandError(
            f"MLflow tracking server {uri} refused {given} (401 Unauthorized); expected a team "
            "member's MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if status == 403:
        raise CommandError(f"MLflow tracking server {uri}: user {user!r} may not read (403)")


def _credentials() -> dict[str, str]:
    """The Authorization header MLflow's client sends: a token, or basic credentials."""
    import base64

    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not user:
        return {}
    pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def member_name() -> str:
    """Who logs: the team member's login, else this machine's user (MLflow's own choice)."""
    import getpass

    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def _http_status(url: str, timeout: float, uri: str, headers: dict[str, str] | None = None) -> int:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CommandError(
            f"MLflow tracking server {uri} unreachable ({reason}); start it, "
            "or unset MLFLOW_TRACKING_URI to use the local store"
        ) from None


def connect(uri: str | None = None) -> str:
    """Point MLflow at the store (checked reachable, created if new) and return its URI."""
    uri = uri or tracking_uri()
    _configure_http_client()
    check_reachable(uri)
    import mlflow

    _create_sqlite_store_once(uri)
    mlflow.set_tracking_uri(uri)
    return uri


@contextlib.contextmanager
def registry_lock(uri: str) -> Iterator[None]:
    """Hold the registry's aliases still while one export reads, decides and moves them.

    Two queued experiments exporting together would otherwise both read the same
    champion and the slower one would win, better or not. The lock is a file lock
    (beside a SQLite store, else in the workspace's ``.dvc/tmp/``, or the file
    ``PIPELINE_REGISTRY_LOCK`` names: a sweep's trials, each in its own clone, share one):
    it orders the exports of one machine, not of several machines sharing a server.
    """
    shared = os.environ.get("PIPELINE_REGISTRY_LOCK", "")
    if shared:
        path = Path(shared)
    elif uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        path = store.with_name(store.name + ".registry-lock")
    else:
        path = workspace_root() / ".dvc" / "tmp" / "registry-lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
            raise CommandError(f"MLflow store {uri}: {err.message.splitlines()[0]}") from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# the UI lists this experiment's training runs, not GenAI traces
MODEL_TRAINING_KIND = {"mlflow.experimentKind": "custom_model_development"}


def get_or_create_experiment(name: str, uri: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location(uri), tags=MODEL_TRAINING_KIND
            )
        except MlflowException as err:
            if err.error_code == "PERMISSION_DENIED":
                # a team server: shared experiments are the admin's, so none manages another's
                raise CommandError(
                    f"MLflow tracking server {uri}: experiment {name!r} does not exist and only "
                    f"the team's admin creates experiments: `python -m team experiment add {name}`"
                ) from None
            # another queued experiment created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id
    except MlflowException as err:
        if err.error_code == "PERMISSION_DENIED":
            raise permission_error(uri, f"use experiment {name!r}") from None
        raise CommandError(f"MLflow store {uri}: {err.message.splitlines()[0]}") from None


def permission_error(uri: str, doing: str) -> CommandError:
    """One line for a 403: who was refused, what they tried, and which role allows it."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    return CommandError(
        f"MLflow tracking server {uri}: user {user!r} may not {doing} (403 Permission denied: "
        "it needs EDIT, which the member and maintainer roles grant; "
        "the admin gives it with `python -m team member add NAME --role member`)"
    )


# What PostgreSQL answers the loser of two writers inserting the same key at once: MLflow
# sets an alias by select-then-insert (``session.merge``), so two machines setting a new
# alias together collide on its primary key, and the same call a moment later updates it.
# ``log_inputs`` does the same with a dataset (select by name and digest, then insert), so
# members training on the same data at once collide on ``dataset_pk``; a moment later the
# call finds the row and links it.
_INSERT_RACE = "duplicate key value violates unique constraint"


def retry_locked(
    action: Callable[[], T],
    what: str,
    attempts: int = 8,
    first_wait: float = 0.25,
    upsert: bool = False,
) -> T:
    """Run ``action()``, retrying a bounded number of times while SQLite says it is locked;
    with ``upsert`` (an action that inserts or updates, so repeating it is safe), also when
    it lost an insert race to another writer."""
    from mlflow.exceptions import MlflowException

    wait = first_wait
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except MlflowException as err:
            text = str(err).lower()
            transient = "locked" in text or (upsert and _INSERT_RACE in text)
            if not transient or attempt == attempts:
                raise CommandError(f"MLflow: {what} failed: {str(err).splitlines()[0]}") from None
        time.sleep(wait)
        wait = min(wait * 2, 8.0)
    raise AssertionError("unreachable")
