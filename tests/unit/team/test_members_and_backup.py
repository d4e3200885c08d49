"""The parts of member management and backups that need no server: names, the paths a
backup may write, and which backup folders a restore trusts."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
from pathlib import Path

import pytest

from kernel.cli import CommandError
from team import backup
from team.backup import _object_path
from team.members import _checked_name
from team.postgres import DATABASES


@pytest.mark.parametrize("name", ["alice", "bob.smith", "ci-bot_2", "a" * 64])
def test_a_member_name_of_letters_digits_dots_dashes_is_taken(name):
    assert _checked_name(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../x", "is not valid"),
        ("", "is not valid"),
        ("-dash", "is not valid"),
        ("a b", "is not valid"),
        ("a" * 65, "is not valid"),
        ("admin", "administrator, not a member"),
    ],
)
def test_a_member_name_that_is_not_one_is_refused_in_one_line(name, words):
    with pytest.raises(CommandError, match=words):
        _checked_name(name)


def test_every_object_key_gets_a_file_of_its_own_inside_the_backup(tmp_path: Path):
    keys = ["files/md5/ab/cdef", "a", "a/b", "a//b", "../../etc/passwd", "/abs", "x/"]
    paths = [_object_path(tmp_path, "dvc-remote", key) for key in keys]
    assert len(set(paths)) == len(keys), "two keys would share a file"
    assert all(path.parent == tmp_path / "buckets" / "dvc-remote" for path in paths)


# --- which backup a restore trusts ---------------------------------------------------------------


def _write_backup(folder: Path) -> Path:
    """A complete backup as ``python -m team backup`` lays it out, with made-up bytes."""
    manifest: dict = {"format": backup.FORMAT, "databases": {}, "objects": {}}
    folder.mkdir(mode=0o700, parents=True)
    for database in DATABASES:
        dump = folder / f"{database}.dump"
        dump.write_bytes(database.encode())
        manifest["databases"][database] = {"file": dump.name, "sha256": _digest(dump)}
    for bucket in backup.BUCKETS:
        (folder / "buckets" / bucket).mkdir(parents=True, mode=0o700)
        target = _object_path(folder, bucket, "files/md5/ab/cdef")
        target.write_bytes(b"an object")
        manifest["objects"][bucket] = {"files/md5/ab/cdef": {"sha256": _digest(target)}}
    (folder / backup.MANIFEST).write_text(json.dumps(manifest))
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def stack(monkeypatch) -> list[str]:
    """What the restore did to the stack: a call to the object store or the MLflow server
    is recorded, then stops the restore."""
    touched: list[str] = []

    def reached(what: str):
        def call(*args, **kwargs):
            touched.append(what)
            raise RuntimeError(f"{what} reached")

        return call

    monkeypatch.setattr(backup.object_store, "s3_client", reached("object store"))
    monkeypatch.setattr(backup.mlflow_server, "stop", reached("mlflow server"))
    monkeypatch.setattr(backup.mlflow_server, "start", reached("mlflow server"))
    return touched


def _refused(folder: Path, stack: list[str], words: str) -> None:
    with pytest.raises(CommandError, match=words) as refusal:
        backup.restore(None, folder)
    assert "\n" not in str(refusal.value)
    assert stack == []  # refused before the stack was touched


def test_a_backup_of_the_one_restoring_is_read_and_restored(tmp_path: Path, stack) -> None:
    folder = _write_backup(tmp_path / "backup")
    assert set(backup._read_manifest(folder)["databases"]) == set(DATABASES)
    with pytest.raises(RuntimeError, match="object store reached"):
        backup.restore(None, folder)
    assert stack == ["object store"]


def test_a_backup_folder_anyone_may_write_is_refused(tmp_path: Path, stack) -> None:
    folder = _write_backup(tmp_path / "backup")
    folder.chmod(0o777)
    _refused(folder, stack, rf"^{folder}: the backup folder writable by other users \(mode 777\)")


@pytest.mark.parametrize(
    ("inside", "mode"),
    [
        ("mlflow.dump", 0o660),
        ("manifest.json", 0o646),
        ("buckets", 0o770),
        ("buckets/dvc-remote", 0o703),
    ],
)
def test_a_file_or_folder_inside_that_others_may_write_is_refused(
    tmp_path: Path, stack, inside: str, mode: int
) -> None:
    folder = _write_backup(tmp_path / "backup")
    (folder / inside).chmod(mode)
    _refused(
        folder,
        stack,
        rf"^{folder / inside}: (file|folder) writable by other users \(mode {mode:o}\)",
    )


def test_a_symbolic_link_inside_is_refused_even_to_the_right_bytes(tmp_path: Path, stack) -> None:
    folder = _write_backup(tmp_path / "backup")
    dump = folder / "mlflow.dump"
    elsewhere = tmp_path / "elsewhere.dump"
    dump.rename(elsewhere)
    dump.symlink_to(elsewhere)
    _refused(folder, stack, rf"^{dump}: a symbolic link; a backup holds files and folders$")


def test_a_backup_folder_named_through_a_symbolic_link_is_refused(tmp_path: Path, stack) -> None:
    _write_backup(tmp_path / "backup")
    (tmp_path / "link").symlink_to(tmp_path / "backup")
    _refused(tmp_path / "link", stack, "a symbolic link; name the backup folder itself")


def test_a_folder_above_the_backup_that_others_may_change_is_refused(tmp_path: Path, stack) -> None:
    folder = _write_backup(tmp_path / "shared" / "backup")
    (tmp_path / "shared").chmod(0o777)
    _refused(folder, stack, rf"^{tmp_path / 'shared'}: a folder above the backup that another")
    (tmp_path / "shared").chmod(0o1777)  # sticky, as /tmp: others cannot rename the backup
    assert backup._read_manifest(folder)["format"] == backup.FORMAT


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
@pytest.mark.parametrize("inside", ["", "mlflow_auth.dump", "buckets/mlflow-artifacts"])
def test_a_backup_another_user_owns_is_refused(tmp_path: Path, stack, inside: str) -> None:
    folder = _write_backup(tmp_path / "backup")
    nobody = pwd.getpwnam("nobody")
    os.chown(folder / inside, nobody.pw_uid, nobody.pw_gid)
    _refused(
        folder, stack, rf"^{folder / inside}: .*owned by nobody \(uid {nobody.pw_uid}\), not by you"
    )
