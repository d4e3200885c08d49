"""``python -m team backup DIR`` / ``restore DIR``: the whole team stack in one folder.

A backup holds the two databases (``pg_dump`` custom format: runs, metrics, registry
versions, aliases; users, their password hashes and roles) and every object of both
buckets (MLflow's artifacts, the DVC remote), with ``manifest.json`` naming each file
and its sha256, written last: a folder without it is no backup. Everything in it is
owner-only, as it holds the users' password hashes.

A restore fills a fresh stack (``make team-up``, nothing logged or pushed to it yet). It
refuses a backup that another user could have written (a file or folder in it owned by
neither you nor root, or writable by others; a symbolic link in it; a folder above it
that others may change), then checks every checksum, replaces the databases, uploads
the objects and restarts the MLflow server. The admin keeps this stack's password; every
member keeps theirs from the backup. A restore that fails half-way leaves the MLflow
server running; move ``.team/`` away, ``make team-up`` a new stack and restore again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kernel.cli import CommandError
from team import mlflow_server, object_store
from team.postgres import DATABASES, PG_BIN
from team.settings import ADMIN, ARTIFACTS_BUCKET, DVC_BUCKET, Settings, write_private

BUCKETS = (ARTIFACTS_BUCKET, DVC_BUCKET)
MANIFEST = "manifest.json"
FORMAT = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _libpq(settings: Settings, database: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump / pg_restore connection options, the password in the environment only."""
    parts = urlsplit(settings.database_uri(database))
    options = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
               "-U", unquote(parts.username or ""), "-d", parts.path.lstrip("/")]  # fmt: skip
    return options, {**os.environ, "PGPASSWORD": unquote(parts.password or "")}


