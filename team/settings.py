"""Where the team services listen, where their data lives, and their secrets.

Secrets and ports are fixed at the first ``up`` in ``.team/settings.env`` (mode 600,
git-ignored): a secret is made at random, unless an environment variable of the same
name is set at that first start (``MLFLOW_AUTH_ADMIN_PASSWORD``, ``TEAM_S3_ACCESS_KEY``,
``TEAM_MLFLOW_PORT``, …). A team
with its own services points at them with ``TEAM_BACKEND_STORE_URI`` (a managed
PostgreSQL) and ``TEAM_S3_ENDPOINT_URL`` (AWS S3, MinIO, any S3 endpoint); the
local one is then not started.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from kernel.cli import CommandError

# each S3 identity's keys: the stack's own (buckets, backup, restore), the MLflow server's
# (the artifacts bucket alone) and DVC's (the DVC bucket alone)
S3_KEYS = {
    "admin": ("TEAM_S3_ACCESS_KEY", "TEAM_S3_SECRET_KEY"),
    "mlflow": ("TEAM_S3_MLFLOW_ACCESS_KEY", "TEAM_S3_MLFLOW_SECRET_KEY"),
    "dvc": ("TEAM_S3_DVC_ACCESS_KEY", "TEAM_S3_DVC_SECRET_KEY"),
}
SECRET_NAMES = (
    "TEAM_POSTGRES_PASSWORD",
    *(name for pair in S3_KEYS.values() for name in pair),
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",  # the auth app's CSRF protection
)
HOST = "127.0.0.1"
# a team's own services, fixed at the first up like the rest (empty: ours)
EXTERNAL = ("TEAM_BACKEND_STORE_URI", "TEAM_S3_ENDPOINT_URL")
ARTIFACTS_BUCKET = "mlflow-artifacts"
DVC_BUCKET = "dvc-remote"
ADMIN = "admin"


# (name of the field, environment variable, default); SeaweedFS's master, volume and
# filer also listen on their port + 10000 (gRPC)
PORTS = (
    ("postgres_port", "TEAM_POSTGRES_PORT", 5433),
    ("s3_port", "TEAM_S3_PORT", 8333),
    ("mlflow_port", "TEAM_MLFLOW_PORT", 5001),
    ("weed_master_port", "TEAM_WEED_MASTER_PORT", 9333),
    ("weed_volume_port", "TEAM_WEED_VOLUME_PORT", 8380),
    ("weed_filer_port", "TEAM_WEED_FILER_PORT", 8888),
)


@dataclass(frozen=True)
class Settings:
    root: Path  # the project folder; the services' data is under root/.team
    secrets: dict[str, str]
    postgres_port: int
    s3_port: int
    mlflow_port: int
    weed_master_port: int
    weed_volume_port: int
    weed_filer_port: int
    external_postgres: str | None = None  # a team's own PostgreSQL, instead of ours
    external_s3: str | None = None  # a team's own S3 endpoint, instead of ours

    @property
    def state(self) -> Path:
        return self.root / ".team"

    def database_uri(self, database: str) -> str:
        if self.external_postgres:  # the same server, user and options; another database
            parts = urlsplit(self.external_postgres)
            return urlunsplit(parts._replace(path=f"/{database}"))
        password = quote(self.secrets["TEAM_POSTGRES_PASSWORD"], safe="")
        return f"postgresql+psycopg://mlflow:{password}@{HOST}:{self.postgres_port}/{database}"

    @property
    def s3_endpoint(self) -> str:
        return self.external_s3 or f"http://{HOST}:{self.s3_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    def s3_keys(self, identity: str) -> tuple[str, str]:
        """The access and secret key of one of ``S3_KEYS``' identities."""
        access, secret = S3_KEYS[identity]
        return self.secrets[access], self.secrets[secret]

    def s3_env(self, identity: str) -> dict[str, str]:
        """What an S3 client of the store needs: the endpoint and an identity's keys."""
        access, secret = self.s3_keys(identity)
        return {
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
        }


def load(root: Path, create: bool = False) -> Settings:
    """The settings of the project at ``root``; ``create`` makes the missing ones.

    Secrets and ports are fixed at the first ``up`` and kept in ``.team/settings.env``, so
    ``status``, ``env`` and ``down`` find the services where ``up`` put them.
    """
    path = root / ".team" / "settings.env"
    names = (*SECRET_NAMES, *(name for _, name, _ in PORTS), *EXTERNAL)
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in names:
                values[key] = value
    missing = [name for name in names if name not in values]
    if missing and not create:
        raise CommandError(f"{path} missing or incomplete: run `make team-up` first")
    if missing:
        if os.environ.get("TEAM_S3_ENDPOINT_URL") and not (
            os.environ.get("TEAM_S3_ACCESS_KEY") and os.environ.get("TEAM_S3_SECRET_KEY")
        ):
            raise CommandError(
                "TEAM_S3_ENDPOINT_URL needs TEAM_S3_ACCESS_KEY and "
                "TEAM_S3_SECRET_KEY, the keys of that store"
            )
        defaults = {name: str(default) for _, name, default in PORTS}
        defaults.update(dict.fromkeys(EXTERNAL, ""))
        if os.environ.get("TEAM_S3_ENDPOINT_URL"):
            # a team's own store: one key pair for every identity, unless it gives more
            for access, secret in (S3_KEYS["mlflow"], S3_KEYS["dvc"]):
                defaults[access] = os.environ["TEAM_S3_ACCESS_KEY"]
                defaults[secret] = os.environ["TEAM_S3_SECRET_KEY"]
        for name in missing:
            values[name] = os.environ.get(name) or defaults.get(name)
            if values[name] is None:
                values[name] = secrets.token_urlsafe(24)
    try:
        ports = {field: int(values[name]) for field, name, _ in PORTS}
    except ValueError:
        raise CommandError("every TEAM_*_PORT must be a port number") from None
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, "".join(f"{name}={values[name]}\n" for name in names))
    return Settings(
        root=root,
        secrets={k: values[k] for k in SECRET_NAMES},
        **ports,
        external_postgres=values["TEAM_BACKEND_STORE_URI"] or None,
        external_s3=values["TEAM_S3_ENDPOINT_URL"] or None,
    )


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
