"""The request log's settings: ``params.yaml``'s ``monitor`` section made into a log, in one place.

Two kinds of server open a request log: MLServer's runtime (``serving.runtime``), which
``python -m serving`` starts, and the page's server (``python -m demo``). Each calls
``open_request_log`` with the typed ``monitor`` params and what differs between them: the
folder, the source name its records carry, the model it answers with, the tracking store
(a team server there makes the log copy its files to the team's store), and a day's cap.

MLServer's runtime runs in another process and environment, which learns its settings from
the model settings ``python -m serving`` writes: ``RequestLogSettings`` is what crosses,
written with ``as_extra`` and read back with ``from_extra``, which checks every value as
``params.yaml``'s loader does (one line naming the key, the value and what was expected), so
no default is written twice and nothing reaches the log unchecked.

In team mode the copies are runs of role ``LOG_ROLE`` in ``monitor.experiment_name``, their
files in the artifact folder ``LOG_ARTIFACT_FOLDER``; ``download_logs`` brings every server's
back (``python -m monitor``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from kernel.params import MonitorParams
from monitor.request_log import FILE_PREFIX, FILE_SUFFIX, RequestLog, ServedModel
from tracking.team_copies import (
    DEFAULT_EVERY_SECONDS,
    ArtifactShipper,
    ModelIdentity,
    download_artifacts,
    is_team_store,
)

LOG_ROLE = "request-log"
LOG_ARTIFACT_FOLDER = "requests"
MB = 2**20


def log_copier(
    tracking_uri: str,
    experiment_name: str,
    source: str,
    model: ModelIdentity,
    every_seconds: float = DEFAULT_EVERY_SECONDS,
) -> ArtifactShipper | None:
    """What copies a server's log files to the team's store; None when the store is local."""
    if not is_team_store(tracking_uri):
        return None
    return ArtifactShipper(
        tracking_uri,
        experiment_name,
        source,
        model,
        every_seconds,
        role=LOG_ROLE,
        folder=LOG_ARTIFACT_FOLDER,
    )


def open_request_log(
    monitor: MonitorParams,
    folder: str | os.PathLike[str],
    source: str,
    model: ServedModel,
    *,
    tracking_uri: str,
    max_day_bytes: int = 0,
    encode_in_subprocess: bool = False,
) -> RequestLog:
    """The request log of one server: files in ``folder``, records naming ``source``, copied to
    the team's store when ``tracking_uri`` is a team server (its run names ``model``);
    ``encode_in_subprocess``: see ``RequestLog``."""
    return RequestLog(
        folder,
        source,
        keep_pixels=monitor.keep_pixels,
        rotate_bytes=monitor.rotate_mb * MB,
        keep_days=monitor.keep_days,
        shipper=log_copier(tracking_uri, monitor.experiment_name, source, model),
        max_day_bytes=max_day_bytes,
        encode_in_subprocess=encode_in_subprocess,
    )


class RequestLogSettingsError(ValueError):
    """Settings handed to MLServer's runtime that are no request log's; one line."""


class RequestLogSettings(BaseModel):
    """What MLServer's runtime needs to open its request log, as ``python -m serving`` hands
    it across in the model settings: the ``monitor`` params, the folder (absolute: MLServer's
    working folder may be another) and the tracking store."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    monitor: MonitorParams
    folder: str
    tracking_uri: str

    @field_validator("folder")
    @classmethod
    def _absolute(cls, folder: str) -> str:
        if not Path(folder).is_absolute():
            raise ValueError("expected an absolute path")
        return folder

    def as_extra(self) -> dict[str, Any]:
        """The settings as JSON values, for the model settings' ``extra`` parameters."""
        return self.model_dump(mode="json")

    @classmethod
    def from_extra(cls, value: object, where: str) -> RequestLogSettings:
        """The settings ``as_extra`` wrote, checked; ``RequestLogSettingsError`` naming
        ``where`` they came from, the first bad key and its value otherwise."""
        try:
            return cls.model_validate(value)
        except ValidationError as err:
            errors = err.errors()
            more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
            raise RequestLogSettingsError(f"{where}: {_described(errors[0])}{more}") from None

    def open(
        self, source: str, model: ServedModel, encode_in_subprocess: bool = False
    ) -> RequestLog:
        return open_request_log(
            self.monitor,
            self.folder,
            source,
            model,
            tracking_uri=self.tracking_uri,
            encode_in_subprocess=encode_in_subprocess,
        )


def _described(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(the whole value)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"missing key {key}"
    if error["type"] == "extra_forbidden":
        return f"unknown key {key}"
    return f"{key} = {error.get('input')!r}: {message}"


def download_logs(tracking_uri: str, experiment_name: str, into: Path, keep_days: int) -> int:
    """Every request-log file of the team's servers begun in the last ``keep_days`` days
    (all when 0), downloaded into the folder ``into``; the number of files."""
    return download_artifacts(
        tracking_uri,
        experiment_name,
        into,
        role=LOG_ROLE,
        folder=LOG_ARTIFACT_FOLDER,
        wanted=lambda name: name.startswith(FILE_PREFIX) and name.endswith(FILE_SUFFIX),
        keep_days=keep_days,
    )
