"""The team's PostgreSQL: MLflow's runs, registry (database ``mlflow``) and users
(``mlflow_auth``), owned by the role ``mlflow``, which is not a superuser.

The cluster's superuser has no password at all: it logs in only over the cluster's Unix
socket, as the operating-system user PostgreSQL runs as (``peer``), so the password the
MLflow server holds reaches nothing but its own two databases.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from team.services import ServiceError, as_root, private_dir
from team.settings import HOST, Settings

PG_BIN = Path(os.environ.get("TEAM_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASES = ("mlflow", "mlflow_auth")
OWNER = "mlflow"


def _os_user() -> str:
    """Who runs PostgreSQL's tools: initdb refuses root, so root runs them as postgres."""
    return "postgres" if as_root() else getpass.getuser()


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if as_root() else command


def _pg(tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if not (PG_BIN / tool).exists():
        raise ServiceError(f"{PG_BIN / tool} not found: install postgresql-15 (make team-up does)")
    return subprocess.run(
        _as_postgres([str(PG_BIN / tool), *args]),
        input=stdin,
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )


def pg_dirs(settings: Settings) -> tuple[Path, Path]:
    return settings.state / "postgres", settings.state / "run" / "postgres"


def running(settings: Settings) -> bool:
    data, _ = pg_dirs(settings)
    return data.exists() and _pg("pg_ctl", "status", "-D", str(data)).returncode == 0


def superuser_sql(settings: Settings, sql: str, database: str = "postgres") -> str:
    """Run SQL as the cluster's superuser over its socket (peer login, no password);
    the SQL goes on stdin, so no secret in it shows in ``ps``."""
    _, sockets = pg_dirs(settings)
    done = _pg(
        "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(sockets),
        "-p", str(settings.postgres_port), "-U", _os_user(), "-d", database, stdin=sql,
    )  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if f'role "{_os_user()}" does not exist' in last:
            raise ServiceError(
                "this stack's PostgreSQL was made before its roles were split (its superuser "
                f"is {OWNER}) and cannot be lowered: `make team-down`, move .team/ away and "
                "`make team-up` a new stack"
            )
        raise ServiceError(f"PostgreSQL refused the stack's setup: {last}")
    return done.stdout


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def start(settings: Settings) -> None:
    data, sockets = pg_dirs(settings)
    log = settings.state / "logs" / "postgres.log"
    private_dir(sockets, owner="postgres" if as_root() else None)
    if as_root():
        reach = subprocess.run(_as_postgres(["test", "-x", str(data.parent)]), check=False)
        if reach.returncode != 0:
            raise ServiceError(
                f"PostgreSQL runs as the postgres user, who cannot reach {data.parent}: make "
                "the folders above it traversable (chmod o+x), or keep the project elsewhere"
            )
    private_dir(data, owner="postgres" if as_root() else None)
    if not log.exists():
        os.close(os.open(log, os.O_WRONLY | os.O_CREAT, 0o600))
    log.chmod(0o600)
    if as_root():
        shutil.chown(log, "postgres")
    if not (data / "PG_VERSION").exists():
        done = _pg("initdb", "-D", str(data), "-U", _os_user(), "--auth-local=peer",
                   "--auth-host=scram-sha-256", "-E", "UTF8")  # fmt: skip
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ServiceError(f"initdb failed: {last}")
    if not running(settings):
        options = f"-h {HOST} -p {settings.postgres_port} -k {sockets}"
        done = _pg("pg_ctl", "start", "-w", "-D", str(data), "-l", str(log), "-o", options)
        if done.returncode != 0:
            raise ServiceError(f"PostgreSQL did not start: see {log}")
    _create_owner_and_databases(settings)


def _create_owner_and_databases(settings: Settings) -> None:
    found = superuser_sql(
        settings, f"SELECT rolsuper FROM pg_roles WHERE rolname = {_literal(OWNER)};"
    ).strip()
    if found == "t":
        raise ServiceError(
            f"the role {OWNER} of this stack's PostgreSQL is a superuser (a stack made before "
            "roles were split) and the stack cannot lower it: `make team-down`, move .team/ "
            "away and `make team-up` a new stack (docs/team.md, Backup and restore)"
        )
    password = _literal(settings.secrets["TEAM_POSTGRES_PASSWORD"])
    verb = "ALTER" if found else "CREATE"
    superuser_sql(
        settings,
        f"{verb} ROLE {OWNER} LOGIN PASSWORD {password} "
        "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;",
    )
    existing = set(superuser_sql(settings, "SELECT datname FROM pg_database;").split())
    for database in DATABASES:
        if database not in existing:
            superuser_sql(settings, f'CREATE DATABASE "{database}" OWNER {OWNER};')
    # the owner reaches its two databases only: no connecting to the cluster's own
    for database in (*DATABASES, "postgres", "template1"):
        superuser_sql(settings, f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC;')


def stop(settings: Settings) -> bool:
    data, _ = pg_dirs(settings)
    if not running(settings):
        return False
    _pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(data))
    return True
