"""serving.control: the key file only the server's owner can read."""

from __future__ import annotations

import os

import pytest

from serving.control import CONTROL_KEY_FILE, read_key, write_key


def test_a_new_key_is_written_for_its_owner_only_and_read_back(tmp_path) -> None:
    first = write_key(tmp_path)
    path = tmp_path / CONTROL_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_key(tmp_path) == first and len(first) >= 40
    second = write_key(tmp_path)  # a restart: the old key is worth nothing any more
    assert second != first and read_key(tmp_path) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONTROL_KEY_FILE]


def test_the_key_is_private_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0)
    try:
        write_key(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / CONTROL_KEY_FILE).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_key_others_may_read_is_refused(tmp_path, mode: int) -> None:
    write_key(tmp_path)
    (tmp_path / CONTROL_KEY_FILE).chmod(mode)
    with pytest.raises(PermissionError, match="readable by others"):
        read_key(tmp_path)


def test_a_missing_empty_or_linked_key_is_refused(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_key(tmp_path)
    (tmp_path / "elsewhere").write_text("a key\n")
    (tmp_path / "elsewhere").chmod(0o600)
    (tmp_path / CONTROL_KEY_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        read_key(tmp_path)
    (tmp_path / CONTROL_KEY_FILE).unlink()
    (tmp_path / CONTROL_KEY_FILE).write_text("\n")
    (tmp_path / CONTROL_KEY_FILE).chmod(0o600)
    with pytest.raises(PermissionError, match="empty"):
        read_key(tmp_path)
