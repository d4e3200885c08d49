"""monitor.log_settings: every server's request log opened from the typed ``monitor`` params,
and those settings handed to MLServer's process and checked on arrival."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factories.params import params_dict
from kernel.params import MonitorParams, parse_params
from monitor.log_settings import (
    LOG_ARTIFACT_FOLDER,
    LOG_ROLE,
    MB,
    RequestLogSettings,
    RequestLogSettingsError,
    log_copier,
    open_request_log,
)
from monitor.request_log import ServedModel
from tracking.team_copies import ArtifactShipper

MODEL = ServedModel("mnist-digits", "7", "champion")
LOCAL_STORE = "sqlite:////tmp/mlflow.db"
TEAM_STORE = "http://127.0.0.1:5999"
WHERE = "mnist-digits's model settings, parameters.extra.request_log"


def _monitor(**values: object) -> MonitorParams:
    return parse_params(params_dict(monitor=values)).monitor


def _handed(tmp_path: Path, **monitor: object) -> dict:
    """What ``python -m serving`` writes, as the runtime's process reads it: JSON."""
    settings = RequestLogSettings(
        monitor=_monitor(**monitor), folder=str(tmp_path / "logs"), tracking_uri=LOCAL_STORE
    )
    return json.loads(json.dumps(settings.as_extra()))


def test_the_log_is_made_from_the_typed_params_and_what_the_server_says(tmp_path) -> None:
    monitor = _monitor(keep_pixels=True, rotate_mb=3, keep_days=9)
    log = open_request_log(
        monitor, tmp_path, "page", MODEL, tracking_uri=LOCAL_STORE, max_day_bytes=1234
    )
    try:
        assert (log.folder, log.source) == (tmp_path, "page")
        assert (log.keep_pixels, log.rotate_bytes, log.keep_days) == (True, 3 * MB, 9)
        assert log.max_day_bytes == 1234
        assert log._shipper is None, "a local store: no copies"
    finally:
        log.close()


def test_with_a_team_store_the_log_copies_its_files_to_the_request_logs_runs(tmp_path) -> None:
    log = open_request_log(_monitor(), tmp_path, "mlserver", MODEL, tracking_uri=TEAM_STORE)
    try:
        copier = log._shipper
        assert isinstance(copier, ArtifactShipper)
        assert (copier.role, copier.folder, copier.source) == (
            LOG_ROLE,
            LOG_ARTIFACT_FOLDER,
            "mlserver",
        )
        assert copier.experiment_name == _monitor().experiment_name and copier.model == MODEL
    finally:
        log.close()
    assert log_copier(LOCAL_STORE, "monitoring", "page", MODEL) is None


def test_the_settings_mlservers_runtime_receives_equal_the_typed_params(tmp_path) -> None:
    monitor = _monitor(keep_pixels=True, rotate_mb=5, drift_method="psi")
    sent = RequestLogSettings(monitor=monitor, folder=str(tmp_path), tracking_uri=TEAM_STORE)
    received = RequestLogSettings.from_extra(json.loads(json.dumps(sent.as_extra())), WHERE)
    assert received == sent and received.monitor == monitor


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda extra: extra["monitor"].update(rotate_mb=0),
            "monitor.rotate_mb = 0: Input should be greater than or equal to 1",
        ),
        (
            lambda extra: extra["monitor"].update(keep_pixels="yes"),
            "monitor.keep_pixels = 'yes': Input should be a valid boolean",
        ),
        (
            lambda extra: extra.update(folder="logs/requests"),
            "folder = 'logs/requests': expected an absolute path",
        ),
        (lambda extra: extra["monitor"].pop("keep_days"), "missing key monitor.keep_days"),
        (lambda extra: extra.update(ship=None), "unknown key ship"),
    ],
)
def test_a_bad_setting_handed_to_the_runtime_is_one_line_naming_it(
    tmp_path, change, message
) -> None:
    extra = _handed(tmp_path)
    change(extra)
    with pytest.raises(RequestLogSettingsError) as raised:
        RequestLogSettings.from_extra(extra, WHERE)
    assert str(raised.value) == f"{WHERE}: {message}"


def test_settings_that_are_no_mapping_are_refused_in_one_line() -> None:
    with pytest.raises(RequestLogSettingsError, match=rf"^{WHERE}: \(the whole value\) = 'x'"):
        RequestLogSettings.from_extra("x", WHERE)
