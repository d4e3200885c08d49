"""One MLflow run per trained model: the run file that carries it through train → evaluate →
export, reopening it, closing abandoned ones, and writes that wait out a locked SQLite store.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.atomic import write_json
from kernel.cli import CommandError
from tracking.store import connect

if TYPE_CHECKING:
    from mlflow import ActiveRun, MlflowClient


@dataclass(frozen=True)
class RunRef:
    """What evaluate and export need to reopen the run train started."""

    run_id: str
    experiment_id: str
    tracking_uri: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def write(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.as_dict())

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunRef:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                run_id=str(raw["run_id"]),
                experiment_id=str(raw["experiment_id"]),
                tracking_uri=str(raw["tracking_uri"]),
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
                "expected JSON with run_id, experiment_id, tracking_uri"
            ) from None


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
    with run:
        # this process now holds the run: fail_abandoned_runs must judge by its pid
        mlflow.set_tags({"pipeline.host": socket.gethostname(), "pipeline.pid": str(os.getpid())})
        yield run


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
    """End as FAILED the RUNNING runs of this host whose process is gone (e.g. killed)."""
    abandoned = []
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200
    )
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
