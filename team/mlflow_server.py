"""The team's MLflow server: basic-auth, runs and registry in PostgreSQL, artifacts proxied
to the object store, run as the services' unprivileged user.

No permission by default (``NO_PERMISSIONS``): what a user may do comes from the role
``python -m team member add`` gives them (``team.roles``); ``team.mlflow_auth`` closes
what MLflow's permissions leave open, and ``team.mlflow_app`` refuses other origins. Its
S3 keys open the artifacts bucket alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import team
from team import routes, services
from team.settings import ADMIN, ARTIFACTS_BUCKET, HOST, Settings, write_private

AUTHORIZATION_FUNCTION = "team.mlflow_auth:authenticate"
# the basic-auth app behind a check of the Origin (team.mlflow_app; pyproject's mlflow.app)
APP_NAME = "team-basic-auth"


def _auth_config(folder: Path, settings: Settings) -> Path:
    path = folder / "basic_auth.ini"
    write_private(
        path,
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {settings.database_uri('mlflow_auth')}\n"
        f"admin_username = {ADMIN}\n"
        f"authorization_function = {AUTHORIZATION_FUNCTION}\n"
        # a checked password is trusted for 60 s: without it every request pays a scrypt
        # check (about 0.1 s of CPU here), and a run logs hundreds of requests
        "auth_cache_ttl_seconds = 60\n",
    )
    return path


def start(settings: Settings) -> None:
    health = f"{settings.tracking_uri}/health"
    log = settings.state / "logs" / "mlflow.log"
    if services.running_pid(settings, "mlflow") is not None:
        services.wait_http(health, lambda: True, "mlflow", log)
        return
    folder = services.service_dir(settings)
    config = _auth_config(folder, settings)
    services.own_tree(config, services.service_account().pw_name)
    package = Path(team.__file__).resolve().parent
    python = service_python(folder)
    services.check_reachable_by_services([python, package / "mlflow_auth.py"])
    # One uvicorn process (its requests run on threads): with --workers N uvicorn binds the
    # socket itself and leaves Nagle on for every connection (uvicorn issue 3149), so each
    # request after the first on a kept-alive connection, as MLflow's client and browsers
    # send them, waited about 44 ms for the client's delayed ACK.
    command = [
        str(python), "-m", "mlflow", "server",
        "--artifacts-destination", f"s3://{ARTIFACTS_BUCKET}",
        "--host", HOST, "--port", str(settings.mlflow_port), "--workers", "1",
        "--app-name", APP_NAME,
    ]  # fmt: skip
    env = server_environment(settings, config)
    services.start_and_wait(settings, "mlflow", command, env, settings.mlflow_port, health)


def server_environment(settings: Settings, config: Path) -> dict[str, str]:
    """What the server process is told, beside ``PATH`` and the locale."""
    own = (f"{HOST}:{settings.mlflow_port}", f"localhost:{settings.mlflow_port}")
    return {
        **settings.s3_env("mlflow"),
        # its own origin alone (team.mlflow_app), and its own names in Host
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": ",".join(f"http://{name}" for name in own),
        "MLFLOW_SERVER_ALLOWED_HOSTS": ",".join(own),
        # in the environment, not on the command line, where `ps` would show its password
        "MLFLOW_BACKEND_STORE_URI": settings.database_uri("mlflow"),
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        # read once, when the user store is new: the admin's password is ours, not a default
        "MLFLOW_AUTH_ADMIN_PASSWORD": settings.secrets["MLFLOW_AUTH_ADMIN_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": settings.secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # routes without a permission check are refused rather than open
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
        # the AI gateway keeps provider secrets and calls out: nothing here uses it
        "MLFLOW_ENABLE_AI_GATEWAY": "false",
        "MLFLOW_ENABLE_REMOTE_ASSISTANT": "false",
    }


def served_routes(settings: Settings) -> set[tuple[str, str]]:
    """Every route the server serves, from its app built here as the server builds it: run
    in a process of its own (``python -m team routes``), which it leaves changed."""
    config = settings.state / "service" / "basic_auth.ini"
    if not config.exists():
        raise services.ServiceError(f"{config} missing: start the stack with `make team-up`")
    os.environ.update(server_environment(settings, config))
    os.environ["_MLFLOW_SGI_NAME"] = "uvicorn"  # as `mlflow server` tells its worker
    from mlflow.server import app as flask_app

    from team.mlflow_app import create_app

    return routes.live_routes(create_app().app, flask_app)


def service_python(folder: Path) -> Path:
    """This environment's interpreter, if the service user can run it; else a venv of the
    system's Python of the same version, layered on this environment's packages.

    A venv's interpreter often lives in its maker's home (pyenv, uv), which the service
    user cannot enter; its packages, in the project's ``.venv``, it can read.
    """
    own = Path(sys.executable)
    if not services.as_root() or _runs_as_service_user(own):
        return own
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
    if system is None:
        raise services.ServiceError(
            f"the service user {services.SERVICE_USER} cannot run {own} and there is no "
            f"/usr/bin/python{version} to run the MLflow server with: install python{version}"
        )
    # in root's .team/, where the service user cannot swap it for a program of its own
    venv = folder.parent / "python"
    if not (venv / "bin" / "python").exists():
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    layered = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", purelib],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # a .pth line that imports runs at start-up: addsitedir reads the .pth files there too
    pth = layered / "project_venv.pth"
    pth.unlink(missing_ok=True)
    with os.fdopen(os.open(pth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w") as out:
        out.write(f"import site; site.addsitedir({str(site_packages)!r})\n")
    # root's, the service user's group may read and run it, nobody else reaches it
    group = services.service_account().pw_gid
    for path in (venv, *venv.rglob("*")):
        os.lchown(path, 0, group)
        if not path.is_symlink():
            path.chmod(0o750 if path.is_dir() or path.stat().st_mode & 0o111 else 0o640)
    return venv / "bin" / "python"


def _runs_as_service_user(python: Path) -> bool:
    done = subprocess.run(
        ["runuser", "-u", services.SERVICE_USER, "--", str(python), "-c", "pass"],
        capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def stop(settings: Settings) -> bool:
    return services.stop(settings, "mlflow")
