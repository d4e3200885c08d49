"""``python -m team up | down | status | env``: the team services of this project.

up       start PostgreSQL, the S3 object store and mlflow server (those not running),
         point this clone's DVC remote at the store, print what to export
down     stop them; their data stays in .team/
status   one line per service
env      print the exports again
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from kernel.cli import run_command
from team import services
from team.settings import ADMIN, DVC_BUCKET, Settings, load

ROOT = Path(__file__).resolve().parent.parent
USAGE = "usage: python -m team up | down | status | env"


def exports(settings: Settings) -> str:
    """What a member exports to log to the team server (no S3 keys: the server proxies)."""
    values = {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_TRACKING_USERNAME": ADMIN,
        "MLFLOW_TRACKING_PASSWORD": settings.secrets["MLFLOW_AUTH_ADMIN_PASSWORD"],
    }
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())


def configure_dvc_remote(settings: Settings) -> None:
    """This clone's DVC remote ``team`` on the store; keys in .dvc/config.local, not in git."""

    def dvc(*args: str) -> None:
        command = [sys.executable, "-m", "dvc", *args]  # this environment's dvc, PATH or not
        subprocess.run(command, cwd=settings.root, check=True, capture_output=True)

    dvc("remote", "add", "--local", "--force", "--default", "team", f"s3://{DVC_BUCKET}")
    dvc("remote", "modify", "--local", "team", "endpointurl", settings.s3_endpoint)
    # "--": a key may begin with "-", which DVC's parser would take for an option
    dvc("remote", "modify", "--local", "team", "access_key_id", "--",
        settings.secrets["TEAM_S3_ACCESS_KEY"])  # fmt: skip
    dvc("remote", "modify", "--local", "team", "secret_access_key", "--",
        settings.secrets["TEAM_S3_SECRET_KEY"])  # fmt: skip
    (settings.root / ".dvc" / "config.local").chmod(0o600)  # it holds the store's secret key


def up(settings: Settings) -> None:
    if settings.external_postgres is None:
        services.start_postgres(settings)
        print(f"team: PostgreSQL on 127.0.0.1:{settings.postgres_port}", file=sys.stderr)
    if settings.external_s3 is None:
        services.start_object_store(settings)
    else:
        services.create_buckets(settings)
    print(f"team: S3 object store at {settings.s3_endpoint}", file=sys.stderr)
    services.start_mlflow(settings)
    print(f"team: mlflow server at {settings.tracking_uri} (basic-auth)", file=sys.stderr)
    configure_dvc_remote(settings)
    print("team: DVC remote 'team' (default) on the object store", file=sys.stderr)
    print(exports(settings))


def down(settings: Settings) -> None:
    for name, stop in (
        ("mlflow server", services.stop_mlflow),
        ("S3 object store", services.stop_object_store),
        ("PostgreSQL", services.stop_postgres),
    ):
        print(f"team: {name} {'stopped' if stop(settings) else 'was not running'}", file=sys.stderr)


def status(settings: Settings) -> bool:
    states = {"mlflow server": services.running_pid(settings, "mlflow") is not None}
    if settings.external_postgres is None:
        states["PostgreSQL"] = services.postgres_running(settings)
    else:
        print("team: PostgreSQL: the team's own (TEAM_BACKEND_STORE_URI)")
    if settings.external_s3 is None:
        states["S3 object store"] = services.running_pid(settings, "s3") is not None
    else:
        print(f"team: S3 object store: the team's own, {settings.external_s3}")
    for name, running in states.items():
        print(f"team: {name}: {'running' if running else 'stopped'}")
    return all(states.values())


def run(argv: list[str]) -> int:
    command = argv[0]
    settings = load(ROOT, create=command == "up")
    if command == "up":
        up(settings)
    elif command == "down":
        down(settings)
    elif command == "status":
        return 0 if status(settings) else 3
    else:
        print(exports(settings))
    return 0


def main(argv: list[str]) -> int:
    if argv not in (["up"], ["down"], ["status"], ["env"]):
        print(USAGE, file=sys.stderr)
        return 2
    # a service, the database, the store or dvc said no: every failure is one line
    return run_command("team", run, argv, any_error=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