def _pg_tool(tool: str, args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run([str(PG_BIN / tool), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CommandError(f"{what}: {tool} failed: {last}")


def _object_path(root: Path, bucket: str, key: str) -> Path:
    """Where an object's bytes go in the backup: named by the key's digest, so that keys
    ``a`` and ``a/b``, or ``a//b``, never meet as a file and a folder, and no key leads out."""
    return root / "buckets" / bucket / hashlib.sha256(key.encode()).hexdigest()


def _private_folder(folder: Path) -> None:
    """A new folder, or an empty one of ours, made owner-only before anything goes in."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        if not folder.is_dir() or folder.is_symlink() or any(folder.iterdir()):
            raise CommandError(
                f"{folder}: not an empty folder; a backup goes into a new one"
            ) from None
        if folder.stat().st_uid != os.geteuid():
            raise CommandError(
                f"{folder}: another user's folder; a backup goes into one of yours"
            ) from None
    folder.chmod(0o700)


def backup(settings: Settings, folder: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        _private_folder(folder)
        for bucket in BUCKETS:
            (folder / "buckets" / bucket).mkdir(parents=True)
        manifest: dict = {
            "format": FORMAT,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "databases": {},
            "objects": {},
        }
        for database in DATABASES:
            target = folder / f"{database}.dump"
            options, env = _libpq(settings, database)
            _pg_tool("pg_dump", [*options, "-Fc", "--no-owner", "-f", str(target)], env,
                     f"backing up database {database}")  # fmt: skip
            manifest["databases"][database] = {"file": target.name, "sha256": _sha256(target)}
        client = object_store.s3_client(settings)
        for bucket in BUCKETS:
            listed: dict[str, dict] = {}
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    target = _object_path(folder, bucket, item["Key"])
                    client.download_file(bucket, item["Key"], str(target))
                    listed[item["Key"]] = {"sha256": _sha256(target), "size": target.stat().st_size}
            manifest["objects"][bucket] = listed
        write_private(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    finally:
        os.umask(old_umask)
    count = sum(len(objects) for objects in manifest["objects"].values())
    print(f"team: backup in {folder}: {len(DATABASES)} databases, {count} objects", flush=True)


def _refuse_foreign(path: Path, info: os.stat_result, kind: str) -> None:
    """One line if another user could have written ``path``: owned by someone else than
    the one restoring (or root), or writable by its group or by anyone."""
    if info.st_uid not in (os.geteuid(), 0):
        raise CommandError(
            f"{path}: {kind} owned by {_user(info.st_uid)}, not by you; restore reads only "
            "a backup that you (or root) own"
        )
    if info.st_mode & 0o022:
        raise CommandError(
            f"{path}: {kind} writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            "restore reads only a backup that you alone can change"
        )


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _check_ancestors(folder: Path) -> None:
    """Whoever may write a folder above the backup may swap the backup for their own: each
    must be owned by you or root and writable by no other user, but a sticky one (``/tmp``),
    where others cannot rename what is not theirs."""
    # as named and as it really is: a link on the way is as safe as the folder holding it
    for parent in dict.fromkeys([*folder.absolute().parents, *folder.resolve().parents]):
        info = parent.stat()
        if info.st_uid not in (os.geteuid(), 0) or (
            info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
        ):
            raise CommandError(
                f"{parent}: a folder above the backup that another user could change (owner "
                f"{_user(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):o}); move the backup "
                "under a folder of yours"
            )


def _check_trusted(folder: Path) -> None:
    """Refuse a backup that another user could have written or swapped: its folder, every
    file and folder inside it and the folders above it. Checked before anything is read,
    so that nothing is restored from it; a symbolic link anywhere in it is refused, as it
    may lead to another user's file."""
    _check_ancestors(folder)
    if folder.is_symlink():
        raise CommandError(f"{folder}: a symbolic link; name the backup folder itself")
    _refuse_foreign(folder, folder.lstat(), "the backup folder")
    for root, folders, files in os.walk(folder, onerror=_raise):
        for name in [*folders, *files]:
            path = Path(root) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise CommandError(f"{path}: a symbolic link; a backup holds files and folders")
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise CommandError(f"{path}: neither a file nor a folder; not part of a backup")
            _refuse_foreign(path, info, "folder" if stat.S_ISDIR(info.st_mode) else "file")


def _raise(error: OSError) -> None:
    raise error  # a folder left unread would be a folder left unchecked


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CommandError(f"{folder}: no such folder; expected one `python -m team backup` wrote")
    _check_trusted(folder)
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT or set(manifest["databases"]) != set(DATABASES):
            raise KeyError("format")
        if set(manifest["objects"]) != set(BUCKETS):
            raise KeyError("objects")
    except FileNotFoundError:
        raise CommandError(
            f"{folder}: no {MANIFEST}, so not a backup (or an unfinished one)"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CommandError(f"{path}: not a backup manifest of format {FORMAT}") from None
    for database, entry in manifest["databases"].items():
        _check(folder / entry["file"], entry["sha256"], f"database {database}")
    for bucket, objects in manifest["objects"].items():
        for key, entry in objects.items():
            _check(_object_path(folder, bucket, key), entry["sha256"], f"object {bucket}/{key}")
    return manifest


def _check(path: Path, sha256: str, what: str) -> None:
    if not path.is_file():
        raise CommandError(f"backup incomplete: {what} missing ({path})")
    if _sha256(path) != sha256:
        raise CommandError(f"backup damaged: {what} does not match its checksum ({path})")


def restore(settings: Settings, folder: Path) -> None:
    manifest = _read_manifest(folder)
    client = object_store.s3_client(settings)
    for bucket in BUCKETS:
        if client.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0):
            raise CommandError(
                f"bucket {bucket} of this stack holds objects: restore fills a fresh stack only"
            )
    _refuse_logged_runs(settings)
    mlflow_server.stop(settings)  # it holds connections and caches of what is replaced
    try:
        for database in DATABASES:
            options, env = _libpq(settings, database)
            dump = folder / manifest["databases"][database]["file"]
            _pg_tool("pg_restore", [*options, "--clean", "--if-exists", "--no-owner",
                                    "--no-privileges", "--single-transaction", str(dump)],
                     env, f"restoring database {database}")  # fmt: skip
        _keep_this_admin_password(settings)
        for bucket, objects in manifest["objects"].items():
            for key in objects:
                client.upload_file(str(_object_path(folder, bucket, key)), bucket, key)
    finally:
        mlflow_server.start(settings)  # the stack answers again, restored or not
    count = sum(len(objects) for objects in manifest["objects"].values())
    print(f"team: restored {len(DATABASES)} databases and {count} objects from {folder}")


def _refuse_logged_runs(settings: Settings) -> None:
    """A fresh stack has no run: restoring over one would drop what was logged to it."""
    import psycopg

    uri = settings.database_uri("mlflow").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(uri) as connection:
        found = connection.execute("SELECT count(*) FROM runs").fetchone()
    if found and found[0]:
        raise CommandError(
            f"this stack holds {found[0]} runs: restore fills a fresh stack only "
            "(move .team/ away and `make team-up` a new one)"
        )


def _keep_this_admin_password(settings: Settings) -> None:
    """The restored user store has the old stack's admin; its password becomes this one's."""
    import psycopg
    from werkzeug.security import generate_password_hash

    uri = settings.database_uri("mlflow_auth").replace("postgresql+psycopg://", "postgresql://")
    digest = generate_password_hash(settings.secrets["MLFLOW_AUTH_ADMIN_PASSWORD"])
    with psycopg.connect(uri) as connection:
        connection.execute(
            "UPDATE users SET password_hash = %s WHERE username = %s", (digest, ADMIN)
        )
