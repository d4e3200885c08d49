"""serving.serve_folder and serving.start: the model settings ``python -m serving`` writes carry
the request log's settings to MLServer's runtime as the typed ``monitor`` params."""

from __future__ import annotations

import json
from pathlib import Path

from factories.params import params_dict
from kernel.params import parse_params
from monitor.log_settings import RequestLogSettings
from serving.serve_folder import HOST, MODEL_SETTINGS, write_mlserver_settings
from serving.start import request_log_settings

NAME = "mnist-digits"


def _written(serve_dir: Path, request_log: RequestLogSettings | None) -> dict:
    (serve_dir / NAME).mkdir(parents=True)
    write_mlserver_settings(serve_dir, NAME, "3", 8123, "champion", request_log)
    server = json.loads((serve_dir / "settings.json").read_text())
    assert (server["host"], server["http_port"], server["grpc_port"]) == (HOST, 8123, 8124)
    return json.loads((serve_dir / NAME / MODEL_SETTINGS).read_text())


def test_the_runtime_reads_back_the_monitor_params_the_server_was_started_with(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the log folder is made absolute from here
    monitor = parse_params(params_dict(monitor={"keep_days": 3, "rotate_mb": 2})).monitor
    sent = request_log_settings(monitor, "sqlite:///x.db")
    model = _written(tmp_path / "serve", sent)
    extra = model["parameters"]["extra"]
    assert extra["alias"] == "champion"
    received = RequestLogSettings.from_extra(extra["request_log"], "model settings")
    assert received.monitor == monitor
    assert received.folder == str(tmp_path / monitor.log_dir)
    assert received.tracking_uri == "sqlite:///x.db"


def test_without_a_request_log_the_runtime_is_told_none(tmp_path) -> None:
    model = _written(tmp_path / "serve", None)
    assert model["parameters"]["extra"] == {"alias": "champion", "request_log": None}
    assert model["parameters"]["uri"] == "./model" and model["versions"] == ["3"]
