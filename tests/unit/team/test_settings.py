"""team.settings: secrets and ports fixed at the first up, private, and refused when unusable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel.cli import CommandError
from team import services
from team.settings import SECRET_NAMES, load


@pytest.fixture(autouse=True)
def _no_team_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TEAM_") or name.startswith("MLFLOW_AUTH"):
            monkeypatch.delenv(name)


def test_the_first_up_fixes_secrets_and_ports_in_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "chosen by the team")
    monkeypatch.setenv("TEAM_MLFLOW_PORT", "5999")
    first = load(tmp_path, create=True)
    path = tmp_path / ".team" / "settings.env"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert first.secrets["MLFLOW_AUTH_ADMIN_PASSWORD"] == "chosen by the team"
    assert first.mlflow_port == 5999 and first.s3_port == 8333
    assert len({first.secrets[name] for name in SECRET_NAMES}) == len(SECRET_NAMES)

    monkeypatch.setenv("TEAM_MLFLOW_PORT", "6111")  # later shells change nothing
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "another")
    again = load(tmp_path)
    assert again == first


def test_without_a_first_up_there_is_nothing_to_find(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="run `make team-up` first"):
        load(tmp_path)


def test_a_teams_own_endpoints_are_kept_and_need_their_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_S3_ENDPOINT_URL", "https://s3.example.test")
    with pytest.raises(CommandError, match="needs TEAM_S3_ACCESS_KEY and TEAM_S3_SECRET_KEY"):
        load(tmp_path, create=True)
    monkeypatch.setenv("TEAM_S3_ACCESS_KEY", "AKIA")
    monkeypatch.setenv("TEAM_S3_SECRET_KEY", "secret")
    monkeypatch.setenv(
        "TEAM_BACKEND_STORE_URI",
        "postgresql+psycopg://u:p@db.example.test:5432/mlflow?sslmode=require",
    )
    load(tmp_path, create=True)
    for name in ("TEAM_S3_ENDPOINT_URL", "TEAM_BACKEND_STORE_URI"):
        monkeypatch.delenv(name)
    settings = load(tmp_path)
    assert settings.s3_endpoint == "https://s3.example.test"
    assert settings.database_uri("mlflow_auth") == (
        "postgresql+psycopg://u:p@db.example.test:5432/mlflow_auth?sslmode=require"
    )


def test_a_port_that_is_no_number_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_S3_PORT", "eighty")
    with pytest.raises(CommandError, match="must be a port number"):
        load(tmp_path, create=True)
    assert not (tmp_path / ".team" / "settings.env").exists()


def test_a_pid_file_naming_another_program_is_not_taken_for_the_service(tmp_path: Path) -> None:
    settings = load(tmp_path, create=True)
    run = tmp_path / ".team" / "run"
    run.mkdir(parents=True)
    (run / "mlflow.pid").write_text(f"{os.getpid()}\n")  # this test, alive, but not mlflow
    assert services.running_pid(settings, "mlflow") is None
    (run / "s3.pid").write_text("999999999\n")
    assert services.running_pid(settings, "s3") is None
