"""One MLflow run per trained model: the run file that carries it through train → evaluate →
export → quantize, finding and reopening the run, closing abandoned ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.atomic import json_text, write_text
from kernel.cli import CommandError
from tracking.run_tags import MODEL_DIGEST_TAG
from tracking.store import connect, member_name, retry_locked

if TYPE_CHECKING:
    from mlflow import ActiveRun, MlflowClient


@dataclass(frozen=True)
class RunRef:
    """The run train started, as the stages after it find it in the store."""

    run_id: str
    experiment_id: str
    tracking_uri: str


@dataclass(frozen=True)
class RunFile:
    """What train leaves for evaluate, export and quantize to find its run by (models/run.json).

    Only what the model's own inputs decide: its experiment and the digest of its bytes.
    A run id, a store path or a time would make the file, and dvc.lock with it, differ from
    one clone to the next; the run is looked up by its ``model_sha256`` tag instead.
    """

    experiment_name: str
    model_sha256: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def as_text(self) -> str:
        """The file's bytes, as text: what DVC's md5 of it is taken of."""
        return json_text(self.as_dict())

    def write(self, path: str | os.PathLike[str]) -> None:
        write_text(path, self.as_text())

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunFile:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                experiment_name=str(raw["experiment_name"]),
                model_sha256=str(raw["model_sha256"]),
            )
        except FileNotFoundError:
            raise CommandError(f"{path}: run file not found (run the train stage first)") from None
        except OSError as err:  # a folder, no permission
            raise CommandError(
                f"{path}: cannot read the run file ({err.strerror or err})"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise CommandError(
                f"{path}: not a run file ({type(err).__name__}: {err}); "
                "expected JSON with experiment_name, model_sha256"
            ) from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_run(path: str | os.PathLike[str], uri: str | None = None) -> RunRef:
    """The newest run of the run file's experiment tagged with its model's digest.

    The store is ``uri``, else the project's (``MLFLOW_TRACKING_URI`` or ``mlflow.db``).
    Two runs hold the same digest only when they trained the same bytes from the same
    inputs; the newest is the one the last train left.
    """
    import mlflow

    wanted = RunFile.read(path)
    uri = connect(uri)
    client = mlflow.MlflowClient(uri)
    experiment = retry_locked(
        lambda: client.get_experiment_by_name(wanted.experiment_name), "finding the experiment"
    )
    found = []
    if experiment is not None:
        found = retry_locked(
            lambda: client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.{MODEL_DIGEST_TAG} = '{wanted.model_sha256}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            ),
            "finding the run",
        )
    if not found:
        raise CommandError(
            f"{path}: no run of experiment {wanted.experiment_name!r} in {uri} trained the "
            f"model with sha256 {wanted.model_sha256[:12]}...; train it here "
            "(dvc repro -f train) or point MLFLOW_TRACKING_URI at the store that did"
        )
    return RunRef(
        run_id=found[0].info.run_id, experiment_id=experiment.experiment_id, tracking_uri=uri
    )


@contextlib.contextmanager
def reopen_run(ref: RunRef) -> Iterator[ActiveRun]:
    """Resume the run train started; it ends FINISHED, or FAILED if the body raises."""
    import mlflow
    from mlflow.exceptions import MlflowException

    connect(ref.tracking_uri)
    try:
        run = mlflow.start_run(run_id=ref.run_id)
    except MlflowException as err:
        raise CommandError(
            f"MLflow run {ref.run_id} cannot be reopened in {ref.tracking_uri}: "
            f"{err.message.splitlines()[0]}"
        ) from None
    with ending(run, ref.tracking_uri):
        # this process now holds the run: fail_abandoned_runs must judge by its pid
        mlflow.set_tags({"pipeline.host": socket.gethostname(), "pipeline.pid": str(os.getpid())})
        yield run


@contextlib.contextmanager
def ending(run: ActiveRun, uri: str) -> Iterator[ActiveRun]:
    """End the active run FINISHED, or FAILED if the body raises; the body's error stays the
    one reported. A store that went away cannot record the end: the run stays RUNNING until
    the next train of this host closes it as FAILED (``fail_abandoned_runs``)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        yield run
    except BaseException:
        # the failure that got us here is the one line to report, not this one
        with contextlib.suppress(MlflowException):
            mlflow.end_run("FAILED")
        raise
    try:
        mlflow.end_run("FINISHED")
    except MlflowException as err:
        raise CommandError(
            f"MLflow: ending run {run.info.run_id} failed: {err.message.splitlines()[0]}"
        ) from None


def git_commit(cwd: Path | None = None) -> str:
    """The commit the workspace is at, or "unknown" outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=10,
            check=True,
        )
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


def fail_abandoned_runs(client: MlflowClient, experiment_id: str, host: str) -> list[str]:
    """End as FAILED this member's RUNNING runs of this host whose process is gone (e.g.
    killed)."""
    abandoned = []
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200
    )
    for run in runs:
        tags = run.data.tags
        # on a team server a run is written by its author alone: another's is theirs to end
        if (
            tags.get("pipeline.host") != host
            or tags.get("mlflow.user", member_name()) != member_name()
        ):
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
